#!/bin/sh
# gen_seeds.sh regenerates the fuzz seed corpora in testdata/fuzz/ from
# inputs compressed by the real xz CLI (run via "go generate").
# Every seed decompresses to at most 64 KiB (the fuzz targets' buffer size).
set -eu
cd "$(dirname "$0")"
command -v xz >/dev/null || { echo "gen_seeds.sh: xz not installed" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Inputs.
: > "$tmp/empty"
printf 'a' > "$tmp/one"
seq 1 800 > "$tmp/text"
head -c 3000 /dev/zero > "$tmp/zeros"
head -c 4096 /usr/local/go/bin/go > "$tmp/elf" 2>/dev/null || head -c 4096 /bin/sh > "$tmp/elf"
# Deterministic high-entropy bytes: xz output of the ELF sample.
xz -c -9 < "$tmp/elf" | tail -c +100 | head -c 1000 > "$tmp/random"
cat "$tmp/text" "$tmp/random" "$tmp/text" > "$tmp/mixed"

# writeseed DIR NAME FILE: store FILE in the "go test fuzz v1" format.
writeseed() {
	mkdir -p "testdata/fuzz/$1"
	hex=$(od -An -v -tx1 "$3" | tr -d ' \n' | sed 's/\(..\)/\\x\1/g')
	printf 'go test fuzz v1\n[]byte("%s")\n' "$hex" > "testdata/fuzz/$1/$2"
}

rm -rf testdata/fuzz/FuzzDecodeXZ testdata/fuzz/FuzzDecodeLZMA

for in in empty one text zeros elf random mixed; do
	xz -c -q --format=xz --check=crc32 --lzma2=preset=9e,dict=1MiB < "$tmp/$in" > "$tmp/o"
	writeseed FuzzDecodeXZ "$in-crc32" "$tmp/o"
	xz -c -q --format=lzma < "$tmp/$in" > "$tmp/o"
	writeseed FuzzDecodeLZMA "$in" "$tmp/o"
done
for v in "crc64:--check=crc64" "sha256:--check=sha256" "none:--check=none" \
	"x86:--x86 --lzma2" "arm:--arm --lzma2" "armthumb:--armthumb --lzma2" \
	"powerpc:--powerpc --lzma2" "ia64:--ia64 --lzma2" "sparc:--sparc --lzma2" \
	"arm64:--arm64 --lzma2" "delta:--delta=dist=4 --lzma2" \
	"blocks:--block-size=1500" "lclppb:--lzma2=lc=1,lp=3,pb=0"; do
	name=${v%%:*}
	# shellcheck disable=SC2086
	if xz -c -q --format=xz ${v#*:} < "$tmp/elf" > "$tmp/o" 2>/dev/null; then
		writeseed FuzzDecodeXZ "elf-$name" "$tmp/o"
	fi
done
xz -c -q --format=lzma --lzma1=lc=0,lp=4,pb=4 < "$tmp/mixed" > "$tmp/o"
writeseed FuzzDecodeLZMA mixed-lc0lp4pb4 "$tmp/o"
