"""PyTorch (CPU) side of bench/bench_engines.sh: the same architecture as an
ONNX file of build/bench-models, with that file's weights, timed as
bench_infer.c and bench_train.c time legodnn.

  /usr/bin/python3 bench/torch_bench.py NAME MODEL.onnx INPUT.bin [--batch B] [--threads T]
      [--warmup W] [--budget-ms MS] [--min-reps N] [--max-reps N] [--out OUT.bin] [--train]

NAME picks the builder in bench_models.MODELS; every parameter and BatchNorm
statistic is then loaded from the ONNX file's initializers by name (the
exporter keeps PyTorch's names), so the three engines compute the same
function and the outputs can be compared. Inference runs in eval mode under
torch.inference_mode(); --train times whole steps (train mode, cross-entropy,
backward, SGD momentum 0.9 weight decay 5e-4) on a fixed batch, labels i mod
classes. torch.set_num_threads(T). Prints one JSON line like the C programs,
plus the BLAS library the process loaded and the OPENBLAS_CORETYPE it saw.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def status_kb(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return -1


def blas_library():
    """The BLAS shared library mapped into this process, resolved through
    Debian's alternatives (libblas.so.3 may be BLIS, OpenBLAS or netlib)."""
    with open('/proc/self/maps') as f:
        for line in f:
            p = line.split()[-1]
            if 'blas' in os.path.basename(p) and '.so' in p:
                return os.path.realpath(p)
    return None


def quantile(v, q):
    pos = q * (len(v) - 1)
    i = int(pos)
    return v[-1] if i >= len(v) - 1 else v[i] + (pos - i) * (v[i + 1] - v[i])


def load_onnx_weights(model, path):
    import onnx
    from onnx import numpy_helper
    import torch
    g = onnx.load(path).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for node in g.node:  # the exporter shares equal tensors through Identity nodes
        if node.op_type == 'Identity' and node.input[0] in inits:
            inits[node.output[0]] = inits[node.input[0]]
    state = model.state_dict()
    missing = []
    for k, v in state.items():
        if k in inits:
            a = torch.from_numpy(inits[k].copy()).reshape(v.shape)
            v.copy_(a.to(v.dtype))
        elif not k.endswith('num_batches_tracked'):
            missing.append(k)
    if missing:
        sys.exit('torch_bench.py: %s has no initializer for %s' % (path, ', '.join(missing[:5])))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('name')
    ap.add_argument('model')
    ap.add_argument('input')
    ap.add_argument('--batch', type=int, default=1)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--budget-ms', type=float, default=3000)
    ap.add_argument('--min-reps', type=int, default=5)
    ap.add_argument('--max-reps', type=int, default=200)
    ap.add_argument('--out')
    ap.add_argument('--train', action='store_true')
    a = ap.parse_args()

    import numpy as np
    import torch
    import bench_models
    torch.set_num_threads(a.threads)
    build, shape, _ = bench_models.MODELS[a.name]
    if a.name.startswith('tv_'):
        import torchvision  # noqa: F401  (loaded before the baseline, like torch)
    rss_base = status_kb('VmRSS')

    t0 = time.perf_counter()
    model = build()
    load_onnx_weights(model, a.model)
    load_ms = (time.perf_counter() - t0) * 1e3
    n = a.batch * int(np.prod(shape))
    x = torch.from_numpy(np.fromfile(a.input, dtype=np.float32, count=n).reshape((a.batch,) + shape))

    if a.train:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        y = torch.arange(a.batch) % 10
        lossf = torch.nn.CrossEntropyLoss()

        def step():
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(x), y)
            loss.backward()
            opt.step()
            return loss
    else:
        model.eval()

        def step():
            with torch.inference_mode():
                return model(x)

    warm = 0
    for _ in range(a.warmup):
        t = time.perf_counter()
        out = step()
        warm = (time.perf_counter() - t) * 1e3
    reps = min(a.max_reps, max(a.min_reps, int(a.budget_ms / warm) if warm > 0 else a.max_reps))
    ms = []
    for _ in range(reps):
        t = time.perf_counter()
        out = step()
        ms.append((time.perf_counter() - t) * 1e3)
    if a.out and not a.train:
        out.numpy().astype(np.float32).tofile(a.out)
    ms.sort()
    med = quantile(ms, 0.5)
    r = {'engine': 'pytorch', 'version': torch.__version__, 'batch': a.batch, 'threads': a.threads,
         'reps': reps, 'median_ms': round(med, 4), 'p25_ms': round(quantile(ms, 0.25), 4),
         'p75_ms': round(quantile(ms, 0.75), 4), 'min_ms': round(ms[0], 4), 'load_ms': round(load_ms, 1),
         'rss_base_kb': rss_base, 'rss_peak_kb': status_kb('VmHWM'), 'rss_end_kb': status_kb('VmRSS'), 'blas': blas_library(),
         'openblas_coretype': os.environ.get('OPENBLAS_CORETYPE')}
    if a.train:
        r['mode'] = 'train'
        r['img_per_s'] = round(a.batch * 1e3 / med, 1)
        r['last_loss'] = round(float(out), 4)
    print(json.dumps(r))


if __name__ == '__main__':
    main()
