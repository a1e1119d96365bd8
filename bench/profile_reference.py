#!/usr/bin/env python3
"""profile_reference.py - LegoDNN's accuracy profiling as the original does it
(legodnn/block_profiler/server_block_profiler.py, docs: legodnn-method.md
section 6), in PyTorch on the CPU, for timing `legodnn profile` against on the
same library and test images.

The environments are the original's: [all original] + [all at S[j] for every
sparsity j], cut to entries 0, (n-1)//2 and n-1 when longer than 3. For every
environment e, block b and sparsity s it evaluates the baseline (e with b
original) and the test (e with b at s), each configuration once (the
original's cache by key; s = 0 is a key of its own, as the original retrains
it). Every configuration is built afresh, as the original deep-copies the
teacher and loads each block from its file, and scored on the test images in
eval mode under no_grad (top-1). Sizes and FLOPs (the original's torch.save
and thop passes) are not timed: they take well under a second.

The ONNX files run through retrain_reference.py's small interpreter: the
teacher's nodes that the manifest lists for a block are skipped and the
descendant's module computes the block's exit from its entry.

usage: /usr/bin/python3 bench/profile_reference.py LIB MODEL.onnx [--max-test 1000]
         [--batch 128] [--threads 2]
The test images are Fashion-MNIST's first N from /usr/share/datasets/fashion-mnist,
replicated to the model's channels, bilinear-resized to its H x W and
normalised with the model's legodnn.mean / legodnn.std metadata where it has
them (what `legodnn profile` uses), else the test images' own statistics.
"""
import argparse
import json
import os
import sys
import time

import onnx
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from retrain_reference import OnnxModule, idx  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"


def environments(sparsities):
    """The original's _generate_envir_sparsities: None is the teacher's block."""
    envs = [None] + list(sparsities)
    if len(envs) > 3:
        envs = [envs[0], envs[(len(envs) - 1) // 2], envs[-1]]
    return envs


def configurations(n_blocks, sparsities):
    """Every key the original evaluates, in its order, each once."""
    seen, keys = set(), []
    for e in environments(sparsities):
        for b in range(n_blocks):
            for s in sparsities:
                for v in (None, s):  # baseline, then test
                    key = tuple(v if i == b else e for i in range(n_blocks))
                    if key not in seen:
                        seen.add(key)
                        keys.append(key)
    return keys


class Composed(torch.nn.Module):
    """The teacher with some blocks replaced by descendants."""

    def __init__(self, teacher_path, blocks, lib, key):
        super().__init__()
        self.teacher = OnnxModule(teacher_path).eval()
        self.skip = set()
        self.at_exit = {}
        for b, s in zip(blocks, key):
            if s is None:
                continue
            d = next(d for d in b["descendants"] if d["sparsity"] == s)
            m = OnnxModule(os.path.join(lib, d["file"])).eval()
            self.add_module(b["name"].replace("-", "_"), m)
            self.skip.update(b["nodes"])
            self.at_exit[b["exit"]] = (b["entry"], m)

    def forward(self, x):
        t = self.teacher
        env = {t.input: x}
        for n in t.graph.node:
            out = n.output[0]
            if n.name in self.skip:
                if out in self.at_exit:
                    entry, m = self.at_exit[out]
                    env[out] = m(env[entry])
                continue
            env[out] = t.run_node(n, env)
        return env[t.output]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lib")
    ap.add_argument("model")
    ap.add_argument("--max-test", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    o = ap.parse_args()
    torch.set_num_threads(o.threads)
    man = json.load(open(os.path.join(o.lib, "manifest.json")))
    blocks = man["blocks"]
    sparsities = man["sparsities"]
    c, h, w = man["input_shape"][1:]
    meta = {p.key: p.value for p in onnx.load(o.model, load_external_data=False).metadata_props}
    x = torch.from_numpy(idx(os.path.join(DATA, "t10k-images-idx3-ubyte.gz"))[: o.max_test].copy()).float()
    y = torch.from_numpy(idx(os.path.join(DATA, "t10k-labels-idx1-ubyte.gz"))[: o.max_test].copy()).long()
    x = F.interpolate(x, (h, w), mode="bilinear", align_corners=False).repeat(1, c, 1, 1) / 255
    if "legodnn.mean" in meta and "legodnn.std" in meta:
        mean = torch.tensor([float(v) for v in meta["legodnn.mean"].split(",")]).view(1, -1, 1, 1)
        std = torch.tensor([float(v) for v in meta["legodnn.std"].split(",")]).view(1, -1, 1, 1)
    else:
        mean, std = x.mean(), x.std()
    x = (x - mean) / std
    keys = configurations(len(blocks), sparsities)
    print("reference: %d blocks x %d sparsities, %d environments, %d configurations on %d test images, "
          "batch %d, %d threads" % (len(blocks), len(sparsities), len(environments(sparsities)), len(keys),
                                    len(x), o.batch, o.threads), flush=True)
    t0 = time.time()
    acc = {}
    for key in keys:
        model = Composed(o.model, blocks, o.lib, key).eval()
        right = 0
        with torch.no_grad():
            for k in range(0, len(x), o.batch):
                right += int((model(x[k:k + o.batch]).argmax(1) == y[k:k + o.batch]).sum())
        acc[key] = right / len(x)
    total = time.time() - t0
    teacher = acc[tuple([None] * len(blocks))]
    print("teacher accuracy %.2f%%" % (100 * teacher), flush=True)
    print(json.dumps({"seconds": total, "configurations": len(keys), "test_samples": len(x), "batch": o.batch,
                      "threads": o.threads, "teacher_accuracy": teacher}))


if __name__ == "__main__":
    main()
