#!/usr/bin/env bash
# Writable union benchmarks (issue: changes layer): the same lowers for
# every contender (an image of the tree plus a second bundle shadowing
# src/net), changes on tmpfs, page cache dropped before the walks and the
# read. Phases: walk; read all; cp -a of src/runtime inside the union;
# append a line to 2,000 lower files (copy-up); rm -rf src/cmd; mv of a
# lower directory (src/crypto); walk again. BENCH_RUNS rounds, the
# contenders alternating in each; median seconds per phase, and each
# contender's phases and total against the kernel's.
source "$(dirname "$0")/common.sh"
writable_unions
contenders=${BENCH_CONTENDERS:-"kernel livefs livefs-devfuse fuse-overlayfs"}
walk() { find "$mnt" -printf '%s %m %u %g %T@ %p\n' > /dev/null; }
readall() { find "$mnt" -type f -print0 | xargs -0 -P2 cat > /dev/null; }
cpdir() { cp -a "$mnt/src/runtime" "$mnt/runtime-copy"; }
appendall() { find "$mnt/src" -type f | sort | head -2000 | while read -r f; do echo "appended" >> "$f"; done; }
rmtree() { rm -rf "$mnt/src/cmd"; }
mvdir() { mv "$mnt/src/crypto" "$mnt/crypto-moved"; }
echo "tree: $tree + shadow bundle of src/net, zstd $block, changes on tmpfs, $(nproc) cores; median of $runs runs, seconds"
echo
phases="walk readall cpdir appendall rmtree mvdir walk2"
declare -A T
for ((run = 0; run < runs; run++)); do
  for who in $contenders; do
    setup "$who"
    drop_caches; T[$who,walk]+=" $(seconds walk)"
    drop_caches; T[$who,readall]+=" $(seconds readall)"
    T[$who,cpdir]+=" $(seconds cpdir)"
    T[$who,appendall]+=" $(seconds appendall)"
    T[$who,rmtree]+=" $(seconds rmtree)"
    T[$who,mvdir]+=" $(seconds mvdir)"
    drop_caches; T[$who,walk2]+=" $(seconds walk)"
    teardown "$who"
  done
done
declare -A M
for who in $contenders; do
  total=0
  for ph in $phases; do
    # shellcheck disable=SC2086 # the runs' times, one word each
    M[$who,$ph]=$(median ${T[$who,$ph]})
    total=$(awk -v a="$total" -v b="${M[$who,$ph]}" 'BEGIN {printf "%.3f", a + b}')
  done
  M[$who,total]=$total
done
echo "| contender | walk | read all | cp -a (runtime, $(find "$tree/src/runtime" | wc -l) entries) | append 2,000 | rm -rf (src/cmd, $(find "$tree/src/cmd" | wc -l) entries) | mv dir | walk again | total |"
echo "|---|---|---|---|---|---|---|---|---|"
for who in $contenders; do
  row="| $who"
  for ph in $phases total; do row+=" | ${M[$who,$ph]}"; done
  echo "$row |"
done
if [[ " $contenders " == *" kernel "* ]]; then
  echo
  echo "Against the kernel (phase time / kernel's):"
  echo
  echo "| contender | walk | read all | cp -a | append | rm -rf | mv dir | walk again | total |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for who in $contenders; do
    [[ $who == kernel ]] && continue
    row="| $who"
    for ph in $phases total; do row+=" | $(ratio "${M[$who,$ph]}" "${M[kernel,$ph]}")"; done
    echo "$row |"
  done
fi
