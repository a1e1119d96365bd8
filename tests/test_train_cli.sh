#!/usr/bin/env bash
# test_train_cli.sh - `legodnn train` and `legodnn eval` end to end on a tiny
# IDX dataset made here: training, evaluation agreeing with training,
# resuming, and the failures a user meets (missing or corrupt data, labels
# the model cannot output, a loss that blows up) with the checkpoint kept.
# usage: test_train_cli.sh LEGODNN_BINARY
set -uo pipefail
bin=$1
source "$(dirname "$0")/cli_lib.sh"

make_idx "$tmp/data" train 96 4
make_idx "$tmp/data" t10k 32 4
common=(--data "$tmp/data" --input 1x8x8 --classes 4 --batch 16 --quiet)

expect 0 "trained resnet18:2 .* for 2 epochs" -- "$bin" train resnet18:2 "${common[@]}" --epochs 2 --out "$tmp/m.onnx"
check "the trained model and its state were written" test -s "$tmp/m.onnx" -a -s "$tmp/m.onnx.state"
check "no temporary files left" test -z "$(ls "$tmp" | grep '\.tmp\.')"
acc=$("$bin" train resnet18:2 "${common[@]}" --epochs 2 --out "$tmp/m2.onnx" --json | grep '"test_accuracy"' | grep -oE '[0-9.]+$')
ev=$("$bin" eval "$tmp/m2.onnx" --data "$tmp/data" --json --quiet | grep '"accuracy"' | grep -oE '[0-9.]+$')
check "eval reproduces the accuracy training reported ($acc vs $ev)" test "$acc" = "$ev"
check "training is reproducible with a seed" cmp -s "$tmp/m.onnx" "$tmp/m2.onnx"
"$bin" train resnet18:2 "${common[@]}" --epochs 2 --out "$tmp/t1.onnx" --threads 1 >/dev/null 2>&1
"$bin" train resnet18:2 "${common[@]}" --epochs 2 --out "$tmp/t2.onnx" --threads 2 >/dev/null 2>&1
check "1 and 2 threads train the same weights, bit for bit" cmp -s "$tmp/t1.onnx" "$tmp/t2.onnx"
expect 2 "--threads needs a count" -- "$bin" train resnet18:2 "${common[@]}" --out "$tmp/x.onnx" --threads many

# resume: stop after 2 of 3 epochs (a constant schedule, so the first run's
# learning rates are the longer run's), then finish
"$bin" train resnet18:2 "${common[@]}" --schedule constant --epochs 2 --out "$tmp/r.onnx" >/dev/null 2>&1
expect 0 "for 3 epochs" -- "$bin" train resnet18:2 "${common[@]}" --schedule constant --epochs 3 --out "$tmp/r.onnx" --resume
"$bin" train resnet18:2 "${common[@]}" --schedule constant --epochs 3 --out "$tmp/full.onnx" >/dev/null 2>&1
# same weights, so the same test loss to the last digit (the files differ in
# the graph's name only)
loss_of() { "$bin" eval "$1" --data "$tmp/data" --json --quiet | grep '"loss"'; }
check "a resumed run ends where an uninterrupted one does" test "$(loss_of "$tmp/r.onnx")" = "$(loss_of "$tmp/full.onnx")"
expect 1 "cannot resume .* another optimizer or seed" -- "$bin" train resnet18:2 "${common[@]}" --epochs 4 \
  --out "$tmp/r.onnx" --resume --seed 7

# a loss that blows up: the last good checkpoint stays
cp "$tmp/m.onnx" "$tmp/n.onnx"
cp "$tmp/m.onnx.state" "$tmp/n.onnx.state"
expect 1 "loss became (NaN|infinite) at epoch 3.*; .*n.onnx holds the last good checkpoint \(epoch 2\)" -- "$bin" train resnet18:2 "${common[@]}" \
  --epochs 4 --out "$tmp/n.onnx" --resume --lr 1e30
check "the checkpoint is untouched after the failure" cmp -s "$tmp/n.onnx" "$tmp/m.onnx"

# bad data
expect 1 "$tmp/nowhere" -- "$bin" train resnet18:2 --data "$tmp/nowhere" --out "$tmp/x.onnx"
mkdir -p "$tmp/trunc"
cp "$tmp/data/"* "$tmp/trunc/"
head -c 500 "$tmp/data/train-images-idx3-ubyte" >"$tmp/trunc/train-images-idx3-ubyte"
expect 1 "train-images-idx3-ubyte: truncated" -- "$bin" train resnet18:2 "${common[@]/$tmp\/data/$tmp/trunc}" --out "$tmp/x.onnx"
make_idx "$tmp/wide" train 64 6
make_idx "$tmp/wide" t10k 16 6
expect 1 "label 4 of sample 4 is out of range for a model with 4 outputs" -- "$bin" train resnet18:2 \
  --data "$tmp/wide" --input 1x8x8 --classes 4 --batch 16 --quiet --out "$tmp/x.onnx"
check "no model written after failures" test ! -e "$tmp/x.onnx"

# usage errors
expect 2 "--data and --out are required" -- "$bin" train resnet18:2
expect 2 "--optimizer is sgd, adam or adamw" -- "$bin" train resnet18:2 "${common[@]}" --out "$tmp/x.onnx" --optimizer lbfgs
expect 2 "--input needs CxHxW" -- "$bin" train resnet18:2 --data "$tmp/data" --out "$tmp/x.onnx" --input 3x32
expect 1 "learning rate must be positive" -- "$bin" train resnet18:2 "${common[@]}" --out "$tmp/x.onnx" --lr 0
expect 2 "a model and --data are required" -- "$bin" eval "$tmp/m.onnx"

finish
