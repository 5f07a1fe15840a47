#!/usr/bin/env bash
# Writes to existing files of a writable union, call by call: open, write
# a line, close, for 2,000 files of src (the lowers and contenders of
# writable.sh; page cache dropped, then src walked as writable.sh's walk
# does, so that the timed calls look no name up). append opens with
# O_APPEND (the open copies the file up with its data), rewrite with
# O_TRUNC (the copy takes no data); each runs once on the bundles' files
# (copy-up) and once more on the copies. Median of BENCH_RUNS runs: mean
# µs per call, and ms for the 2,000 files.
source "$(dirname "$0")/common.sh"
(cd "$root" && go build -o "$work/copyup" ./bench/copyup)
writable_unions
contenders=${BENCH_CONTENDERS:-"kernel livefs fuse-overlayfs"}
find "$tree/src" -type f | sort | sed -n "1,4000s|^$tree/||p" > "$work/copyup-files"
declare -A R
for ((run = 0; run < runs; run++)); do
  for who in $contenders; do
    setup "$who"
    sed -n "1,2000s|^|$mnt/|p" "$work/copyup-files" > "$work/copyup-append"
    sed -n "2001,4000s|^|$mnt/|p" "$work/copyup-files" > "$work/copyup-rewrite"
    drop_caches; find "$mnt/src" -printf '%s %m %u %g %T@ %p\n' > /dev/null
    for mode in append rewrite; do
      R[$who,$mode,copy-up]+="$("$work/copyup" -mode $mode "$work/copyup-$mode");"
      R[$who,$mode,copies]+="$("$work/copyup" -mode $mode "$work/copyup-$mode");"
    done
    teardown "$who"
  done
done
# column N of each run's line: their median.
col() { tr ';' '\n' <<<"$1" | awk -v c="$2" 'NF {print $c}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "2,000 files of $tree/src per row, changes on tmpfs, $(nproc) cores; median of $runs runs; µs per call (mean), ms in all"
echo
echo "| contender | writes | open | write | close | ms |"
echo "|---|---|---|---|---|---|"
for mode in append rewrite; do
  for pass in copy-up copies; do
    for who in $contenders; do
      v=${R[$who,$mode,$pass]}
      echo "| $who | $mode ($pass) | $(col "$v" 1) | $(col "$v" 2) | $(col "$v" 3) | $(col "$v" 4) |"
    done
  done
done
