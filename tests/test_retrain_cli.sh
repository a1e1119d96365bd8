#!/usr/bin/env bash
# test_retrain_cli.sh - `legodnn retrain` end to end on the resnet18 fixture's
# block library (a model with a fixed batch of 1, so the teacher runs as its
# trunk at the retraining batch) and a tiny IDX dataset made here: results in
# the manifest, s = 0 files untouched, the teacher run once per batch, a run
# killed between epochs resumed to the bits of an uninterrupted one, and the
# failures a user meets with the library left as it was.
# usage: test_retrain_cli.sh LEGODNN_BINARY FIXTURE_DATA_DIR
set -uo pipefail
bin=$1
data=$2
source "$(dirname "$0")/cli_lib.sh"

model=$data/models/resnet18.onnx
make_idx "$tmp/idx" train 96 10
make_idx "$tmp/idx" t10k 20 10
"$bin" extract "$model" --out "$tmp/lib" >/dev/null 2>&1
cp -r "$tmp/lib" "$tmp/lib0"
common=(--data "$tmp/idx" --batch 16 --lr 1e-3 --quiet)
s0() { (cd "$1/blocks" && sha256sum block-*-0.00.onnx); }

expect 0 "retrained 24 descendants of .* for 2 epochs .* \(80 train \+ 16 held-out samples; 6 teacher passes; feature cache .*, 6 of 6 batches\)" \
  -- "$bin" retrain "$tmp/lib" "${common[@]}"
check "s = 0 files untouched" test "$(s0 "$tmp/lib")" = "$(s0 "$tmp/lib0")"
check "retraining_loss for every descendant (0 at s = 0)" \
  test "$(grep -c '"retraining_loss":[[:space:]]*[0-9]' "$tmp/lib/manifest.json")" -eq 32
check "and the training loss of the kept epoch" grep -q '"retraining_train_loss":[[:space:]]*[0-9]' "$tmp/lib/manifest.json"
check "the run is recorded" grep -q '"retrain":[[:space:]]*{' "$tmp/lib/manifest.json"
check "no checkpoint or temporary file left" test -z "$(ls -a "$tmp/lib" "$tmp/lib/blocks" | grep -E 'retrain.state|retrain.features|\.tmp')"
check "every file the manifest names is there, none else" \
  test "$(ls "$tmp/lib/blocks" | wc -l)" -eq 32
expect 0 "1x8x32x32" -- "$bin" info "$tmp/lib/$(grep -o 'blocks/block-1-0.30[.r0-9]*.onnx' "$tmp/lib/manifest.json")"
# the library reads back whole (every hash checked) for the next stage
expect 0 "retrained 24 descendants" -- "$bin" retrain "$tmp/lib" "${common[@]}" --epochs 1

# JSON; the teacher: once per batch before epoch 1, then never (cached),
# or every epoch without a cache, with the same result either way
cp -r "$tmp/lib0" "$tmp/a" && cp -r "$tmp/lib0" "$tmp/b"
expect 0 '"teacher_passes":[[:space:]]*\[6, 0, 0\]' -- "$bin" retrain "$tmp/a" "${common[@]}" --json
expect 0 '"teacher_passes":[[:space:]]*\[1, 6, 6\]' -- "$bin" retrain "$tmp/b" "${common[@]}" --json --cache-mb 0
check "cached or not, the same files" diff <(cd "$tmp/a/blocks" && sha256sum *) <(cd "$tmp/b/blocks" && sha256sum *)

# in two stages: said so, the same files, no features file left
cp -r "$tmp/lib0" "$tmp/st2"
expect 0 "in two stages \([0-9]+ blocks, then [0-9]+ from .* of features saved between them\)" -- \
  "$bin" retrain "$tmp/st2" "${common[@]}" --cache-mb 0 --stages 2
check "one stage or two, the same files" diff <(cd "$tmp/b/blocks" && sha256sum *) <(cd "$tmp/st2/blocks" && sha256sum *)
check "the features go with the run" test ! -e "$tmp/st2/retrain.features"
expect 2 "--stages takes auto, 1 or 2, not '3'" -- "$bin" retrain "$tmp/st2" --data "$tmp/idx" --stages 3

# killed between epochs: the library is as it was, and --resume finishes
# with the files an uninterrupted run writes
cp -r "$tmp/lib0" "$tmp/full" && cp -r "$tmp/lib0" "$tmp/r"
"$bin" retrain "$tmp/full" "${common[@]}" --epochs 3 >/dev/null 2>&1
(trap - EXIT; exec "$bin" retrain "$tmp/r" "${common[@]}" --epochs 3 >/dev/null 2>&1) &
pid=$!
for ((i = 0; i < 2000; i++)); do [[ -e "$tmp/r/retrain.state" ]] && break; sleep 0.01; done
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
if [[ $rc -ne 0 ]]; then
  check "a killed run leaves the library as it was" diff -r -x retrain.state "$tmp/r" "$tmp/lib0"
  check "with its checkpoint" test -s "$tmp/r/retrain.state"
  expect 1 "written with batch 16 \(this run: 8\)" -- "$bin" retrain "$tmp/r" "${common[@]}" --epochs 3 --resume --batch 8
  expect 0 '"resumed_at_epoch":[[:space:]]*[12]' -- "$bin" retrain "$tmp/r" "${common[@]}" --epochs 3 --resume --json
else
  echo "note: the run ended before it could be interrupted" >&2
fi
check "resumed or not, the same files" diff <(cd "$tmp/full/blocks" && sha256sum *) <(cd "$tmp/r/blocks" && sha256sum *)

# failures: a clear message, the library untouched
sum_before=$(cd "$tmp/lib0" && sha256sum manifest.json blocks/*)
expect 1 "nowhere: cannot open" -- "$bin" retrain "$tmp/nowhere" --data "$tmp/idx"
expect 1 "is not a block library" -- "$bin" retrain "$tmp/idx" --data "$tmp/idx"
make_idx "$tmp/idx12" train 48 12
expect 1 "label 10 of sample 10 is out of range for a model with 10 outputs" -- \
  "$bin" retrain "$tmp/lib0" --data "$tmp/idx12" --batch 16 --quiet
expect 1 "nonexistent" -- "$bin" retrain "$tmp/lib0" --data "$tmp/nonexistent" --quiet
expect 1 "at least two batches of 64 .* gives 1; lower the batch size" -- \
  "$bin" retrain "$tmp/lib0" --data "$tmp/idx" --batch 64 --quiet
expect 1 "loss became (NaN|infinite)" -- "$bin" retrain "$tmp/lib0" --data "$tmp/idx" --batch 16 --lr 1e30 --quiet
check "failed runs leave the library alone" test "$(cd "$tmp/lib0" && sha256sum manifest.json blocks/*)" = "$sum_before"
check "and write no files into it" test -z "$(ls "$tmp/lib0" "$tmp/lib0/blocks" | grep -E 'retrain.state|retrain.features|\.r[0-9]|\.tmp')"
cp -r "$tmp/lib0" "$tmp/bad"
printf 'x' | dd of="$tmp/bad/blocks/block-3-0.60.onnx" bs=1 seek=100 conv=notrunc 2>/dev/null
expect 1 "block-3-0.60.onnx.*SHA-256" -- "$bin" retrain "$tmp/bad" --data "$tmp/idx" --quiet

# usage errors
expect 2 "--holdout needs a fraction of the train split in \(0, 0.5\], not '0.7'" -- \
  "$bin" retrain "$tmp/lib0" --data "$tmp/idx" --holdout 0.7
expect 2 "--holdout needs a fraction" -- "$bin" retrain "$tmp/lib0" --data "$tmp/idx" --holdout 0
expect 2 "--data is required" -- "$bin" retrain "$tmp/lib0"
expect 2 "no block library given" -- "$bin" retrain --data "$tmp/idx"
expect 2 "--lr needs a positive number" -- "$bin" retrain "$tmp/lib0" --data "$tmp/idx" --lr -1
expect 2 "--epochs needs a count" -- "$bin" retrain "$tmp/lib0" --data "$tmp/idx" --epochs 0
expect 2 "unknown task 'detection' \(built in: classification\)" -- "$bin" retrain "$tmp/lib0" --data "$tmp/idx" --task detection
expect 2 "unknown option '--bogus'" -- "$bin" retrain "$tmp/lib0" --data "$tmp/idx" --bogus

finish
