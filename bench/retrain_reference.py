#!/usr/bin/env python3
"""retrain_reference.py - LegoDNN's block retraining as the original does it
(legodnn/block_trainer.py, docs: legodnn-method.md section 5), in PyTorch on
the CPU, for timing `legodnn retrain` against on the same library, data and
epochs.

Per epoch and per batch: the teacher runs in eval mode under no_grad and its
block boundary tensors are captured; then every descendant of every block,
s = 0 included, trains one after another (train mode, input requires_grad as
the original sets it, MSE, Adam lr 3e-4 by default). At the end of each epoch
the mean training loss per descendant picks the "best" (the original pickles
the module; here its state_dict is copied). Nothing is written.

The ONNX files (the library's model and descendants) run through a small
interpreter of the ops ResNet-style models use, so no converter is needed.

usage: /usr/bin/python3 bench/retrain_reference.py LIB MODEL.onnx [--max-train 2000]
         [--epochs 2] [--batch 128] [--lr 3e-4] [--threads 2]
The data is Fashion-MNIST from /usr/share/datasets/fashion-mnist, replicated
to the model's channels, bilinear-resized to its H x W and normalised with
the train split's statistics, shuffled once with a fixed seed (the order does
not change the time).
"""
import argparse
import copy
import gzip
import json
import os
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper


class OnnxModule(torch.nn.Module):
    """An ONNX graph as a torch module: initializers used as weights are
    parameters, BatchNorm statistics buffers."""

    def __init__(self, path):
        super().__init__()
        m = onnx.load(path)
        self.graph = m.graph
        stats = set()
        for n in m.graph.node:
            if n.op_type == "BatchNormalization":
                stats.update(n.input[3:5])
        self.names = {}
        for i, t in enumerate(m.graph.initializer):
            a = torch.from_numpy(numpy_helper.to_array(t).copy())
            key = "t%d" % i
            self.names[t.name] = key
            if a.dtype == torch.float32 and t.name not in stats:
                self.register_parameter(key, torch.nn.Parameter(a))
            else:
                self.register_buffer(key, a)
        self.input = m.graph.input[0].name
        self.output = m.graph.output[0].name

    def value(self, env, name):
        return env[name] if name in env else getattr(self, self.names[name])

    def forward(self, x, capture=()):
        env = {self.input: x}
        got = {}
        for n in self.graph.node:
            y = env[n.output[0]] = self.run_node(n, env)
            if n.output[0] in capture:
                got[n.output[0]] = y
        return got if capture else env[self.output]

    def run_node(self, n, env):
        """One node's output from the values in env."""
        a = {at.name: onnx.helper.get_attribute_value(at) for at in n.attribute}
        ins = [self.value(env, i) if i else None for i in n.input]
        op = n.op_type
        if op == "Conv":
            pads = a.get("pads", [0, 0, 0, 0])
            y = F.conv2d(ins[0], ins[1], ins[2] if len(ins) > 2 else None, a.get("strides", [1, 1]),
                         (pads[0], pads[1]), a.get("dilations", [1, 1]), a.get("group", 1))
        elif op == "BatchNormalization":
            y = F.batch_norm(ins[0], ins[3], ins[4], ins[1], ins[2], self.training, 1 - a.get("momentum", 0.9),
                             a.get("epsilon", 1e-5))
        elif op == "Relu":
            y = F.relu(ins[0])
        elif op == "Add":
            y = ins[0] + ins[1]
        elif op == "Pad":
            p = [int(v) for v in ins[1]]
            h = len(p) // 2
            y = F.pad(ins[0], [v for d in reversed(range(h)) for v in (p[d], p[d + h])])
        elif op == "AveragePool":
            pads = a.get("pads", [0, 0, 0, 0])
            y = F.avg_pool2d(ins[0], a["kernel_shape"], a.get("strides", a["kernel_shape"]), (pads[0], pads[1]))
        elif op == "GlobalAveragePool":
            y = ins[0].mean((2, 3), keepdim=True)
        elif op == "Constant":
            y = torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
        elif op == "Shape":
            y = torch.tensor(ins[0].shape)
        elif op == "Gather":
            y = ins[0][ins[1]]
        elif op == "Unsqueeze":
            axes = a["axes"] if "axes" in a else [int(v) for v in ins[1]]
            y = ins[0]
            for ax in sorted(axes):
                y = y.unsqueeze(ax)
        elif op == "Concat":
            y = torch.cat([t.reshape(-1) if t.dim() == 0 else t for t in ins], a["axis"])
        elif op == "Reshape":
            shape = [int(v) for v in ins[1]]
            shape = [ins[0].shape[0] if v == 1 and i == 0 else v for i, v in enumerate(shape)]
            y = ins[0].reshape(shape)
        elif op == "Flatten":
            y = ins[0].flatten(a.get("axis", 1))
        elif op == "Gemm":
            b = ins[1].t() if a.get("transB", 0) else ins[1]
            y = ins[0] @ b + (ins[2] if len(ins) > 2 else 0)
        else:
            raise SystemExit("%s: op %s is not in this small interpreter" % (n.name, op))
        return y


def idx(path):
    with gzip.open(path) as f:
        b = f.read()
    magic, n = int.from_bytes(b[0:4], "big"), int.from_bytes(b[4:8], "big")
    if magic == 0x803:
        h, w = int.from_bytes(b[8:12], "big"), int.from_bytes(b[12:16], "big")
        return np.frombuffer(b, np.uint8, offset=16).reshape(n, 1, h, w)
    return np.frombuffer(b, np.uint8, offset=8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lib")
    ap.add_argument("model")
    ap.add_argument("--max-train", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--threads", type=int, default=2)
    o = ap.parse_args()
    torch.set_num_threads(o.threads)
    torch.manual_seed(0)
    man = json.load(open(os.path.join(o.lib, "manifest.json")))
    teacher = OnnxModule(o.model).eval()
    c, h, w = man["input_shape"][1:]
    x = torch.from_numpy(idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")[: o.max_train].copy())
    x = x.float() / 255
    x = (x - x.mean()) / x.std()
    x = F.interpolate(x, (h, w), mode="bilinear", align_corners=False).repeat(1, c, 1, 1)
    x = x[torch.randperm(len(x))]
    nb = len(x) // o.batch  # drop_last, as the original's train loader
    blocks = []
    for b in man["blocks"]:
        ds = []
        for d in b["descendants"]:
            m = OnnxModule(os.path.join(o.lib, d["file"]))
            opt = torch.optim.Adam([torch.zeros(1)], lr=o.lr)  # the original's template ...
            opt.add_param_group({"params": list(m.parameters())})  # ... plus the block's params
            ds.append({"s": d["sparsity"], "m": m, "opt": opt, "best": float("inf")})
        blocks.append((b["entry"], b["exit"], ds))
    capture = {n for e, x_, _ in blocks for n in (e, x_)}
    print("reference: %d blocks x %d descendants (s = 0 included), %d batches of %d, %d epochs, %d threads"
          % (len(blocks), len(blocks[0][2]), nb, o.batch, o.epochs, o.threads), flush=True)
    t0 = time.time()
    teacher_s = 0.0
    for epoch in range(o.epochs):
        te = time.time()
        sums = [[0.0] * len(ds) for _, _, ds in blocks]
        for k in range(nb):
            xb = x[k * o.batch:(k + 1) * o.batch]
            tt = time.time()
            with torch.no_grad():
                feats = teacher(xb, capture)
            teacher_s += time.time() - tt
            for bi, (entry, exit_, ds) in enumerate(blocks):
                inp, target = feats[entry].detach(), feats[exit_].detach()
                for di, d in enumerate(ds):
                    d["m"].train()
                    inp.requires_grad_(True)
                    loss = F.mse_loss(d["m"](inp), target)
                    d["opt"].zero_grad()
                    loss.backward()
                    d["opt"].step()
                    sums[bi][di] += loss.item()
        for bi, (_, _, ds) in enumerate(blocks):
            for di, d in enumerate(ds):
                mean = sums[bi][di] / nb
                if mean < d["best"]:
                    d["best"] = mean
                    d["state"] = copy.deepcopy(d["m"].state_dict())
        print("epoch %d: %.1f s" % (epoch + 1, time.time() - te), flush=True)
    total = time.time() - t0
    print(json.dumps({"seconds": total, "teacher_seconds": teacher_s, "epochs": o.epochs, "batches": nb,
                      "batch": o.batch, "threads": o.threads}))


if __name__ == "__main__":
    main()
