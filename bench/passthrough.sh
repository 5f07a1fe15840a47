#!/usr/bin/env bash
# One big file through a writable union: dd writes it (bs=1M, conv=fsync),
# cat reads it back after the page cache is dropped. Changes directory (and
# the kernel overlayfs's upperdir) on the disk under BENCH_DIR; the lower is
# a small image. Contenders: the kernel's overlayfs, livefs with FUSE
# passthrough (default where the kernel allows it), livefs with
# -o nopassthrough. Median of BENCH_RUNS runs, seconds and MiB/s.
source "$(dirname "$0")/common.sh"
size_mib=${BENCH_SIZE_MIB:-512}
small=$work/small
if [[ ! -s $work/small.sqfs ]]; then
  rm -rf "$small"; mkdir -p "$small"; echo lower > "$small/file"
  mksquashfs "$small" "$work/small.sqfs" -comp zstd -noappend -no-progress -quiet >&2
fi
mnt=$work/pmnt l1=$work/pl1 up=$work/pupper wk=$work/pwork
mkdir -p "$mnt" "$l1"
setup() {
  rm -rf "$up" "$wk"; mkdir -p "$up" "$wk"
  case $1 in
    kernel)
      mount -t squashfs -o loop,ro "$work/small.sqfs" "$l1"
      mount -t overlay overlay -o "lowerdir=$l1,upperdir=$up,workdir=$wk" "$mnt" ;;
    livefs-passthrough) "$livefs" mount --daemon --changes "$up" "$work/small.sqfs" "$mnt" ;;
    livefs-nopassthrough) "$livefs" mount --daemon -o nopassthrough --changes "$up" "$work/small.sqfs" "$mnt" ;;
  esac
}
teardown() {
  umount "$mnt"
  case $1 in kernel) umount "$l1" ;; esac
  rm -rf "$up" "$wk"
}
write() { dd if=/dev/zero of="$mnt/big" bs=1M count="$size_mib" conv=fsync status=none; }
readback() { cat "$mnt/big" > /dev/null; }
mibs() { awk -v m="$size_mib" -v s="$1" 'BEGIN {printf "%.0f", m / s}'; }
echo "$size_mib MiB file, dd bs=1M conv=fsync then cat after drop_caches; changes on $(df --output=fstype "$work" | tail -1); median of $runs; seconds (MiB/s)"
echo
echo "| contender | write | read |"
echo "|---|---|---|"
for who in ${BENCH_CONTENDERS:-kernel livefs-passthrough livefs-nopassthrough}; do
  ws=() rs=()
  for _ in $(seq "$runs"); do
    setup "$who"
    drop_caches; ws+=("$(seconds write)")
    drop_caches; rs+=("$(seconds readback)")
    teardown "$who"
  done
  w=$(median "${ws[@]}") r=$(median "${rs[@]}")
  echo "| $who | $w ($(mibs "$w")) | $r ($(mibs "$r")) |"
done
