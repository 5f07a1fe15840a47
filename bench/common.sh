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

# writable_unions readies the writable unions' lowers (writable.sh,
# copyup.sh): the tree's image and a second bundle that shadows src/net,
# with changes on tmpfs. setup WHO mounts one at $mnt, teardown WHO takes it
# down. WHO: kernel (squashfs + overlayfs), livefs, livefs-devfuse (over
# /dev/fuse instead of per-CPU io_uring queues), fuse-overlayfs (over
# squashfuse_ll).
writable_unions() {
  lower=$(image zstd)
  shadow=$work/shadow-$block.sqfs
  if [[ ! -s $shadow ]]; then
    rm -rf "$work/shadow"; mkdir -p "$work/shadow/src"
    cp -a "$tree/src/net" "$work/shadow/src/net"
    mksquashfs "$work/shadow" "$shadow" -comp zstd -b "$block" -noappend -no-progress -quiet >&2
  fi
  mnt=$work/wmnt l1=$work/l1 l2=$work/l2 up=/dev/shm/livefs-bench-upper wk=/dev/shm/livefs-bench-work
  mkdir -p "$mnt" "$l1" "$l2"
}
setup() {
  rm -rf "$up" "$wk"; mkdir -p "$up" "$wk"
  case $1 in
    kernel)
      mount -t squashfs -o loop,ro "$lower" "$l1"; mount -t squashfs -o loop,ro "$shadow" "$l2"
      mount -t overlay overlay -o "lowerdir=$l2:$l1,upperdir=$up,workdir=$wk" "$mnt" ;;
    livefs) "$livefs" mount --daemon --changes "$up" "$lower" "$shadow" "$mnt" ;;
    livefs-devfuse) "$livefs" mount --daemon -o nouring --changes "$up" "$lower" "$shadow" "$mnt" ;;
    fuse-overlayfs)
      squashfuse_ll "$lower" "$l1"; squashfuse_ll "$shadow" "$l2"
      fuse-overlayfs -o "lowerdir=$l2:$l1,upperdir=$up,workdir=$wk" "$mnt" ;;
  esac
}
teardown() {
  umount "$mnt"
  case $1 in kernel|fuse-overlayfs) umount "$l2"; umount "$l1" ;; esac
  rm -rf "$up" "$wk"
}
