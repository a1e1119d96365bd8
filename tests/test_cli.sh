#!/usr/bin/env bash
# test_cli.sh - the legodnn command as a user meets it: exit codes 0/1/2,
# one-line messages that name the problem, and no half-written output.
# usage: test_cli.sh LEGODNN_BINARY DATA_DIR
set -uo pipefail
bin=$1
data=$2
model=$data/models/resnet18.onnx
source "$(dirname "$0")/cli_lib.sh"

# close A B: two float32 files agree within the fixtures' tolerance
close() {
  [[ $(stat -c %s "$1") -eq $(stat -c %s "$2") ]] || return 1
  paste <(od -An -v -f -w4 "$1") <(od -An -v -f -w4 "$2") |
    awk '{ d = $1 - $2; if (d < 0) d = -d; r = $2 < 0 ? -$2 : $2;
           if (d > 1e-4 + 1e-3 * r) bad++ } END { exit bad > 0 }'
}

expect 2 "usage: legodnn" -- "$bin"
expect 2 "unknown command 'frobnicate'" -- "$bin" frobnicate
expect 0 "legodnn [0-9]" -- "$bin" version
expect 2 "no model given" -- "$bin" info
expect 2 "unknown option '--bogus'" -- "$bin" info "$model" --bogus
expect 1 "^legodnn: .*nonexistent.onnx: cannot open" -- "$bin" info "$tmp/nonexistent.onnx"

printf 'definitely not protobuf' >"$tmp/garbage.onnx"
expect 1 "garbage.onnx: not a valid ONNX model" -- "$bin" info "$tmp/garbage.onnx"
head -c 3000 "$model" >"$tmp/truncated.onnx"
expect 1 "truncated.onnx" -- "$bin" info "$tmp/truncated.onnx"
: >"$tmp/empty.onnx"
expect 1 "empty.onnx: the file is empty" -- "$bin" info "$tmp/empty.onnx"

expect 0 "params" -- "$bin" info "$model"
expect 0 "Conv" -- "$bin" info "$model"
expect 0 '"flops"' -- "$bin" info "$model" --json
expect 0 '"op_type":[[:space:]]*"Conv"' -- "$bin" info "$model" --json

# run: wrong sizes, missing files, the happy path, batching by file size
in=$data/models/resnet18.in.bin
expect 2 "has 1 input" -- "$bin" run "$model"
expect 2 "--repeat needs" -- "$bin" run "$model" --input "$in" --repeat 0
head -c 100 "$in" >"$tmp/short.bin"
expect 1 "short.bin: has 100 bytes, but input '.*' \(float32 1x3x32x32\) needs 12288" -- \
  "$bin" run "$model" --input "$tmp/short.bin" --output "$tmp/never.bin"
check "no output file after a failed run" test ! -e "$tmp/never.bin"
check "no temporary file left behind" test -z "$(ls "$tmp" | grep tmp)"
expect 1 "cannot write" -- "$bin" run "$model" --input "$in" --output "$tmp/no/such/dir/out.bin"
expect 0 "output" -- "$bin" run "$model" --input "$in" --output "$tmp/out.bin"
check "output file has the reference's size" \
  test "$(stat -c %s "$tmp/out.bin")" -eq "$(stat -c %s "$data/models/resnet18.out.bin")"
check "output equals PyTorch's within tolerance" close "$tmp/out.bin" "$data/models/resnet18.out.bin"
# a fixed batch of 1 cannot take 3 samples; a dynamic batch axis can
cat "$in" "$in" "$in" >"$tmp/batch3.bin"
expect 1 "batch of 3 does not fit: .*fixed at 1" -- "$bin" run "$model" --input "$tmp/batch3.bin"
dyn=$data/models/resnet18_dynbatch
expect 0 "3x10" -- "$bin" run "$dyn.onnx" --input "$dyn.in.bin" --output "$tmp/dyn3.bin"
check "dynamic batch of 3 matches PyTorch" close "$tmp/dyn3.bin" "$dyn.out.bin"
head -c 12288 "$dyn.in.bin" >"$tmp/dyn1.in.bin"
expect 0 "1x10" -- "$bin" run "$dyn.onnx" --input "$tmp/dyn1.in.bin" --output "$tmp/dyn1.bin"
head -c 40 "$dyn.out.bin" >"$tmp/dyn1.ref.bin"
check "dynamic batch of 1 matches the first sample" close "$tmp/dyn1.bin" "$tmp/dyn1.ref.bin"
expect 0 "latency .* ms median over 5 runs" -- "$bin" run "$model" --input "$in" --repeat 5
expect 0 '"median"' -- "$bin" run "$model" --input "$in" --repeat 3 --json
# threads: any count gives the same bits
expect 0 "median over 3 runs .*, 1 thread$" -- "$bin" run "$model" --input "$in" --repeat 3 --threads 1
expect 0 '"threads":[[:space:]]*2' -- "$bin" run "$model" --input "$in" --repeat 3 --threads 2 --json
expect 2 "--threads needs a count" -- "$bin" run "$model" --input "$in" --threads -1
"$bin" run "$model" --input "$in" --output "$tmp/t1.bin" --threads 1 >/dev/null
"$bin" run "$model" --input "$in" --output "$tmp/t2.bin" --threads 2 >/dev/null
check "1 and 2 threads give the same output bits" cmp -s "$tmp/t1.bin" "$tmp/t2.bin"

# extract: the block library
lib=$tmp/lib
expect 0 "8 blocks x 4 sparsities = 32 descendants" -- "$bin" extract "$model" --out "$lib"
check "manifest written" test -f "$lib/manifest.json"
check "frame written" test -f "$lib/frame.onnx"
check "32 descendant files" test "$(ls "$lib/blocks" | wc -l)" -eq 32
check "no temporary directory left" test -z "$(ls "$tmp" | grep '^lib\.')"
expect 0 "1x16x16x16" -- "$bin" info "$lib/blocks/block-3-0.30.onnx"
expect 0 "frame.onnx" -- "$bin" info "$lib/frame.onnx"
sum_before=$(sha256sum "$lib/manifest.json")
expect 1 "lib already exists \(use --force to replace it\)" -- "$bin" extract "$model" --out "$lib"
check "an existing library is left alone" test "$(sha256sum "$lib/manifest.json")" = "$sum_before"
expect 0 '"sparsities":[[:space:]]*\[0, 0.5\]' -- "$bin" extract "$model" --out "$lib" --force --sparsity 0.5 --json
check "--force replaced the library" test "$(ls "$lib/blocks" | wc -l)" -eq 16
mkdir "$tmp/precious" && echo keep >"$tmp/precious/notes.txt"
expect 1 "precious exists and is not a block library; not replacing it" -- \
  "$bin" extract "$model" --out "$tmp/precious" --force
check "--force leaves other directories alone" test -f "$tmp/precious/notes.txt"
expect 2 "'abc' is not a number" -- "$bin" extract "$model" --out "$tmp/lib2" --sparsity 0,abc
expect 2 "'' is not a number" -- "$bin" extract "$model" --out "$tmp/lib2" --sparsity 0,,0.5
expect 2 "--sparsity needs" -- "$bin" extract "$model" --out "$tmp/lib2" --sparsity
expect 1 "sparsity 1.2 is outside \[0, 1\)" -- "$bin" extract "$model" --out "$tmp/lib2" --sparsity 0,1.2
expect 1 "sparsity -0.1 is outside \[0, 1\)" -- "$bin" extract "$model" --out "$tmp/lib2" --sparsity -0.1,0.3
expect 1 "sparsity 0.3 is listed twice" -- "$bin" extract "$model" --out "$tmp/lib2" --sparsity 0.3,0.30
expect 2 "no --out LIB given" -- "$bin" extract "$model"
expect 2 "--max-ratio needs a number in \(0, 1\]" -- "$bin" extract "$model" --out "$tmp/lib2" --max-ratio 0
expect 1 "no block found" -- "$bin" extract "$data/ops/conv_3x3_o11.onnx" --out "$tmp/lib2"
expect 1 "nonexistent.onnx: cannot open" -- "$bin" extract "$tmp/nonexistent.onnx" --out "$tmp/lib2"
check "no library after failed extractions" test ! -e "$tmp/lib2"
# interrupted: either it finished first, or nothing is left
# (the subshell drops the scratch-removing EXIT trap before it becomes legodnn)
(trap - EXIT; exec "$bin" extract "$data/models/yolov3.onnx" --out "$tmp/lib4" >/dev/null 2>&1) &
pid=$!
sleep 0.01
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
check "an interrupted extraction leaves a whole library or none" \
  bash -c "[[ ( $rc -eq 0 && -f '$tmp/lib4/manifest.json' ) || ( $rc -ne 0 && ! -e '$tmp/lib4' ) ]]"
check "and no temporary directory" test -z "$(ls "$tmp" | grep '^lib4\.')"
# a modified library is caught by whoever opens it next (checked in test_library)

# profile: accuracy loss of every descendant of the fixture's library (8
# blocks at 0, 0.5) on a tiny 10-class set, into the manifest
make_idx "$tmp/idx" train 40 10
make_idx "$tmp/idx" t10k 20 10
expect 0 "the first 4 samples \(--max-test 4\)" -- "$bin" profile "$lib" --data "$tmp/idx" --max-test 4 --validate 2 --quiet
check "accuracy_loss for every descendant" \
  test "$(grep -c '"accuracy_loss":[[:space:]]*[-0-9]' "$lib/manifest.json")" -eq 16
check "the profile says which test samples it used" grep -q '"test_samples":[[:space:]]*4' "$lib/manifest.json"
expect 0 "teacher +[0-9.]+%" -- "$bin" profile "$lib" --data "$tmp/idx" --max-test 2 --validate 0 --quiet
expect 0 '"teacher_accuracy":' -- "$bin" profile "$lib" --data "$tmp/idx" --max-test 2 --validate 1 --json --quiet
expect 0 '"validation_max_error":' -- "$bin" profile "$lib" --data "$tmp/idx" --max-test 2 --validate 1 --json --quiet
sum_before=$(sha256sum "$lib/manifest.json")
make_idx "$tmp/idx12" train 24 12
make_idx "$tmp/idx12" t10k 24 12
expect 1 "label 10 of sample 10 is out of range for a model with 10 outputs.*manifest is unchanged" -- \
  "$bin" profile "$lib" --data "$tmp/idx12" --quiet
expect 1 "nonexistent" -- "$bin" profile "$lib" --data "$tmp/nonexistent" --quiet
check "a failed profile leaves the manifest alone" test "$(sha256sum "$lib/manifest.json")" = "$sum_before"
cp -r "$lib" "$tmp/lib5"
printf 'x' | dd of="$tmp/lib5/blocks/block-3-0.50.onnx" bs=1 seek=100 conv=notrunc 2>/dev/null
expect 1 "block-3-0.50.onnx.*SHA-256" -- "$bin" profile "$tmp/lib5" --data "$tmp/idx" --quiet
expect 1 "nowhere: cannot open" -- "$bin" profile "$tmp/nowhere" --data "$tmp/idx"
expect 2 "no --data DATASET given" -- "$bin" profile "$lib"
expect 2 "unknown task 'detection' \(built in: classification\)" -- "$bin" profile "$lib" --data "$tmp/idx" --task detection
expect 2 "--max-test needs a positive count" -- "$bin" profile "$lib" --data "$tmp/idx" --max-test 0

finish
