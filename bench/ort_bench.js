// ort_bench.js - inference latency and peak memory of one ONNX model in ONNX
// Runtime's CPU provider (npm onnxruntime-node), timed as bench_infer.c times
// legodnn: W warm-up runs, then as many timed runs as fill the budget at the
// warm-up pace (within [min, max]); median, quartiles, minimum; resident
// memory before loading (after Node and ORT are loaded) and at the peak.
//
//   node bench/ort_bench.js MODEL.onnx INPUT.bin [--batch B] [--threads T] [--warmup W]
//        [--budget-ms MS] [--min-reps N] [--max-reps N] [--out OUT.bin]
//
// Threads: intraOpNumThreads T, interOpNumThreads 1 (sequential execution),
// graph optimisation level 'all' (ORT folds BatchNorm into Conv and fuses
// activations itself). Everything else is ORT's default, spinning worker
// threads included, unless ORT_BENCH_PASSIVE=1 turns spinning off.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

function statusKb(field) {
  const m = fs.readFileSync('/proc/self/status', 'utf8').match(new RegExp('^' + field + ':\\s*(\\d+)', 'm'));
  return m ? Number(m[1]) : -1;
}

// numpy's default quantile on a sorted array, as bench_stats.h computes it
function quantile(v, q) {
  const pos = q * (v.length - 1), i = Math.floor(pos);
  return i >= v.length - 1 ? v[v.length - 1] : v[i] + (pos - i) * (v[i + 1] - v[i]);
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv.length < 2) {
    console.error('usage: ort_bench.js MODEL.onnx INPUT.bin [--batch B] [--threads T] [--warmup W] ' +
                  '[--budget-ms MS] [--min-reps N] [--max-reps N] [--out OUT.bin]');
    process.exit(2);
  }
  const [model, input] = argv;
  const o = {batch: 1, threads: 1, warmup: 3, 'budget-ms': 3000, 'min-reps': 5, 'max-reps': 200, out: null};
  for (let i = 2; i + 1 < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in o)) { console.error('ort_bench.js: unknown option ' + argv[i]); process.exit(2); }
    o[k] = k === 'out' ? argv[i + 1] : Number(argv[i + 1]);
  }
  const rssBase = statusKb('VmRSS');
  const t0 = process.hrtime.bigint();
  const sess = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'], graphOptimizationLevel: 'all', executionMode: 'sequential',
    intraOpNumThreads: o.threads, interOpNumThreads: 1,
    // bench_engines.sh --passive: workers sleep instead of spinning when idle
    ...(process.env.ORT_BENCH_PASSIVE === '1' ? {extra: {session: {intra_op: {allow_spinning: '0'}}}} : {}),
  });
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const meta = sess.inputMetadata ? sess.inputMetadata[0] : null;
  let dims = meta && meta.shape ? meta.shape.slice() : null;
  if (!dims) { console.error('ort_bench.js: no input shape in ' + model); process.exit(1); }
  dims[0] = o.batch;
  const n = dims.reduce((a, b) => a * b, 1);
  const buf = fs.readFileSync(input);
  if (buf.length < n * 4) { console.error(`ort_bench.js: ${input} holds fewer than ${n} floats`); process.exit(1); }
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + n * 4));
  const feeds = {[sess.inputNames[0]]: new ort.Tensor('float32', data, dims)};

  let warm = 0, res;
  for (let r = 0; r < o.warmup; r++) {
    const a = process.hrtime.bigint();
    res = await sess.run(feeds);
    warm = Number(process.hrtime.bigint() - a) / 1e6;
  }
  const reps = Math.min(o['max-reps'], Math.max(o['min-reps'], warm > 0 ? Math.floor(o['budget-ms'] / warm) : o['max-reps']));
  const ms = [];
  for (let r = 0; r < reps; r++) {
    const a = process.hrtime.bigint();
    res = await sess.run(feeds);
    ms.push(Number(process.hrtime.bigint() - a) / 1e6);
  }
  if (o.out) {
    const y = res[sess.outputNames[0]].data;
    fs.writeFileSync(o.out, Buffer.from(y.buffer, y.byteOffset, y.byteLength));
  }
  ms.sort((a, b) => a - b);
  const f = (x, d) => Number(x.toFixed(d));
  console.log(JSON.stringify({
    engine: 'ort', version: ort.env.versions.common, spinning: process.env.ORT_BENCH_PASSIVE !== '1', batch: o.batch, threads: o.threads, reps,
    median_ms: f(quantile(ms, 0.5), 4), p25_ms: f(quantile(ms, 0.25), 4), p75_ms: f(quantile(ms, 0.75), 4),
    min_ms: f(ms[0], 4), load_ms: f(loadMs, 1), rss_base_kb: rssBase, rss_peak_kb: statusKb('VmHWM'), rss_end_kb: statusKb('VmRSS'),
  }));
}

main().catch((e) => { console.error('ort_bench.js: ' + (e && e.message ? e.message : e)); process.exit(1); });
