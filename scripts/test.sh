#!/usr/bin/env bash
# Runs every test of livefs: set-up, vet, the whole suite (real images made
# by mksquashfs/gensquashfs, the kernel's squashfs as oracle), the
# concurrency tests under the race detector, and each fuzz target for a
# bounded time from the seeds in testdata/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH=$PATH:/usr/local/go/bin
FUZZTIME=${FUZZTIME:-20s}

echo "== go vet"
go vet ./...

echo "== go test"
go test -count=1 -timeout 40m ./...

echo "== go test -race (concurrency)"
go test -count=1 -race -timeout 20m -run 'Concurren|Cache|Parallel|Race|Writable' ./fs/...

echo "== fuzz ($FUZZTIME each)"
fuzz() { # package target
  go test -run '^$' -fuzz "^$2\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 5s "$1"
}
fuzz ./fs/sqfs FuzzReader
fuzz ./fs/sqfs/internal/xz FuzzDecodeXZ
fuzz ./fs/sqfs/internal/xz FuzzDecodeLZMA
fuzz ./fs/sqfs/internal/lzo FuzzDecompress
fuzz ./fs/sqfs/internal/flate FuzzDecompress
fuzz ./fs/sqfs/internal/flate FuzzDecompressRaw
echo "== all tests passed"
