# Shared by the benchmark scripts: images of a real tree, timing helpers.
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${BENCH_DIR:-/tmp/livefs-bench}
tree=${BENCH_TREE:-/usr/local/go}
codecs=${BENCH_CODECS:-"gzip xz lz4 zstd"}
block=${BENCH_BLOCK:-128K}
runs=${BENCH_RUNS:-3}
mkdir -p "$work"
(cd "$root" && go build -o "$work/livefs" ./cmd/livefs)
livefs=$work/livefs

# image CODEC: path of the tree packed with CODEC (built once).
image() {
  local img=$work/tree-$1-$block.sqfs
  if [[ ! -s $img ]]; then
    mksquashfs "$tree" "$img" -comp "$1" -b "$block" -noappend -no-progress -quiet >&2
  fi
  echo "$img"
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# seconds CMD...: wall time of a command in seconds.
seconds() {
  local s e
  s=$(date +%s.%N)
  "$@" >/dev/null
  e=$(date +%s.%N)
  awk -v s="$s" -v e="$e" 'BEGIN {printf "%.3f", e - s}'
}

# median of the arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
