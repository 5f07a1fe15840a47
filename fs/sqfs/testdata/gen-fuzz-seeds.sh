#!/bin/sh
# Regenerates the FuzzReader seed corpus: small images of a tiny
# deterministic tree, one per compressor plus a few layout variants, 4 KiB
# blocks, in Go's fuzz corpus format. Run from anywhere:
#
#	sh fs/sqfs/testdata/gen-fuzz-seeds.sh
#
# Needs mksquashfs (squashfs-tools 4.5+, built with every compressor),
# setfattr, od and awk. The output is reproducible: fixed contents, times and
# owners, one processor.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$here/fuzz/FuzzReader
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# -mkfs-time and -all-time fix the times; mksquashfs refuses them together
# with SOURCE_DATE_EPOCH.
unset SOURCE_DATE_EPOCH

src=$tmp/src
mkdir -p "$src/d/e"
printf 'hello, squashfs\n' >"$src/a"
# A full 4 KiB block and a tail, compressible so the seed stays small.
i=0
while [ $i -lt 300 ]; do printf 'line %04d\n' $i; i=$((i + 1)); done >"$src/b"
: >"$src/d/empty"
printf 'x' >"$src/d/e/f"
ln -s a "$src/l"
ln -s ../b "$src/d/up"
ln "$src/a" "$src/d/hard"
setfattr -n user.x -v 1 "$src/a"
setfattr -n user.shared -v 0123456789abcdef "$src/b"
setfattr -n user.shared -v 0123456789abcdef "$src/d"
touch -h -d @0 "$src" "$src"/* "$src"/d/* "$src"/d/e/*

# quote writes file $1 as a Go fuzz corpus entry of one []byte.
quote() {
	od -An -v -tu1 "$1" | awk '
	BEGIN { printf "go test fuzz v1\n[]byte(\"" }
	{
		for (i = 1; i <= NF; i++) {
			c = $i + 0
			if (c == 34) printf "\\\""
			else if (c == 92) printf "\\\\"
			else if (c >= 32 && c < 127) printf "%c", c
			else printf "\\x%02x", c
		}
	}
	END { printf "\")\n" }'
}

mkdir -p "$out"
rm -f "$out"/seed-*
seed() {
	name=$1
	shift
	mksquashfs "$src" "$tmp/$name.sqfs" -noappend -no-progress -quiet -nopad \
		-b 4096 -all-root -mkfs-time 0 -all-time 0 -processors 1 "$@" >/dev/null
	quote "$tmp/$name.sqfs" >"$out/seed-$name"
}
for comp in gzip xz lzma lz4 zstd lzo; do
	seed "$comp" -comp "$comp"
done
seed gzip-uncompressed -comp gzip -noI -noD -noF -noX
seed xz-no-fragments-no-exports -comp xz -no-fragments -no-exports
seed lz4-hc-always-fragments -comp lz4 -Xhc -always-use-fragments
seed zstd-no-xattrs -comp zstd -no-xattrs -Xcompression-level 19
