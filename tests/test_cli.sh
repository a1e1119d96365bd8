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

finish
