#!/usr/bin/env bash
# bench_engines.sh - legodnn against ONNX Runtime (CPU) and PyTorch (CPU) on
# the same ONNX files, in one invocation: inference latency at each model x
# batch x threads (median and quartiles of repeated runs after warm-up, peak
# resident memory of each engine in its own process), the three outputs
# compared, and training throughput (forward + backward + SGD step, batch 32)
# of the CIFAR ResNet18, legodnn against PyTorch. Prints one table
# (bench/bench_report.py) and keeps the raw JSON lines.
#
# usage: bench/bench_engines.sh [--quick] [--models a,b,...] [--batches 1,32] [--threads 1,2]
#                               [--engines legodnn,ort,pytorch] [--budget-ms MS] [--rounds R]
#                               [--no-train] [--passive] [--out DIR]
#   --quick     the CIFAR-size models only, 1 s of timed runs per configuration
#               (at least 3 runs; default: every model, 3 s, at least 5)
#   --rounds R  each inference configuration's budget in R rounds (default 3), the
#               engines taking turns round by round, so that a slow phase of the
#               machine (this VM has them, seconds to minutes long) falls on every
#               engine alike; the report takes the median over the rounds
#   --passive   ORT and PyTorch threads sleep when idle (ORT allow_spinning=0,
#               OMP_WAIT_POLICY=PASSIVE), as legodnn's always do
#   models: cifar_resnet18 cifar_mobilenetv2 tv_resnet18 tv_mobilenetv2 fmnist_resnet18w8
#
# What it needs and does when missing: bench/node_modules (npm ci
# --ignore-scripts: onnxruntime-node's install script would fetch CUDA files;
# the CPU library ships in the package), the models in build/bench-models
# (bench/make_models.py with Debian's /usr/bin/python3, torch, torchvision,
# onnx: scripts/install-deps.sh --bench), and the build (scripts/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
args="$*"
build=${BUILD_DIR:-build}
py=/usr/bin/python3

models="cifar_resnet18,cifar_mobilenetv2,tv_resnet18,tv_mobilenetv2,fmnist_resnet18w8"
batches="1,32" threads="1,2" engines="legodnn,ort,pytorch" budget=3000 min_reps=5 train=1 passive=0
rounds=3
out=""
while (($#)); do
  case $1 in
    --quick) models="cifar_resnet18,cifar_mobilenetv2,fmnist_resnet18w8" budget=1000 min_reps=3 ;;
    --models) models=$2; shift ;;
    --batches) batches=$2; shift ;;
    --threads) threads=$2; shift ;;
    --engines) engines=$2; shift ;;
    --budget-ms) budget=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --no-train) train=0 ;;
    --passive) passive=1 ;;
    --out) out=$2; shift ;;
    -h | --help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "bench_engines.sh: unknown option $1 (--help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench_engines.sh: --rounds wants a positive integer, got '$rounds'" >&2; exit 2; }
IFS=, read -r -a M <<<"$models"
IFS=, read -r -a B <<<"$batches"
IFS=, read -r -a T <<<"$threads"
IFS=, read -r -a E <<<"$engines"
has() { [[ ",$engines," == *",$1,"* ]]; }

# --- what the run needs -----------------------------------------------------
if has ort && [[ ! -d bench/node_modules/onnxruntime-node ]]; then
  command -v npm >/dev/null || { echo "bench_engines.sh: npm not found (scripts/install-deps.sh --bench)" >&2; exit 1; }
  echo "installing onnxruntime-node into bench/node_modules" >&2
  (cd bench && npm ci --ignore-scripts --no-audit --no-fund >&2)
fi
need=("${M[@]}")
if ((train)); then need+=(cifar_resnet18); fi
$py bench/make_models.py "${need[@]}" >&2
if [[ ! -f $build/build.ninja ]]; then BUILD_DIR=$build scripts/build.sh >&2; fi
cmake --build "$build" --target bench_infer bench_train >/dev/null

out=${out:-$build/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
results=$out/results.jsonl
: >"$results"
dir=$build/bench-models

# PyTorch's BLAS is whatever Debian's libblas.so.3 alternative points to.
# OpenBLAS (if that is it) does not know this CPU and would fall back to SSE3
# kernels: SkylakeX gives it AVX-512. BLIS (the default here) picks its own.
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
if ((passive)); then export ORT_BENCH_PASSIVE=1 OMP_WAIT_POLICY=PASSIVE; fi

loadavg() { cut -d' ' -f1 /proc/loadavg; }

# run_one ENGINE MODEL BATCH THREADS ROUND [train]: one process, one JSON line
run_one() {
  local e=$1 m=$2 b=$3 t=$4 round=$5 mode=${6:-}
  # warm-up: the first run allocates and faults in memory, the second is warm;
  # a training step takes seconds at batch 32, so one warm-up step and at
  # least 3 timed ones, in one round
  local common=(--batch "$b" --threads "$t" --budget-ms "$((budget / rounds))" --warmup 2
    --min-reps "$(((min_reps + rounds - 1) / rounds))")
  if [[ -n $mode ]]; then common=(--batch "$b" --threads "$t" --budget-ms "$budget" --warmup 1 --min-reps 3); fi
  local cmp=()
  if [[ -z $mode && $t == "${T[0]}" && $round == 0 ]]; then cmp=(--out "$out/$e-$m-b$b.out.bin"); fi
  local l0 line
  l0=$(loadavg)
  case $e${mode:+-train} in
    legodnn) line=$("$build/bench/bench_infer" "$dir/$m.onnx" "$dir/$m.in.bin" "${common[@]}" "${cmp[@]}") ;;
    ort) line=$(node bench/ort_bench.js "$dir/$m.onnx" "$dir/$m.in.bin" "${common[@]}" "${cmp[@]}") ;;
    pytorch) line=$($py bench/torch_bench.py "$m" "$dir/$m.onnx" "$dir/$m.in.bin" "${common[@]}" "${cmp[@]}") ;;
    legodnn-train) line=$("$build/bench/bench_train" "$dir/$m.onnx" "$dir/$m.in.bin" "${common[@]}") ;;
    pytorch-train) line=$($py bench/torch_bench.py "$m" "$dir/$m.onnx" "$dir/$m.in.bin" --train "${common[@]}") ;;
  esac || { echo "bench_engines.sh: $e $m batch $b threads $t failed" >&2; return 0; }
  line="${line%\}}, \"model\": \"$m\", \"round\": $round, \"load_before\": $l0, \"load_after\": $(loadavg)}"
  echo "$line" >>"$results"
  printf '%-8s %-18s batch %-3s threads %s %s %s ms\n' "$e" "$m" "$b" "$t" "${mode:-infer}" \
    "$(grep -oE '"median_ms": ?[0-9.]+' <<<"$line" | grep -oE '[0-9.]+$')" >&2
}

start=$(date -u +%FT%TZ)
n=0
for m in "${M[@]}"; do
  for b in "${B[@]}"; do
    for t in "${T[@]}"; do
      # rotate the engines' order so that no engine always runs first after a
      # model change or always meets the same neighbour's burst
      for ((r = 0; r < rounds; r++)); do
        for ((i = 0; i < ${#E[@]}; i++)); do
          run_one "${E[$(((i + n) % ${#E[@]}))]}" "$m" "$b" "$t" "$r"
        done
        n=$((n + 1))
      done
    done
  done
done
if ((train)); then
  for t in "${T[@]}"; do
    for e in legodnn pytorch; do
      if has $e; then run_one $e cifar_resnet18 32 "$t" 0 train; fi
    done
  done
fi
end=$(date -u +%FT%TZ)

{
  echo "{\"meta\": true, \"start\": \"$start\", \"end\": \"$end\", \"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')\","
  echo " \"cores\": $(nproc), \"mem_kb\": $(grep MemTotal /proc/meminfo | grep -oE '[0-9]+'), \"budget_ms\": $budget, \"min_reps\": $min_reps, \"rounds\": $rounds, \"passive\": $passive,"
  echo " \"openblas_coretype\": \"$OPENBLAS_CORETYPE\", \"command\": \"bench/bench_engines.sh $args\"}"
} | tr -d '\n' >>"$results"
echo >>"$results"
$py bench/bench_report.py "$out" | tee "$out/report.md"
echo "raw results: $results" >&2
