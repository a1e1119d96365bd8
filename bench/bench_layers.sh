#!/usr/bin/env bash
# bench_layers.sh - single convolutions of CIFAR ResNet18 and its pruned
# descendants (bench_models.LAYERS: Conv, BatchNorm, ReLU and a small head),
# each timed on its own: the per-layer figures of docs/PERFORMANCE.md, where
# a whole model's time hides which kernel moved. Per layer and thread count
# it prints the inference median (build/bench/bench_model) and its rate in
# GFLOP/s of the direct convolution (2 C M k^2 Ho Wo per image), and the
# median training step (build/bench/bench_train: forward, backward with no
# input gradient, as a retrained block's first convolution, and SGD).
# With --compare VAR=VAL each timing is also taken with that environment
# setting (LEGO_WINOGRAD=0: oneDNN's direct kernels; LEGO_DNNL=0: the
# portable ones), the two configurations alternated so that a neighbour's
# burst hits both alike; the last column is compared / default.
#
# usage: bench/bench_layers.sh [--layers a,b,...] [--batch 64] [--threads 1,2]
#                              [--repeat 10] [--no-train] [--compare VAR=VAL]
# The layer models are written by bench/make_models.py (Debian's Python with
# torch: scripts/install-deps.sh --bench) into build/bench-models.
set -euo pipefail
cd "$(dirname "$0")/.."
layers=all batch=64 threads=1,2 repeat=10 train=1 compare=
while (($#)); do
  case $1 in
    --layers) layers=$2; shift ;;
    --batch) batch=$2; shift ;;
    --threads) threads=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --no-train) train=0 ;;
    --compare) compare=$2; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "bench_layers.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
((batch >= 1 && batch <= 64)) || { echo "bench_layers.sh: --batch must be 1 to 64 (the inputs hold 64)" >&2; exit 2; }
[[ -z "$compare" || "$compare" == *=* ]] || { echo "bench_layers.sh: --compare wants VAR=VAL" >&2; exit 2; }
for b in build/bench/bench_model build/bench/bench_train; do
  [[ -x $b ]] || { echo "bench_layers.sh: $b is missing (bash scripts/build.sh)" >&2; exit 2; }
done
py=/usr/bin/python3
all=$($py -c 'import sys; sys.path.insert(0, "bench"); import bench_models; print(",".join(bench_models.LAYERS))')
[[ $layers == all ]] && layers=$all
dir=build/bench-models
IFS=, read -ra names <<< "$layers"
for n in "${names[@]}"; do
  [[ ",$all," == *",$n,"* ]] || { echo "bench_layers.sh: unknown layer $n (have: $all)" >&2; exit 2; }
done
$py bench/make_models.py --out "$dir" "${names[@]}" >&2

# gflop NAME: the direct convolution's GFLOP for the batch (lK_C_M_S[s2])
gflop() {
  local k c m s st=1
  IFS=_ read -r k c m s <<< "${1#l}"
  [[ $s == *s2 ]] && { st=2; s=${s%s2}; }
  echo "2 * $c * $m * $k * $k * ($s / $st)^2 * $batch / 10^9" | bc -l
}
# infer ENV... : median ms per thread count, space-separated
infer() {
  env "$@" build/bench/bench_model "$model" --batch "$batch" --threads "$threads" --repeat "$repeat" |
    awk 'NR > 2 { printf "%s ", $3 }'
}
train_ms() { # THREADS ENV...
  local t=$1; shift
  env "$@" build/bench/bench_train "$model" "${model%.onnx}.in.bin" --batch "$batch" --threads "$t" \
    --budget-ms 2000 --min-reps 5 | sed -n 's/.*"median_ms": \([0-9.]*\).*/\1/p'
}
# timed FN ARGS...: FN ARGS with the default settings into $mine and, with
# --compare, with that setting into $theirs, in a random order
timed() {
  local fn=$1; shift
  if [[ -n $compare ]] && ((RANDOM % 2)); then
    theirs=$("$fn" "$@" "$compare"); mine=$("$fn" "$@" LEGO_UNUSED=1)
  else
    mine=$("$fn" "$@" LEGO_UNUSED=1)
    if [[ -n $compare ]]; then theirs=$("$fn" "$@" "$compare"); fi
  fi
}

IFS=, read -ra tlist <<< "$threads"
echo "batch $batch, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(date -u +%FT%TZ)"
printf '%-16s %7s' layer GFLOP
for t in "${tlist[@]}"; do
  printf ' %9s %7s' "inf_${t}t" GFLOP/s
  [[ -n $compare ]] && printf ' %9s %6s' "cmp_${t}t" ratio
done
if ((train)); then
  for t in "${tlist[@]}"; do
    printf ' %9s' "train_${t}t"
    [[ -n $compare ]] && printf ' %9s %6s' "cmp_${t}t" ratio
  done
fi
echo
for n in "${names[@]}"; do
  model=$dir/$n.onnx
  g=$(gflop "$n")
  theirs=
  timed infer
  read -ra ms <<< "$mine"
  read -ra alt <<< "$theirs"
  printf '%-16s %7.3f' "$n" "$g"
  for i in "${!tlist[@]}"; do
    printf ' %9.2f %7.1f' "${ms[$i]}" "$(echo "$g * 1000 / ${ms[$i]}" | bc -l)"
    [[ -n $compare ]] && printf ' %9.2f %6.2f' "${alt[$i]}" "$(echo "${alt[$i]} / ${ms[$i]}" | bc -l)"
  done
  if ((train)); then
    for t in "${tlist[@]}"; do
      timed train_ms "$t"
      printf ' %9.2f' "$mine"
      [[ -z $compare ]] || printf ' %9.2f %6.2f' "$theirs" "$(echo "$theirs / $mine" | bc -l)"
    done
  fi
  echo
done
