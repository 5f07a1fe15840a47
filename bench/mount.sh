#!/usr/bin/env bash
# Read-only mount benchmarks (issue: read-only FUSE mount): a metadata walk
# and a read of every file, page cache dropped before each phase, for the
# kernel's squashfs, livefs, squashfuse_ll and squashfuse on the same image.
# Reports the median of BENCH_RUNS and livefs's peak RSS.
source "$(dirname "$0")/common.sh"
mnt=$work/mnt
mkdir -p "$mnt"
# livefs serves over per-CPU io_uring queues where the kernel has them;
# livefs-devfuse is the same server over /dev/fuse (-o nouring).
contenders=${BENCH_CONTENDERS:-"kernel livefs livefs-devfuse squashfuse_ll squashfuse"}
do_mount() { # contender image
  case $1 in
    kernel) mount -t squashfs -o loop,ro "$2" "$mnt" ;;
    livefs) "$livefs" mount --daemon --ro "$2" "$mnt" ;;
    livefs-devfuse) "$livefs" mount --daemon --ro -o nouring "$2" "$mnt" ;;
    squashfuse_ll) squashfuse_ll "$2" "$mnt" ;;
    squashfuse) squashfuse "$2" "$mnt" ;;
  esac
}
walk() { find "$mnt" -printf '%s %m %u %g %T@ %p\n' > /dev/null; }
readall() { find "$mnt" -type f -print0 | xargs -0 -P2 cat > /dev/null; }
echo "tree: $tree ($(find "$tree" | wc -l) entries, $(du -sh "$tree" | cut -f1)), block size $block, $runs runs, median seconds, $(nproc) cores"
echo
echo "| codec | contender | walk (s) | read all (s) | walk / kernel | read / kernel | server peak RSS |"
echo "|---|---|---|---|---|---|---|"
for c in $codecs; do
  img=$(image "$c")
  declare -A W R
  for who in $contenders; do
    ws=() rs=()
    for ((i = 0; i < runs; i++)); do
      do_mount "$who" "$img"
      drop_caches; ws+=("$(seconds walk)")
      drop_caches; rs+=("$(seconds readall)")
      rss=-
      if [[ $who != kernel ]]; then
        pid=$(pgrep -n -f "^[^ ]*${who%-devfuse} .*$img" || true)
        [[ -n $pid ]] && rss="$(awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' /proc/$pid/status)"
      fi
      umount "$mnt"
    done
    W[$who]=$(median "${ws[@]}") R[$who]=$(median "${rs[@]}")
    echo "| $c | $who | ${W[$who]} | ${R[$who]} | $(ratio "${W[$who]}" "${W[kernel]}") | $(ratio "${R[$who]}" "${R[kernel]}") | $rss |"
  done
done
