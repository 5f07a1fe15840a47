#!/usr/bin/env bash
# FUSE round trip: microseconds per request (a getxattr the kernel does not
# cache), livefs over per-CPU io_uring queues and over /dev/fuse, squashfuse_ll
# for reference; the caller unpinned, then pinned to CPU 0. Median of
# BENCH_RUNS runs of 20,000 calls.
source "$(dirname "$0")/common.sh"
(cd "$root" && go build -o "$work/roundtrip" ./bench/roundtrip)
small=$work/small
if [[ ! -s $work/small.sqfs ]]; then
  rm -rf "$small"; mkdir -p "$small"; echo lower > "$small/file"
  mksquashfs "$small" "$work/small.sqfs" -comp zstd -noappend -no-progress -quiet >&2
fi
mnt=$work/rmnt
mkdir -p "$mnt"
echo "| server | µs per round trip | pinned to CPU 0 |"
echo "|---|---|---|"
for who in livefs livefs-devfuse squashfuse_ll; do
  case $who in
    livefs) "$livefs" mount --daemon --ro "$work/small.sqfs" "$mnt" ;;
    livefs-devfuse) "$livefs" mount --daemon --ro -o nouring "$work/small.sqfs" "$mnt" ;;
    squashfuse_ll) squashfuse_ll "$work/small.sqfs" "$mnt" ;;
  esac
  free=() pinned=()
  for ((i = 0; i < runs; i++)); do
    free+=("$("$work/roundtrip" "$mnt/file")")
    pinned+=("$(taskset -c 0 "$work/roundtrip" "$mnt/file")")
  done
  echo "| $who | $(median "${free[@]}") | $(median "${pinned[@]}") |"
  umount "$mnt"
done
