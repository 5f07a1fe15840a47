#!/usr/bin/env bash
# Decoder benchmarks (issue: foundation): livefs extract against
# unsquashfs -p 2 into tmpfs, alternating, median of BENCH_RUNS; then
# livefs bench (per-core MB/s against the codec's reference tool).
source "$(dirname "$0")/common.sh"
echo "tree: $tree ($(find "$tree" | wc -l) entries, $(du -sh "$tree" | cut -f1)), block size $block, $runs runs, $(nproc) cores"
echo
echo "| codec | unsquashfs -p 2 (s) | livefs extract (s) | livefs / unsquashfs |"
echo "|---|---|---|---|"
for c in $codecs; do
  img=$(image "$c")
  a=() b=()
  for ((i = 0; i < runs; i++)); do
    rm -rf /dev/shm/bench-x; a+=("$(seconds unsquashfs -p 2 -q -n -d /dev/shm/bench-x "$img")")
    rm -rf /dev/shm/bench-x; b+=("$(seconds "$livefs" extract -q "$img" /dev/shm/bench-x)")
  done
  rm -rf /dev/shm/bench-x
  ma=$(median "${a[@]}") mb=$(median "${b[@]}")
  echo "| $c | $ma | $mb | $(ratio "$mb" "$ma") |"
done
echo
echo "| codec | livefs 1 core MB/s | livefs $(nproc) cores MB/s | reference tool | reference MB/s | livefs / reference (1 core) | tree read MB/s |"
echo "|---|---|---|---|---|---|---|"
for c in $codecs; do
  img=$(image "$c")
  "$livefs" bench --json "$img" > "$work/bench-$c.json"
  python3 - "$work/bench-$c.json" "$c" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
r = {x["phase"]: x for x in d["results"]}
mbps = lambda x: x["bytes"] / 1e6 / (x["elapsed_ns"] / 1e9)
one = next(v for k, v in r.items() if k.startswith("decode, 1 "))
alln = [v for k, v in r.items() if k.startswith("decode, ") and not k.startswith("decode, 1 ")]
ref = next((v for k, v in r.items() if k.startswith("reference")), None)
tree = next(v for k, v in r.items() if k.startswith("tree read"))
cells = [sys.argv[2], "%.0f" % mbps(one), "%.0f" % mbps(alln[0]) if alln else "-"]
if ref:
    cells += ["`%s`" % ref["phase"].split(": ", 1)[1], "%.0f" % mbps(ref), "%.2f" % (mbps(one) / mbps(ref))]
else:
    cells += ["-", "-", "-"]
cells.append("%.0f" % mbps(tree))
print("| " + " | ".join(cells) + " |")
PY
done
