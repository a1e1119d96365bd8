#!/usr/bin/env bash
# bench_threads.sh - training throughput and inference latency at 1 and 2
# threads (docs/PERFORMANCE.md). Each configuration runs RUNS times (default
# 5); the median is printed. On a machine shared with other work, each run
# first waits (up to a minute) for the CPUs to be idle, so that a neighbour's
# burst does not land in one configuration only.
# usage: bench/bench_threads.sh [LEGODNN_BINARY] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/legodnn}
runs=${2:-5}
model=tests/data/models/resnet18

# idle_cpus: wait until /proc/stat shows the CPUs >= 93% idle over half a second
idle_cpus() {
  for _ in $(seq 60); do
    read -r _ u n s i w _ < /proc/stat
    sleep 0.5
    read -r _ u2 n2 s2 i2 w2 _ < /proc/stat
    local busy=$(((u2 + n2 + s2) - (u + n + s))) idle=$(((i2 + w2) - (i + w)))
    if ((idle * 100 >= (busy + idle) * 93)); then return 0; fi
  done
  return 0 # busy all along: measure anyway
}

# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# bench LABEL PATTERN COMMAND...: the median of the first number PATTERN captures
bench() {
  local label=$1 pattern=$2
  shift 2
  local vals=()
  for ((r = 0; r < runs; r++)); do
    idle_cpus
    vals+=("$("$@" 2>&1 | grep -oE "$pattern" | grep -oE '[0-9.]+' | head -1)")
  done
  printf '%-40s %10s   (runs: %s)\n' "$label" "$(printf '%s\n' "${vals[@]}" | median)" "${vals[*]}"
}

for t in 1 2; do
  bench "train resnet18:8, img/s, $t thread(s)" '[0-9.]+ img/s' \
    "$bin" train resnet18:8 --data fashion-mnist --out /tmp/bench_threads.onnx --epochs 1 \
    --max-train 2048 --max-test 256 --quiet --threads "$t"
done
for t in 1 2; do
  bench "run resnet18.onnx, ms, $t thread(s)" 'latency +[0-9.]+ ms' \
    "$bin" run "$model.onnx" --input "$model.in.bin" --repeat 50 --threads "$t"
done
rm -f /tmp/bench_threads.onnx /tmp/bench_threads.onnx.state
