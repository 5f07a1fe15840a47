#!/bin/sh
# Regenerates the FuzzDecompress seed corpus in testdata/fuzz/FuzzDecompress
# from real LZO1X blocks made by lzop(1) (-1: lzo1x_1_15, -9: lzo1x_999).
# The lzop container parsing lives in the test code (TestGenerateFuzzSeeds).
set -eu
cd "$(dirname "$0")"
command -v lzop >/dev/null 2>&1 || { echo "gen_seeds.sh: lzop not found (apt-get install lzop)" >&2; exit 1; }
LZO_GEN_SEEDS=1 go test -count=1 -run '^TestGenerateFuzzSeeds$' -v . | grep -E 'wrote|FAIL|ok' || true
ls testdata/fuzz/FuzzDecompress | wc -l
