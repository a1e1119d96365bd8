#!/usr/bin/python3
"""Cross-check the fixtures in tests/data against onnxruntime (an independent ONNX runtime).

gen_fixtures.py computes every expected output with PyTorch; for the graphs built with
onnx.helper that means a hand-written torch equivalent.  This script runs every
tests/data/{ops,models}/NAME.onnx on NAME.in.bin with onnxruntime and compares the result
with NAME.out.bin using the C tests' tolerance
    |got - ref| <= 1e-4 * max(1, max|ref|) + 1e-3 * |ref|
so a disagreement between the ONNX semantics and the torch reference shows up here,
not as a phantom bug in the C engine.

onnxruntime is not a Python package on this machine; the npm package onnxruntime-node
ships the CPU runtime.  One-time setup (any scratch directory; nothing goes into the repo):

    mkdir -p /tmp/ortcheck && cd /tmp/ortcheck && npm init -y >/dev/null &&
        npm install --ignore-scripts onnxruntime-node@1.20.1

(--ignore-scripts skips the install script, which only downloads GPU binaries.)
Then, from the repository root:

    /usr/bin/python3 tools/ort_check.py [--ort /tmp/ortcheck/node_modules/onnxruntime-node] [NAME...]

Exit status 0 when every fixture matches.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, 'tests', 'data')

# Fixtures where onnxruntime is known to differ from PyTorch (the reference) on purpose.
KNOWN_DIFF = {
    # onnxruntime's AveragePool before opset 19 divides the extra ceil_mode window by the
    # full kernel size; PyTorch divides by the cells inside input+pads (onnxruntime matches
    # PyTorch from opset 19 on, onnxruntime PR #16752).  The C engine follows PyTorch.
    'averagepool_ceil_pad_include_o17',
}

RUNNER = r"""
const fs = require('fs');
const ort = require(process.argv[2]);
const jobs = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
(async () => {
  for (const job of jobs) {
    try {
      const sess = await ort.InferenceSession.create(job.model, {graphOptimizationLevel: 'disabled'});
      const raw = fs.readFileSync(job.input);
      const all = new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4);
      const feeds = {};
      let off = 0;
      for (const inp of job.inputs) {
        const n = inp.shape.reduce((a, b) => a * b, 1);
        feeds[inp.name] = new ort.Tensor('float32', Float32Array.from(all.subarray(off, off + n)), inp.shape);
        off += n;
      }
      const res = await sess.run(feeds);
      const parts = job.outputs.map(name => Buffer.from(Float32Array.from(res[name].data).buffer));
      fs.writeFileSync(job.result, Buffer.concat(parts));
    } catch (e) {
      fs.writeFileSync(job.result + '.err', String(e));
    }
  }
})();
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--ort', default=os.environ.get('ORT_NODE', '/tmp/ortcheck/node_modules/onnxruntime-node'))
    ap.add_argument('names', nargs='*')
    args = ap.parse_args()
    if not os.path.isdir(args.ort):
        sys.exit('onnxruntime-node not found at %s (see the setup in this script\'s docstring)' % args.ort)
    tmp = tempfile.mkdtemp(prefix='ort_check_')
    jobs = []
    for group in ('ops', 'models'):
        d = os.path.join(DATA, group)
        for f in sorted(os.listdir(d)):
            if not f.endswith('.onnx'):
                continue
            name = f[:-5]
            if args.names and name not in args.names:
                continue
            m = onnx.load(os.path.join(d, f))
            inits = {i.name for i in m.graph.initializer}
            ins = [dict(name=i.name, shape=[dd.dim_value for dd in i.type.tensor_type.shape.dim])
                   for i in m.graph.input if i.name not in inits]
            jobs.append(dict(group=group, name=name, model=os.path.join(d, f),
                             input=os.path.join(d, name + '.in.bin'), inputs=ins,
                             outputs=[o.name for o in m.graph.output],
                             result=os.path.join(tmp, group + '_' + name + '.bin'),
                             ref=os.path.join(d, name + '.out.bin')))
    with open(os.path.join(tmp, 'jobs.json'), 'w') as f:
        json.dump(jobs, f)
    with open(os.path.join(tmp, 'run.js'), 'w') as f:
        f.write(RUNNER)
    subprocess.run(['node', os.path.join(tmp, 'run.js'), args.ort, os.path.join(tmp, 'jobs.json')], check=True)
    bad = 0
    for j in jobs:
        label = '%s/%s' % (j['group'], j['name'])
        if os.path.exists(j['result'] + '.err'):
            print('ERROR %-40s %s' % (label, open(j['result'] + '.err').read().strip()[:300]))
            bad += 1
            continue
        got = np.fromfile(j['result'], '<f4')
        ref = np.fromfile(j['ref'], '<f4')
        if got.shape != ref.shape:
            print('FAIL  %-40s size %d != %d' % (label, got.size, ref.size))
            bad += 1
            continue
        tol = 1e-4 * max(1.0, float(np.abs(ref).max(initial=0))) + 1e-3 * np.abs(ref)
        err = np.abs(got - ref)
        nbad = int(np.sum(~(err <= tol)))
        worst = float(err.max(initial=0))
        if nbad and j['name'] in KNOWN_DIFF:
            print('known %-40s %d/%d elements differ (expected, see KNOWN_DIFF)' % (label, nbad, ref.size))
        elif nbad:
            print('FAIL  %-40s %d/%d elements out of tolerance, max err %.3g' % (label, nbad, ref.size, worst))
            bad += 1
        else:
            print('ok    %-40s max err %.2g' % (label, worst))
    print('%d passed, %d failed' % (len(jobs) - bad, bad))
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    main()
