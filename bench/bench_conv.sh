#!/usr/bin/env bash
# bench_conv.sh - what the oneDNN convolution and the inference fusion buy
# (docs/PERFORMANCE.md, "Inference convolution"): the full-width CIFAR
# ResNet-18 at batch 1 and 32, 1 and 2 threads, under three configurations
# run round-robin (so that a neighbour's burst hits all of them alike):
#   im2col   LEGO_DNNL=0 LEGO_FUSE=0  the portable path, every node separate
#   onednn   LEGO_FUSE=0              oneDNN convolutions, nodes separate
#   fused    (default)                oneDNN, BN and Relu/Clip fused into Conv
# then batch 1 at 2 threads with and without a busy neighbour (a shell loop
# spinning on one core): our threads sleep when idle and oneDNN never
# starts OpenMP threads, so the neighbour costs at most its share of a core.
# usage: bench/bench_conv.sh [MODEL.onnx] [ROUNDS]
# Without MODEL, trains one for a single small epoch (weights do not matter).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-}
rounds=${2:-3}
bench=build/bench/bench_model
if [[ -z "$model" ]]; then
  model=$(mktemp -d)/r18.onnx
  build/legodnn train resnet18:64 --data fashion-mnist --out "$model" --epochs 1 \
    --max-train 256 --max-test 64 --quiet >/dev/null
fi
declare -A env=([im2col]="LEGO_DNNL=0 LEGO_FUSE=0" [onednn]="LEGO_FUSE=0" [fused]="LEGO_FUSE=1")
for r in $(seq "$rounds"); do
  for c in $(printf '%s\n' im2col onednn fused | shuf); do
    env ${env[$c]} $bench "$model" --batch 1 --threads 1,2 --repeat 30 | tail -n 2 | sed "s/^/$c round$r /"
    env ${env[$c]} $bench "$model" --batch 32 --threads 1,2 --repeat 5 | tail -n 2 | sed "s/^/$c round$r /"
  done
done
echo "busy neighbour (batch 1, 2 threads, fused):"
$bench "$model" --batch 1 --threads 2 --repeat 50 | tail -n 1 | sed 's/^/quiet /'
bash -c 'while :; do :; done' &
spin=$!
$bench "$model" --batch 1 --threads 2 --repeat 50 | tail -n 1 | sed 's/^/spinner /'
kill "$spin"
