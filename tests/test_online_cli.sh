#!/usr/bin/env bash
# test_online_cli.sh - the online stage from the command line: `legodnn
# latency` (timings into the library per device), `legodnn scale` (feasible
# and infeasible budgets, --export whose `legodnn run` equals the runtime's
# output bit for bit) and `legodnn serve` (a short budget trace, with and
# without data), and the bad inputs a user meets.
# usage: test_online_cli.sh LEGODNN_BINARY DATA_DIR [dnnl|portable]
# (the last: whether the binary has oneDNN built in; dnnl when not given)
set -uo pipefail
bin=$1
data=$2
kernels=${3:-dnnl}
model=$data/models/resnet18.onnx
in=$data/models/resnet18.in.bin
source "$(dirname "$0")/cli_lib.sh"

lib=$tmp/lib
"$bin" extract "$model" --out "$lib" >/dev/null 2>&1
check "library extracted" test -f "$lib/manifest.json"

# ---- latency
expect 2 "no library given" -- "$bin" latency
expect 2 "--repeat needs" -- "$bin" latency "$lib" --repeat 1
expect 2 "unknown option '--bogus'" -- "$bin" latency "$lib" --bogus
expect 1 "nowhere: cannot open" -- "$bin" latency "$tmp/nowhere"
expect 0 "frame .* ms .* teacher .* ms" -- "$bin" latency "$lib" --repeat 5 --quiet
expect 0 "all-s0 .*[0-9]%" -- "$bin" latency "$lib" --repeat 5 --quiet
expect 0 '"checks"' -- "$bin" latency "$lib" --repeat 5 --json
check "the manifest has a device profile" grep -q '"devices"' "$lib/manifest.json"
check "the profile names threads and batch" grep -qE '\| [0-9]+ threads? \| batch 1"' "$lib/manifest.json"
check "every descendant has a latency" test "$(grep -c '"median_ms"' "$lib/manifest.json")" -eq 32
# kernels switched off for a measurement file their numbers under their own key
cp -r "$lib" "$tmp/nodnnl"
if [[ $kernels == dnnl ]]; then
  expect 0 "LEGO_DNNL=0" -- env LEGO_DNNL=0 "$bin" latency "$tmp/nodnnl" --repeat 3 --quiet
  check "the LEGO_DNNL=0 profile is a key of its own, beside the default one" \
    test "$(grep -c 'batch 1 | LEGO_DNNL=0"' "$tmp/nodnnl/manifest.json")" -eq 33 -a \
    "$(grep -c 'batch 1"' "$tmp/nodnnl/manifest.json")" -eq 33
else # without oneDNN the switch changes no kernel: the default profile again
  expect 0 "all-s0" -- env LEGO_DNNL=0 "$bin" latency "$tmp/nodnnl" --repeat 3 --quiet
  check "no LEGO_DNNL=0 profile without oneDNN" \
    test "$(grep -c 'LEGO_DNNL=0"' "$tmp/nodnnl/manifest.json")" -eq 0
fi
expect 0 "LEGO_FUSE=0" -- env LEGO_FUSE=0 "$bin" latency "$tmp/nodnnl" --repeat 3 --quiet
check "so is the LEGO_FUSE=0 one" test "$(grep -c 'batch 1 | LEGO_FUSE=0"' "$tmp/nodnnl/manifest.json")" -eq 33
expect 1 "cannot run at batch 2 .*dynamic batch axis" -- "$bin" latency "$lib" --repeat 3 --batch 2 --quiet

# ---- scale: needs accuracy loss first
expect 1 "no accuracy_loss: run \`legodnn profile .*--data DATASET\` first" -- \
  "$bin" scale "$lib" --latency 1 --memory none
# synthetic accuracy losses (0 at s = 0, growing with the sparsity) and a teacher accuracy
perl -0pi -e 's/"accuracy_loss":\s*null/sprintf("\"accuracy_loss\": %.4f", (($n++ % 4) ** 2) * 0.002 * (1 + int($n \/ 4) % 3))/ge;
              s/("format_version":\s*1,)/$1\n\t"profile": {"teacher_accuracy": 0.9, "metric": "top-1 accuracy"},/' \
  "$lib/manifest.json"
expect 2 "both budgets are needed" -- "$bin" scale "$lib" --latency 1
expect 2 "--latency needs milliseconds" -- "$bin" scale "$lib" --latency fast --memory none
expect 2 "--memory needs bytes" -- "$bin" scale "$lib" --latency 1 --memory lots
expect 1 "latency budget -1 ms" -- "$bin" scale "$lib" --latency -1 --memory none
expect 1 "memory budget 0 bytes" -- "$bin" scale "$lib" --latency 1 --memory 0
expect 1 "absurd" -- "$bin" scale "$lib" --latency 1e12 --memory none
expect 0 "accuracy 0.9000 estimated" -- "$bin" scale "$lib" --latency none --memory none
expect 0 "solved +in [0-9.]+ us" -- "$bin" scale "$lib" --latency none --memory 2MB
expect 0 '"feasible":[[:space:]]*true' -- "$bin" scale "$lib" --latency none --memory 450KB --json
# infeasible: the closest composition, how far over, exit 1, nothing exported
expect 1 "infeasible: no composition fits 0.001 ms .*over by" -- "$bin" scale "$lib" --latency 0.001 --memory none \
  --export "$tmp/never.onnx"
expect 1 '"feasible":[[:space:]]*false' -- "$bin" scale "$lib" --latency 0.001 --memory 1000 --json
check "nothing exported for an infeasible budget" test ! -e "$tmp/never.onnx"
# --export: an ordinary model whose output is the runtime's, bit for bit
mem=$("$bin" scale "$lib" --latency none --memory none --json | grep '"memory_bytes"' | grep -oE '[0-9]+')
half=$((mem * 3 / 4))
expect 0 "exported .*mid.onnx" -- "$bin" scale "$lib" --latency none --memory "$half" --export "$tmp/mid.onnx" \
  --input "$in" --output "$tmp/rt.bin"
expect 0 "params" -- "$bin" info "$tmp/mid.onnx"
# the runtime's blocks run the same kernels as `legodnn run`: the same bits
"$bin" run "$tmp/mid.onnx" --input "$in" --output "$tmp/run.bin" >/dev/null 2>&1
check "legodnn run of the export equals the runtime's output bit for bit" cmp -s "$tmp/rt.bin" "$tmp/run.bin"
check "the mid budget thinned some blocks" bash -c "\"$bin\" scale \"$lib\" --latency none --memory $half --json |
  grep '\"choice\"' | grep -qE '[1-9]'"
"$bin" scale "$lib" --latency none --memory none --export "$tmp/full.onnx" >/dev/null 2>&1
"$bin" run "$tmp/full.onnx" --input "$in" --output "$tmp/full.bin" >/dev/null 2>&1
"$bin" run "$model" --input "$in" --output "$tmp/teacher.bin" >/dev/null 2>&1
check "the all-original export computes the teacher's output bit for bit" cmp -s "$tmp/full.bin" "$tmp/teacher.bin"
expect 2 "--input and --output go together" -- "$bin" scale "$lib" --latency 1 --memory none --input "$in"

# another device's measurements: a clear error naming the command to run
cp -r "$lib" "$tmp/other"
perl -0pi -e 's/\| batch 1"/| batch 1 (elsewhere)"/g' "$tmp/other/manifest.json"
expect 1 "no latency for this device .*run \`legodnn latency .*other --threads [0-9]+\` on this machine first" -- \
  "$bin" scale "$tmp/other" --latency 1 --memory none
# measured by an older legodnn, which kept no weight bytes per device: say so
cp -r "$lib" "$tmp/older"
perl -0pi -e 's/("arena_bytes":\s*[0-9]+),\s*"weight_bytes":\s*[0-9]+/$1/g' "$tmp/older/manifest.json"
expect 1 "block 0 at sparsity 0 has no latency, arena_bytes or weight_bytes for this device: run \`legodnn latency" -- \
  "$bin" scale "$tmp/older" --latency 1 --memory none
perl -0pi -e 's/,\s*"frame_weight_bytes":\s*[0-9]+//g' "$tmp/older/manifest.json"
expect 1 "lacks frame_ms, frame_arena_bytes or frame_weight_bytes \(an older legodnn measured it\)" -- \
  "$bin" scale "$tmp/older" --latency 1 --memory none

# ---- serve
printf 'time_s,latency_ms,memory_bytes\n0,none,none\n0.15,0.001,none\n0.3,none,%s\n' "$half" >"$tmp/trace.csv"
expect 0 "3 steps in .* runs" -- "$bin" serve "$lib" --trace "$tmp/trace.csv" --quiet
expect 0 "infeasible: closest" -- "$bin" serve "$lib" --trace "$tmp/trace.csv" --quiet
expect 0 '"measured_latency_ms"' -- "$bin" serve "$lib" --trace "$tmp/trace.csv" --json
make_idx "$tmp/data" train 20 10
make_idx "$tmp/data" t10k 24 10
expect 0 "accuracy 0\.[0-9]+" -- "$bin" serve "$lib" --trace "$tmp/trace.csv" --data "$tmp/data" --max-test 16 --quiet
expect 0 '"accuracy":[[:space:]]*[0-9.]+' -- "$bin" serve "$lib" --trace "$tmp/trace.csv" --data "$tmp/data" --json
# bad traces name the line
expect 2 "--trace BUDGETS.csv is required" -- "$bin" serve "$lib"
expect 1 "nope.csv: cannot open" -- "$bin" serve "$lib" --trace "$tmp/nope.csv"
printf 'time_s,latency_ms,memory_bytes\n0,1,none\n0.1,1\n' >"$tmp/bad1.csv"
expect 1 "bad1.csv:3: want 3 fields" -- "$bin" serve "$lib" --trace "$tmp/bad1.csv"
printf '0,1,none\n# a comment\n\n0.5,fast,none\n' >"$tmp/bad2.csv"
expect 1 "bad2.csv:4: latency_ms 'fast'" -- "$bin" serve "$lib" --trace "$tmp/bad2.csv"
printf '0,1,none\n0.5,-3,none\n' >"$tmp/bad3.csv"
expect 1 "bad3.csv:2: latency budget -3 ms" -- "$bin" serve "$lib" --trace "$tmp/bad3.csv"
printf '0.5,1,none\n0.2,1,none\n' >"$tmp/bad4.csv"
expect 1 "bad4.csv:2: time_s 0.2 does not come after 0.5" -- "$bin" serve "$lib" --trace "$tmp/bad4.csv"
printf 'time_s,latency_ms,memory_bytes\n' >"$tmp/empty.csv"
expect 1 "empty.csv: no steps" -- "$bin" serve "$lib" --trace "$tmp/empty.csv"
expect 1 "no latency for this device" -- "$bin" serve "$tmp/other" --trace "$tmp/trace.csv"
expect 1 "nowhere" -- "$bin" serve "$lib" --trace "$tmp/trace.csv" --data "$tmp/nowhere"
# budgets as shares of the teacher's estimate; --log keeps the JSON beside the table
printf 'time_s,latency_ms,memory_bytes\n0,none,none\n0.1,none,70%%\n0.2,10%%,10%%\n' >"$tmp/pct.csv"
expect 0 "3 steps in .* runs" -- "$bin" serve "$lib" --trace "$tmp/pct.csv" --quiet --log "$tmp/serve.json"
check "--log wrote the JSON log" grep -q '"measured_latency_ms"' "$tmp/serve.json"
check "70% of the teacher's memory thinned some blocks" bash -c "grep '\"choice\"' \"$tmp/serve.json\" | sed -n 2p |
  grep -qE '[1-9]'"
check "10% of the teacher is infeasible, and said so" grep -q '"feasible":[[:space:]]*false' "$tmp/serve.json"
printf '0,0%%,none\n' >"$tmp/bad5.csv"
expect 1 "bad5.csv:1: '0%' or 'none' is not a budget" -- "$bin" serve "$lib" --trace "$tmp/bad5.csv"
printf '0,50%%,lots\n' >"$tmp/bad6.csv"
expect 1 "bad6.csv:1: '50%' or 'lots' is not a budget" -- "$bin" serve "$lib" --trace "$tmp/bad6.csv"
printf '0,50%%x,none\n' >"$tmp/bad7.csv"
expect 1 "bad7.csv:1: latency_ms '50%x'" -- "$bin" serve "$lib" --trace "$tmp/bad7.csv"

# ---- report: the table, the JSON, the plot
expect 2 "no library given" -- "$bin" report
expect 2 "--plot 'x.jpg': name a .png or .svg file" -- "$bin" report "$lib" --plot x.jpg
expect 1 "no latency for this device" -- "$bin" report "$tmp/other"
expect 0 "compositions +65.54K composable models" -- "$bin" report "$lib"
expect 0 "all 0.80 .* 0.8 0.8 0.8" -- "$bin" report "$lib"
expect 0 "optimizer +[0-9.]+ us median" -- "$bin" report "$lib"
expect 0 "switch +[0-9.]+ us per block once cached" -- "$bin" report "$lib"
expect 0 "trace +3 steps .* 1 infeasible" -- "$bin" report "$lib" --serve "$tmp/serve.json"
expect 0 '"compositions":[[:space:]]*65536' -- "$bin" report "$lib" --json
expect 0 "frontier +[0-9]+ Pareto-optimal compositions against memory" -- "$bin" report "$lib"
check "--json lists the frontiers' compositions" bash -c "\"$bin\" report \"$lib\" --json |
  grep -A4 -E '\"latency\":[[:space:]]*\[' | grep -q '\"estimated_accuracy\"'"
expect 0 "plot +.*report.svg" -- "$bin" report "$lib" --serve "$tmp/serve.json" --plot "$tmp/report.svg" \
  --save "$tmp/report.json"
check "the SVG plot was written" grep -q "Pareto frontier" "$tmp/report.svg"
check "the plot shows the trace's choices" grep -q "chosen along the budget trace" "$tmp/report.svg"
check "--save wrote the JSON report" grep -q '"optimizer"' "$tmp/report.json"
expect 0 "plot +.*report.png" -- "$bin" report "$lib" --plot "$tmp/report.png"
check "the PNG plot is a PNG" bash -c "head -c 8 \"$tmp/report.png\" | od -An -c | grep -q 'P   N   G'"
check "no temporary directory left behind" bash -c "! ls -d /tmp/legodnn-report-* 2>/dev/null | grep -q ."
echo '{"steps": 3}' >"$tmp/notserve.json"
expect 1 "notserve.json: not the JSON that .legodnn serve --json. writes" -- \
  "$bin" report "$lib" --serve "$tmp/notserve.json"
expect 1 "nothing.json: cannot open" -- "$bin" report "$lib" --serve "$tmp/nothing.json" --plot "$tmp/never.png"
check "no plot after a failure" test ! -e "$tmp/never.png"
expect 1 "--plot needs gnuplot, which is not installed" -- env PATH=/nonexistent \
  "$bin" report "$lib" --plot "$tmp/never.png"
check "no plot without gnuplot" test ! -e "$tmp/never.png"

finish
