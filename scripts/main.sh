#!/usr/bin/env bash
# The main job, end to end on the bundled default: install what is missing,
# build, then take the shipped Fashion-MNIST teacher (models/, trained by
# legodnn itself) through every LegoDNN stage:
#   blocks -> extract descendants -> retrain them -> profile accuracy loss ->
#   latency on this machine -> replay a budget trace live -> report + plot.
# Everything it writes goes to $OUT (default build/main-job): the block
# library, the serve log, report.txt, report.json and report.png.
# Settings (environment): OUT, THREADS (default: every core), EPOCHS
# (retraining epochs, default 2), MAX_TEST (test images for profile, default
# all 10,000), TRACE (default scripts/main-trace.csv).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/main-job}
threads=${THREADS:-$(nproc)}
epochs=${EPOCHS:-2}
trace=${TRACE:-scripts/main-trace.csv}
teacher=models/fmnist_resnet18w8.onnx
profile_opts=()
if [[ -n "${MAX_TEST:-}" ]]; then profile_opts=(--max-test "$MAX_TEST"); fi

t_start=$(date +%s)
stage() { printf '\n== [%s] %s  (%ds so far)\n' "$1" "$2" $(($(date +%s) - t_start)); }

stage 1/9 "dependencies and build"
scripts/install-deps.sh
BUILD_DIR=build scripts/build.sh
bin=build/legodnn
mkdir -p "$out"
lib=$out/lib

stage 2/9 "the teacher: $teacher"
"$bin" info "$teacher" | head -n 12

stage 3/9 "blocks found in the teacher's graph"
"$bin" blocks "$teacher"

stage 4/9 "descendants by L1 filter pruning at sparsities 0, 0.3, 0.6, 0.8"
"$bin" extract "$teacher" --out "$lib" --force | tail -n 8

stage 5/9 "retraining every descendant on the teacher's block features ($epochs epochs)"
"$bin" retrain "$lib" --data fashion-mnist --epochs "$epochs" --threads "$threads"

stage 6/9 "accuracy loss of every descendant in composed models"
"$bin" profile "$lib" --data fashion-mnist --threads "$threads" "${profile_opts[@]}"

stage 7/9 "latency of every descendant on this machine"
"$bin" latency "$lib" --threads "$threads"

stage 8/9 "serving the test set while the budget changes ($trace)"
"$bin" serve "$lib" --trace "$trace" --data fashion-mnist --threads "$threads" --log "$out/serve.json"

stage 9/9 "report"
"$bin" report "$lib" --serve "$out/serve.json" --plot "$out/report.png" --save "$out/report.json" \
  --threads "$threads" | tee "$out/report.txt"
printf '\nmain job done in %ds; everything it wrote is in %s\n' $(($(date +%s) - t_start)) "$out"
