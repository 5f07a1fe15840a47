#!/usr/bin/env bash
# The default demo: packs a real tree (the Go distribution on this machine)
# into an xz bundle the way live systems ship them (-comp xz -b 1M), then
# shows livefs reading it: info, ls, cat, extract (checked against
# unsquashfs and timed beside it) and the decompression benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
export PATH=$PATH:/usr/local/go/bin
work=${DEMO_DIR:-/tmp/livefs-demo}
src=${DEMO_TREE:-$(go env GOROOT)}
mkdir -p "$work"
go build -o "$work/livefs" ./cmd/livefs
lf=$work/livefs
img=$work/demo.sb
if [[ ! -s $img ]]; then
  echo "== packing $src into $img (xz, 1 MiB blocks)"
  mksquashfs "$src" "$img" -comp xz -b 1M -noappend -no-progress -quiet
fi
echo "== livefs info $img"; "$lf" info "$img"
echo; echo "== livefs ls -l $img /"; "$lf" ls -l "$img" / | head -20
echo; echo "== livefs cat $img /VERSION"; "$lf" cat "$img" /VERSION | head -3; echo
out=/dev/shm/livefs-demo-extract
rm -rf "$out" "$out.ref"
echo; echo "== extract to tmpfs: livefs extract vs unsquashfs -p 2"
/usr/bin/time -f "livefs extract:   %e s" "$lf" extract -q "$img" "$out"
/usr/bin/time -f "unsquashfs -p 2:  %e s" unsquashfs -p 2 -q -n -d "$out.ref" "$img" >/dev/null
diff -r --no-dereference "$out" "$out.ref" && echo "trees are identical"
rm -rf "$out" "$out.ref"
echo; echo "== livefs bench $img"; "$lf" bench "$img"
