"""Write the ONNX files and inputs bench/bench_engines.sh times, into a
git-ignored folder (default build/bench-models):

  NAME.onnx      every model of bench_models.MODELS (or, when named, a layer of
                 bench_models.LAYERS), exported from PyTorch 1.13
                 with random weights, a dynamic batch axis, opset 13 and
                 BatchNorm kept as BatchNormalization nodes (as README's "Bring
                 your own model" says); the shipped teacher is copied as is
  NAME.in.bin    32 samples (layers: 64) of float32 N(0,1) noise in the model's
                 input shape (seeded): every engine reads the same batch

Run with Debian's Python (torch, torchvision, onnx):
  /usr/bin/python3 bench/make_models.py [--out DIR] [--force] [NAME ...]
"""

import argparse
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_models  # noqa: E402

BATCH = 32
LAYER_BATCH = 64


def randomise_batchnorm(model):
    """BatchNorm statistics and affine parameters away from 0 and 1 (as
    tools/gen_fixtures.py does): fresh ones are all equal, and the exporter
    would merge them into one initializer behind Identity nodes."""
    g = torch.Generator().manual_seed(2)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=g)
            m.bias.data = 0.1 * torch.randn(n, generator=g)
            m.running_mean = 0.1 * torch.randn(n, generator=g)
            m.running_var = 0.5 + torch.rand(n, generator=g)


def export(name, out_dir):
    build, shape, source = bench_models.lookup(name)
    path = os.path.join(out_dir, name + '.onnx')
    if source == 'export':
        torch.manual_seed(0)
        model = build().eval()
        randomise_batchnorm(model)
        x = torch.randn(1, *shape)
        tmp = path + '.tmp'
        torch.onnx.export(model, x, tmp, opset_version=13, input_names=['input'], output_names=['output'],
                          dynamic_axes={'input': {0: 'N'}, 'output': {0: 'N'}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
        os.replace(tmp, path)
    else:
        shutil.copyfile(source, path)
    rng = np.random.default_rng(1)
    batch = LAYER_BATCH if name in bench_models.LAYERS else BATCH
    rng.standard_normal((batch,) + shape, dtype=np.float32).tofile(os.path.join(out_dir, name + '.in.bin'))
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default=os.path.join(bench_models.ROOT, 'build', 'bench-models'))
    ap.add_argument('--force', action='store_true', help='rewrite files that exist')
    ap.add_argument('names', nargs='*', help='default: every model')
    a = ap.parse_args()
    names = a.names or list(bench_models.MODELS)
    for n in names:
        if not bench_models.lookup(n):
            sys.exit('make_models.py: unknown model %s (have: %s; layers: %s)' %
                     (n, ', '.join(bench_models.MODELS), ', '.join(bench_models.LAYERS)))
    os.makedirs(a.out, exist_ok=True)
    for n in names:
        have = all(os.path.exists(os.path.join(a.out, n + ext)) for ext in ('.onnx', '.in.bin'))
        if have and not a.force:
            continue
        print('make_models.py: writing', export(n, a.out))


if __name__ == '__main__':
    main()
