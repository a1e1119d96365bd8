#!/usr/bin/python3
"""Generate the PyTorch *training* reference data under tests/data/train/.

Run from the repository root with Debian's Python (it has torch 1.13 and onnx 1.12):

    /usr/bin/python3 tools/gen_train_fixtures.py

For two small CNNs (resnet18_train, mobilenetv2_train) it exports the model in eval mode
exactly like tools/gen_fixtures.py exports the inference fixtures, and records what one
train-mode step (loss, logits, every parameter gradient, updated BN running statistics)
and ten steps of SGD / SGD-Nesterov / Adam / AdamW on one batch produce in PyTorch, and
replays all of that in float64 to record the float32 noise floor (`float64_check` in each
model's JSON).  It also writes reference values and input-gradients for the loss functions (losses.json) and
learning-rate schedules (schedules.json), and tests/data/train/README.md, which documents
every file and convention.

Everything is seeded (per item, from its name; see gen_fixtures.seed_for), single-threaded
and deterministic: reruns are byte-identical.  The script deletes and rewrites
tests/data/train/ and does not touch anything else.
"""

import copy
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model_zoo  # noqa: E402
from gen_fixtures import (ROOT, export_torch, prepare_bn, randn, seeded, to_np,  # noqa: E402
                          graph_op_types, real_inputs, static_shape)

TRAIN_DIR = os.path.join(ROOT, 'tests', 'data', 'train')

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

BATCH = 8
NUM_CLASSES = 10
INPUT_SHAPE = [BATCH, 3, 32, 32]
OPSET = 13
STEPS = 10

# name -> (builder call, description)
TRAIN_MODELS = {
    'resnet18_train': (lambda: model_zoo.resnet18(num_classes=NUM_CLASSES, width=4),
                       'tools/model_zoo.resnet18(num_classes=10, width=4)'),
    'mobilenetv2_train': (lambda: model_zoo.mobilenetv2(num_classes=NUM_CLASSES, width=4),
                          'tools/model_zoo.mobilenetv2(num_classes=10, width=4)'),
}

OPTIMIZERS = {
    'sgd': dict(cls='SGD', lr=0.05, momentum=0.9, nesterov=False, weight_decay=5e-4),
    'sgd_nesterov': dict(cls='SGD', lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
    'adam': dict(cls='Adam', lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0),
    'adamw': dict(cls='AdamW', lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01),
}


def f32list(t):
    """Flat list of Python floats holding float32 values exactly (repr of the double)."""
    a = np.asarray(t.detach().cpu().numpy() if torch.is_tensor(t) else t, dtype=np.float32).reshape(-1)
    return [float(v) for v in a]


def write_f32(path, arrays):
    with open(path, 'wb') as f:
        for a in arrays:
            f.write(np.ascontiguousarray(a, dtype='<f4').tobytes())


def layout(named):
    """[(name, tensor)] -> (list of {name, shape, offset}, list of numpy arrays)."""
    entries, arrays, off = [], [], 0
    for n, t in named:
        a = to_np(t)
        entries.append({'name': n, 'shape': list(a.shape), 'offset': off})
        arrays.append(a)
        off += a.size
    return entries, arrays, off


def running_buffers(model):
    return [(n, b) for n, b in model.named_buffers() if n.endswith('.running_mean') or n.endswith('.running_var')]


def check_export(name, model, onnx_model):
    """Every parameter and BN running statistic must be an initializer of the same name, shape and value."""
    inits = {i.name: numpy_helper.to_array(i) for i in onnx_model.graph.initializer}
    problems = []
    expected = list(model.named_parameters()) + running_buffers(model)
    for n, t in expected:
        if n not in inits:
            problems.append('%s: not an ONNX initializer' % n)
            continue
        a = inits[n]
        if list(a.shape) != list(t.shape):
            problems.append('%s: shape %s in ONNX, %s in torch' % (n, list(a.shape), list(t.shape)))
        elif a.dtype != np.float32 or not np.array_equal(a, to_np(t)):
            problems.append('%s: values differ between ONNX and torch' % n)
    if problems:
        raise SystemExit('%s: torch renamed or changed parameters on export:\n  %s\nONNX initializers: %s'
                         % (name, '\n  '.join(problems), sorted(inits)))
    extra = sorted(set(inits) - {n for n, _ in expected})
    # BatchNormalization nodes: inputs must be exactly the module's named tensors.
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    bn_nodes = [n for n in onnx_model.graph.node if n.op_type == 'BatchNormalization']
    assert len(bn_nodes) == len(bns), (name, len(bn_nodes), len(bns))
    bn_names = {mod_name for mod_name, m in model.named_modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    bn_info = []
    for node in bn_nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        prefix = node.input[1].rsplit('.', 1)[0]
        assert prefix in bn_names, (name, node.name, list(node.input))
        assert list(node.input[1:]) == [prefix + s for s in ('.weight', '.bias', '.running_mean', '.running_var')], \
            (name, node.name, list(node.input))
        assert len(node.output) == 1, (name, node.name, 'BN exported with training outputs')
        mom, eps = attrs.get('momentum', 0.9), attrs.get('epsilon', 1e-5)
        assert abs(mom - 0.9) < 1e-6 and abs(eps - 1e-5) < 1e-9, (name, node.name, attrs)
        bn_info.append({'node': node.name, 'module': prefix, 'onnx_momentum': float(np.float32(mom)),
                        'epsilon': float(np.float32(eps))})
    return extra, bn_info


def ce(logits, y):
    return F.cross_entropy(logits, y)


class CapturePreactivations:
    """Record the input of every F.relu / F.hardtanh (ReLU6) call made during a forward."""

    def __enter__(self):
        self.pre, self.kinks = [], []
        self.relu, self.hardtanh = F.relu, F.hardtanh

        def relu(t, inplace=False):
            self.pre.append(t.detach().double().clone())
            self.kinks.append((0.0,))
            return self.relu(t, inplace=inplace)

        def hardtanh(t, min_val=-1.0, max_val=1.0, inplace=False):
            self.pre.append(t.detach().double().clone())
            self.kinks.append((min_val, max_val))
            return self.hardtanh(t, min_val, max_val, inplace)
        F.relu, F.hardtanh = relu, hardtanh
        return self

    def __exit__(self, *exc):
        F.relu, F.hardtanh = self.relu, self.hardtanh


def float64_check(model, x, y, rec, grads32, running32, logits32):
    """Replay the step and the optimizer runs in float64 from the same float32 weights.

    The differences are float32 rounding noise, i.e. roughly what any correct float32
    implementation (the C engine) will also show against the torch float32 reference."""
    m64 = copy.deepcopy(model).double()
    x64 = x.double()
    with torch.no_grad(), CapturePreactivations() as c64:
        copy.deepcopy(m64).train()(x64)
    with torch.no_grad(), CapturePreactivations() as c32:
        copy.deepcopy(model).train()(x)
    flips, min_dist, n_act = 0, float('inf'), 0
    for a32, a64, kinks in zip(c32.pre, c64.pre, c64.kinks):
        n_act += a64.numel()
        for k in kinks:
            flips += int(((a32 <= k) != (a64 <= k)).sum())
            min_dist = min(min_dist, float((a64 - k).abs().min()))
    m = copy.deepcopy(m64).train()
    logits = m(x64)
    loss = ce(logits, y)
    loss.backward()
    g64 = [p.grad.numpy().ravel() for p in m.parameters()]
    r64 = np.concatenate([b.numpy().ravel() for _, b in running_buffers(m)])
    gmax = max(float(np.abs(g).max()) for g in g64)
    zero, rel_l2 = [], 0.0
    for (n, _), g, g32 in zip(m.named_parameters(), g64, grads32):
        if np.abs(g).max() <= 1e-12 * gmax:
            zero.append(n)
        else:
            rel_l2 = max(rel_l2, float(np.linalg.norm(g32.ravel() - g) / np.linalg.norm(g)))
    out = {
        'note': 'float32 reference vs the same computation in float64 (from the same float32 weights '
                'and inputs): the float32 rounding noise of this fixture',
        'activations_at_kinks': {'count': n_act, 'kink_flips_f32_vs_f64': flips,
                                 'min_distance_to_kink_f64': min_dist},
        'step_loss_abs_diff': abs(float(loss.item()) - rec['step']['loss']),
        'step_logits_max_abs_diff': float(np.abs(logits.detach().numpy().ravel() - logits32.ravel()).max()),
        'step_grads_max_abs_diff': float(max(np.abs(g - g32.ravel()).max() for g, g32 in zip(g64, grads32))),
        'step_grads_max_abs': gmax,
        'step_grads_worst_rel_l2_per_tensor': rel_l2,
        'step_grads_zero_in_exact_arithmetic': zero,
        'step_running_max_abs_diff': float(np.abs(r64 - np.concatenate([r.ravel() for r in running32])).max()),
    }
    for key, spec in OPTIMIZERS.items():
        r = train_steps(m64, x64, y, spec)
        out[key + '_losses_f64'] = r['losses']
        out[key + '_losses_max_abs_diff'] = max(abs(a - b) for a, b in zip(r['losses'], rec[key]['losses']))
        out[key + '_params_after_sum_f64'] = r['params_after_sum']
        out[key + '_params_after_l2_f64'] = r['params_after_l2']
    return out


def train_steps(model0, x, y, spec):
    model = copy.deepcopy(model0)
    model.train()
    params = model.parameters()
    if spec['cls'] == 'SGD':
        opt = torch.optim.SGD(params, lr=spec['lr'], momentum=spec['momentum'], dampening=0,
                              nesterov=spec['nesterov'], weight_decay=spec['weight_decay'], foreach=False)
    elif spec['cls'] == 'Adam':
        opt = torch.optim.Adam(params, lr=spec['lr'], betas=tuple(spec['betas']), eps=spec['eps'],
                               weight_decay=spec['weight_decay'], amsgrad=False, foreach=False)
    else:
        opt = torch.optim.AdamW(params, lr=spec['lr'], betas=tuple(spec['betas']), eps=spec['eps'],
                                weight_decay=spec['weight_decay'], amsgrad=False, foreach=False)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = ce(model(x), y)
        losses.append(float(loss.item()))
        loss.backward()
        opt.step()
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
        loss_after = float(ce(model(x), y).item())  # train mode: also updates the running stats once more
    rec = {k: v for k, v in spec.items() if k != 'cls'}
    rec.update(optimizer='torch.optim.' + spec['cls'], losses=losses,
               loss_after_last_step=loss_after,
               params_after_sum=float(flat.sum()), params_after_l2=float(flat.norm()))
    return rec


def gen_model(name):
    builder, desc = TRAIN_MODELS[name]
    t0 = time.time()
    seeded(name)
    model = builder()
    prepare_bn(model, [(1, 3, 32, 32)])
    x = randn(*INPUT_SHAPE)
    y = torch.randint(0, NUM_CLASSES, (BATCH,), dtype=torch.int64)

    onnx_model, outs = export_torch(model, [x], OPSET)  # leaves the model in eval mode
    onnx.checker.check_model(onnx_model, full_check=True)
    ins = real_inputs(onnx_model)
    assert len(ins) == 1 and static_shape(ins[0]) == tuple(INPUT_SHAPE), name
    assert len(onnx_model.graph.output) == 1 and static_shape(onnx_model.graph.output[0]) == (BATCH, NUM_CLASSES)
    extra_inits, bn_info = check_export(name, model, onnx_model)
    eval_logits = outs[0]
    base = os.path.join(TRAIN_DIR, name)
    with open(base + '.onnx', 'wb') as f:
        f.write(onnx_model.SerializeToString())
    write_f32(base + '.x.bin', [to_np(x)])
    with open(base + '.y.bin', 'wb') as f:
        f.write(y.numpy().astype('<i4').tobytes())
    write_f32(base + '.eval_logits.bin', [eval_logits])

    # One train-mode step from the exported weights.
    m = copy.deepcopy(model)
    m.train()
    m.zero_grad(set_to_none=True)
    logits = m(x)
    loss = ce(logits, y)
    loss.backward()
    named_params = list(m.named_parameters())
    assert all(p.grad is not None for _, p in named_params), name
    grads, garr, ngrad = layout([(n, p.grad) for n, p in named_params])
    running, rarr, nrun = layout(running_buffers(m))
    write_f32(base + '.logits.bin', [to_np(logits)])
    write_f32(base + '.grads.bin', garr)
    write_f32(base + '.running.bin', rarr)
    # Cross-check the BN running-stat update against the documented formula on the first BN.
    with torch.no_grad():
        first_bn = next(mm for mm in m.modules() if isinstance(mm, nn.BatchNorm2d))
        first_bn_name = next(n for n, mm in m.named_modules() if mm is first_bn)
        ref = copy.deepcopy(model)
        conv_in = {}
        h = dict(ref.named_modules())[first_bn_name].register_forward_pre_hook(
            lambda mod, inp: conv_in.setdefault('x', inp[0].detach().clone()))
        ref.eval()
        ref(x)
        h.remove()
        a = conv_in['x']
        bn0 = dict(model.named_modules())[first_bn_name]
        var_u = a.var(dim=(0, 2, 3), unbiased=True)
        exp_rv = 0.9 * bn0.running_var + 0.1 * var_u
        exp_rm = 0.9 * bn0.running_mean + 0.1 * a.mean(dim=(0, 2, 3))
        assert torch.allclose(first_bn.running_var, exp_rv, rtol=1e-5, atol=1e-6), name
        assert torch.allclose(first_bn.running_mean, exp_rm, rtol=1e-5, atol=1e-6), name

    rec = {
        'name': name,
        'model': desc,
        'onnx': name + '.onnx',
        'x_file': name + '.x.bin',
        'y_file': name + '.y.bin',
        'batch': BATCH,
        'num_classes': NUM_CLASSES,
        'input_shape': INPUT_SHAPE,
        'opset': OPSET,
        'onnx_ops': graph_op_types(onnx_model),
        'num_parameters': ngrad,
        'num_running': nrun,
        'bn_torch_momentum': 0.1,
        'bn': bn_info,
        'other_initializers': extra_inits,
        'loss_fn': 'F.cross_entropy(logits, y), mean over the batch',
        'step': {
            'loss': float(loss.item()),
            'logits_file': name + '.logits.bin',
            'logits_shape': [BATCH, NUM_CLASSES],
            'grads_file': name + '.grads.bin',
            'grads': grads,
            'running_file': name + '.running.bin',
            'running': running,
        },
        'eval_logits_file': name + '.eval_logits.bin',
        'eval_loss': float(ce(torch.from_numpy(eval_logits), y).item()),
    }
    for key, spec in OPTIMIZERS.items():
        rec[key] = train_steps(model, x, y, spec)
    # The first loss of every optimizer run is the single-step loss (same weights, same batch).
    for key in OPTIMIZERS:
        assert rec[key]['losses'][0] == rec['step']['loss'], (name, key)
    rec['float64_check'] = float64_check(model, x, y, rec, garr, rarr, to_np(logits))
    with open(base + '.json', 'w') as f:
        json.dump(rec, f, indent=1)
        f.write('\n')
    return rec, time.time() - t0


# ---------------------------------------------------------------------------
# Loss functions
# ---------------------------------------------------------------------------

def loss_case(fn, pred, *rest):
    p = pred.clone().requires_grad_(True)
    loss = fn(p, *rest)
    loss.backward()
    return float(loss.item()), p.grad


def gen_losses():
    out = {'note': 'every loss is reduction="mean"; "grad" is d loss / d input (first argument), '
                   'flat row-major like the inputs; float32 values written exactly'}
    seeded('losses_ce')
    logits = randn(5, 7) * 2.0
    labels = torch.randint(0, 7, (5,), dtype=torch.int64)
    for eps in (0.0, 0.1):
        key = 'cross_entropy' if eps == 0.0 else 'cross_entropy_ls0.1'
        loss, g = loss_case(lambda a, b: F.cross_entropy(a, b, label_smoothing=eps), logits, labels)
        out[key] = {'fn': 'F.cross_entropy(logits, labels, label_smoothing=%g)' % eps,
                    'label_smoothing': eps, 'shape': [5, 7], 'logits': f32list(logits),
                    'labels': [int(v) for v in labels], 'loss': loss, 'grad': f32list(g)}

    seeded('losses_mse')
    pred = randn(3, 4, 5)
    target = randn(3, 4, 5)
    loss, g = loss_case(F.mse_loss, pred, target)
    out['mse'] = {'fn': 'F.mse_loss(pred, target)', 'shape': [3, 4, 5], 'pred': f32list(pred),
                  'target': f32list(target), 'loss': loss, 'grad': f32list(g)}

    seeded('losses_bce')
    shape = (4, 6)
    prob = torch.empty(shape).uniform_(0.05, 0.95)
    hard = torch.randint(0, 2, shape).float()
    soft = torch.rand(shape)
    blogits = randn(*shape) * 3.0
    for tkey, t in (('hard', hard), ('soft', soft)):
        loss, g = loss_case(F.binary_cross_entropy, prob, t)
        out['bce_' + tkey] = {'fn': 'F.binary_cross_entropy(pred, target)', 'shape': list(shape),
                              'pred': f32list(prob), 'target': f32list(t), 'loss': loss, 'grad': f32list(g)}
        loss, g = loss_case(F.binary_cross_entropy_with_logits, blogits, t)
        out['bce_logits_' + tkey] = {'fn': 'F.binary_cross_entropy_with_logits(logits, target)',
                                     'shape': list(shape), 'logits': f32list(blogits), 'target': f32list(t),
                                     'loss': loss, 'grad': f32list(g)}
    # Independent float64 check of the documented formulas.
    for k, v in out.items():
        if not isinstance(v, dict):
            continue
        if k.startswith('cross_entropy'):
            z = np.array(v['logits'], np.float64).reshape(v['shape'])
            n, c = z.shape
            lp = z - z.max(1, keepdims=True)
            lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
            q = np.full((n, c), v['label_smoothing'] / c)
            q[np.arange(n), v['labels']] += 1 - v['label_smoothing']
            ref_l = -(q * lp).sum() / n
            ref_g = (np.exp(lp) - q) / n
        elif k == 'mse':
            p, t = np.array(v['pred']), np.array(v['target'])
            ref_l = ((p - t) ** 2).mean()
            ref_g = 2 * (p - t) / p.size
        elif k.startswith('bce_logits'):
            z, t = np.array(v['logits']), np.array(v['target'])
            ref_l = (np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).mean()
            ref_g = (1 / (1 + np.exp(-z)) - t) / z.size
        else:
            p, t = np.array(v['pred']), np.array(v['target'])
            ref_l = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean()
            ref_g = (p - t) / (p * (1 - p)) / p.size
        assert abs(ref_l - v['loss']) <= 1e-5 * max(1, abs(ref_l)), (k, ref_l, v['loss'])
        assert np.allclose(np.array(v['grad']), np.ravel(ref_g), rtol=1e-4, atol=1e-7), k
    with open(os.path.join(TRAIN_DIR, 'losses.json'), 'w') as f:
        json.dump(out, f, indent=1)
        f.write('\n')
    return out


# ---------------------------------------------------------------------------
# Learning-rate schedules
# ---------------------------------------------------------------------------

EPOCHS = 20
BASE_LR = 0.1


def run_schedule(make):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=BASE_LR)
    sched = make(opt)
    lrs = []
    for _ in range(EPOCHS):
        lrs.append(opt.param_groups[0]['lr'])  # the lr used during this epoch
        opt.step()  # (no grads: a no-op, keeps torch's call-order check quiet)
        sched.step()
    return lrs


def gen_schedules():
    lrs = {
        'step': run_schedule(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=5, gamma=0.1)),
        'cosine': run_schedule(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=0)),
        'warmup_cosine': run_schedule(lambda o: torch.optim.lr_scheduler.SequentialLR(
            o, schedulers=[torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=3),
                           torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=17, eta_min=0)],
            milestones=[3])),
    }
    closed = {
        'step': [BASE_LR * 0.1 ** (e // 5) for e in range(EPOCHS)],
        'cosine': [BASE_LR * (1 + math.cos(math.pi * e / 20)) / 2 for e in range(EPOCHS)],
        'warmup_cosine': [BASE_LR * (0.1 + 0.9 * e / 3) if e < 3 else
                          BASE_LR * (1 + math.cos(math.pi * (e - 3) / 17)) / 2 for e in range(EPOCHS)],
    }
    maxdiff = {k: max(abs(a - b) for a, b in zip(lrs[k], closed[k])) for k in lrs}
    for k, d in maxdiff.items():
        assert d < 1e-9, (k, d, lrs[k], closed[k])
    out = {
        'note': 'lrs[e] = optimizer.param_groups[0]["lr"] read during epoch e (before scheduler.step() '
                'at the end of epoch e), e = 0..19; base lr 0.1. "closed_form" is the formula in README.md; '
                '"max_abs_diff" its largest difference from torch (torch updates some schedules recursively).',
        'base_lr': BASE_LR,
        'epochs': EPOCHS,
        'step': {'scheduler': 'StepLR(step_size=5, gamma=0.1)', 'lrs': lrs['step']},
        'cosine': {'scheduler': 'CosineAnnealingLR(T_max=20, eta_min=0)', 'lrs': lrs['cosine']},
        'warmup_cosine': {'scheduler': 'SequentialLR([LinearLR(start_factor=0.1, end_factor=1.0, total_iters=3), '
                                       'CosineAnnealingLR(T_max=17, eta_min=0)], milestones=[3])',
                          'lrs': lrs['warmup_cosine']},
    }
    for k in closed:
        out[k]['closed_form'] = closed[k]
        out[k]['max_abs_diff'] = maxdiff[k]
    with open(os.path.join(TRAIN_DIR, 'schedules.json'), 'w') as f:
        json.dump(out, f, indent=1)
        f.write('\n')
    return out


# ---------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------

README = """\
# Training reference data

Generated by `tools/gen_train_fixtures.py` with PyTorch 1.13 (CPU, one thread); do not
edit by hand.  The C engine's training code is checked against these files, the way
llm.c's `test_gpt2.c` checks its forward/backward/update against PyTorch.

## Regenerating

From the repository root, with Debian's Python (torch 1.13, onnx 1.12):

    /usr/bin/python3 tools/gen_train_fixtures.py

It deletes and rewrites `tests/data/train/` (this README included), is seeded per item and
deterministic (reruns are byte-identical), and takes a few seconds.

## Conventions

* All `.bin` files are raw little-endian, row-major (C order), no header.  `float32`
  unless stated; `*.y.bin` is `int32`.  Images are NCHW.
* Floats in the JSON files are float32 values written exactly (as the decimal repr of the
  double holding them), except learning rates, which are the float64 values torch uses.
* Loss: `F.cross_entropy(logits, y)` = mean over the batch of `-log_softmax(logits)[y]`.
* Parameter order: `model.named_parameters()` order, which is module-definition order
  (for a BN: `.weight` then `.bias`; a conv without bias has only `.weight`; Linear:
  `.weight` [out, in] then `.bias`).  The names are the ONNX initializer names: the
  generator fails unless every parameter and every BN `running_mean`/`running_var` is an
  initializer with the same name, shape and value.  Each BatchNormalization node's inputs
  are `[x, P.weight, P.bias, P.running_mean, P.running_var]` for its module `P` (listed as
  `"bn"` in the model JSON, in graph order).
* BatchNorm momentum: torch momentum 0.1 is exported as the ONNX attribute
  `momentum = 0.9` (ONNX's is the weight of the *old* value: `1 - torch momentum`);
  epsilon 1e-5.
* BatchNorm in train mode (PyTorch semantics), per channel over N*H*W values (n of them):
  `y = (x - mean_b) / sqrt(var_b + eps) * weight + bias` with `var_b` the *biased* batch
  variance (divide by n); then
  `running_mean = 0.9 * running_mean + 0.1 * mean_b` and
  `running_var = 0.9 * running_var + 0.1 * var_b * n / (n - 1)` (the *unbiased* variance).
  The gradient flows through mean_b and var_b (the full batch-norm backward).
* ReLU and ReLU6 (ONNX `Relu`, `Clip(0, 6)`): the derivative at the kinks is 0
  (gradient passes only where 0 < x, resp. 0 < x < 6).
* Weight decay applies to every parameter (BN weights/biases and biases included), as
  torch does when given `model.parameters()`.
* Optimizers (torch 1.13, `foreach=False`), g = gradient, t = step number from 1:
  * SGD: `d = g + wd*p`; `buf = d` on the first step, else `buf = momentum*buf + d`
    (dampening 0); `d = d + momentum*buf` if nesterov else `d = buf`; `p -= lr*d`.
  * Adam: `g = g + wd*p` (wd = 0 here); `m = b1*m + (1-b1)*g`; `v = b2*v + (1-b2)*g*g`;
    `p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
  * AdamW: first `p *= 1 - lr*wd`, then the Adam update with the raw gradient.

## Files per model

`resnet18_train` (`model_zoo.resnet18(num_classes=10, width=4)`) and `mobilenetv2_train`
(`model_zoo.mobilenetv2(num_classes=10, width=4)`); batch 8, input 8x3x32x32, 10 classes.

| file | content |
| --- | --- |
| `NAME.onnx` | the model exported in **eval** mode like the inference fixtures (opset 13, `training=TrainingMode.PRESERVE`, `do_constant_folding=False`, static shapes, BatchNormalization nodes kept; input `input`, output `output` [8,10]); BN statistics randomised (`gen_fixtures.prepare_bn`).  The engine switches BN to batch statistics itself when it trains. |
| `NAME.x.bin` | one batch of inputs, float32 [8,3,32,32] (`torch.randn`) |
| `NAME.y.bin` | its labels, int32 [8], in [0,10) |
| `NAME.eval_logits.bin` | eval-mode output for x with the exported weights, float32 [8,10] (= running `NAME.onnx` for inference) |
| `NAME.logits.bin` | train-mode forward output for x (BN on batch statistics), float32 [8,10] |
| `NAME.grads.bin` | after one `loss.backward()` of that forward: every parameter's `.grad`, float32, concatenated in the order of `step.grads` |
| `NAME.running.bin` | every BN `running_mean` and `running_var` **after** that one train-mode forward, float32, concatenated in the order of `step.running` |
| `NAME.json` | the metadata and results below |

`NAME.json`:

* `batch`, `num_classes`, `input_shape`, `opset`, `onnx_ops`, `num_parameters`,
  `num_running`, `bn` (per BatchNormalization node: node name, module prefix, ONNX momentum,
  epsilon), `other_initializers` (initializers that are neither parameters nor running stats).
* `step`: `loss` (train-mode loss of the exported weights on x, y), `logits_file`,
  `logits_shape`, `grads_file`, `grads` = `[{"name", "shape", "offset"}]` (offset in
  elements into the grads file) for every parameter, `running_file`, `running` = same
  layout for every `*.running_mean` / `*.running_var` (module order; mean before var).
* `eval_logits_file`, `eval_loss` (cross-entropy of the eval logits).
* `sgd`, `sgd_nesterov`, `adam`, `adamw`: hyper-parameters (`lr`, `momentum`, `nesterov`,
  `weight_decay`, or `lr`, `betas`, `eps`, `weight_decay`) and `losses`: 10 consecutive
  training steps on the same batch (x, y), starting from a fresh copy of the exported
  weights and running statistics, model in train mode throughout (running statistics
  evolve).  Step i: zero the grads, forward, record `losses[i]`, backward,
  `optimizer.step()`; so `losses[0] == step.loss` and `losses[i]` is the loss with the
  weights after i updates (and running stats after i forwards, which the train-mode loss
  does not depend on).  Also `loss_after_last_step` (one more train-mode forward after the
  10th update), and `params_after_sum` / `params_after_l2`: sum and L2 norm (float64) of
  all parameters concatenated after the 10 updates.

### `float64_check`: the float32 noise floor (use it to set tolerances)

The generator replays the step and the four optimizer runs in float64 from the same
float32 weights and inputs and records the differences: what any *correct* float32
implementation (the C engine, with its own summation order) should also expect against
the torch float32 reference.

* `activations_at_kinks`: number of ReLU/ReLU6 inputs in the train-mode forward,
  `kink_flips_f32_vs_f64` (inputs on different sides of 0 or 6 in float32 and float64) and
  the smallest distance of a float64 input to a kink.
* `step_loss_abs_diff`, `step_logits_max_abs_diff`, `step_grads_max_abs_diff`,
  `step_grads_max_abs`, `step_grads_worst_rel_l2_per_tensor` (max over tensors of
  ||g32 - g64|| / ||g64||, zero-gradient tensors excluded), `step_running_max_abs_diff`.
* `step_grads_zero_in_exact_arithmetic`: tensors whose exact gradient is 0 (float64 grad
  <= 1e-12 * the largest); in MobileNetV2 every block's `bn3.bias` (its output only reaches a
  1x1 conv followed by a train-mode BN, which removes any per-channel shift).  Their float32
  grads are rounding noise (~1e-8): compare them absolutely against the largest gradient,
  never relatively.  (Adam/AdamW normalise that noise into updates of order lr on those
  biases; the train-mode loss does not depend on them, but parameter sums do.)
* `<opt>_losses_f64`, `<opt>_losses_max_abs_diff`, `<opt>_params_after_sum_f64`,
  `<opt>_params_after_l2_f64`.

ReLU networks have gradients that jump where an activation input crosses a kink, so float32
noise (1e-6..1e-5 on activations here) can flip a few of the millions of activations, and one
flip changes upstream gradients by ~1e-3 relative.  ResNet-18 (0.28M activations) has no
flip at the reference step and float32 and float64 agree to ~1e-6 (SGD-Nesterov's later
steps drift to ~1e-3); MobileNetV2 (3.9M activations) has a flip already in the single
step, and its multi-step runs amplify flips to loss differences of ~1e-2.  Put tight
comparisons on `resnet18_train`; on `mobilenetv2_train` compare the step's gradients with a
per-tensor relative-L2 tolerance of ~1e-2 and its loss series loosely (a few times
`<opt>_losses_max_abs_diff`).

## losses.json

Fixed random inputs, PyTorch float32 results, reduction mean; `grad` is d loss / d (first
argument), flat row-major in the shape `shape`.  All values are also checked in the
generator against float64 closed forms:

* `cross_entropy`, `cross_entropy_ls0.1`: logits [5,7], int `labels`; with label smoothing
  e and C classes the target distribution is `q = (1-e)*onehot(y) + e/C`, loss =
  `mean_n sum_c -q*log_softmax(z)`, grad = `(softmax(z) - q) / N`.
* `mse`: pred, target [3,4,5]; loss = `mean((p-t)^2)`, grad = `2*(p-t)/numel`.
* `bce_hard`, `bce_soft`: `F.binary_cross_entropy(pred, target)`, pred [4,6] in
  (0.05, 0.95), targets in {0,1} resp. soft in [0,1); loss = `-mean(t*log p + (1-t)*log(1-p))`
  (torch clamps each log at -100, which these inputs never reach), grad =
  `(p-t) / (p*(1-p)) / numel`.
* `bce_logits_hard`, `bce_logits_soft`: `F.binary_cross_entropy_with_logits(logits, target)`
  on logits [4,6] with the same targets; loss = `mean(max(z,0) - z*t + log(1+exp(-|z|)))`,
  grad = `(sigmoid(z) - t) / numel`.

## schedules.json

Learning rates for 20 epochs (e = 0..19) from `torch.optim.lr_scheduler` with base lr 0.1
on `torch.optim.SGD`.  **Convention: `lrs[e]` is the lr used *during* epoch e**: the
loop is `for e in range(20): lrs[e] = optimizer.param_groups[0]['lr']; <train epoch e>;
scheduler.step()`, i.e. the lr is read before the scheduler is stepped at the end of the
epoch (so `lrs[0]` is the lr the scheduler sets at construction).

* `step`: `StepLR(step_size=5, gamma=0.1)`: `0.1 * 0.1^floor(e/5)`.
* `cosine`: `CosineAnnealingLR(T_max=20, eta_min=0)`: `0.1 * (1 + cos(pi*e/20)) / 2`.
* `warmup_cosine`: `SequentialLR([LinearLR(start_factor=0.1, end_factor=1.0,
  total_iters=3), CosineAnnealingLR(T_max=17, eta_min=0)], milestones=[3])`: epochs 0..2
  use `0.1 * (0.1 + 0.9*e/3)` = 0.01, 0.04, 0.07; from epoch 3 on the cosine restarts at the
  base lr: `0.1 * (1 + cos(pi*(e-3)/17)) / 2` (epoch 3 = 0.1; the linear factor would
  reach 1.0 at epoch 3, where the cosine takes over).

Each entry also holds `closed_form` (these formulas in float64) and `max_abs_diff` between
the two (torch computes cosine recursively, so they differ in the last bits).
"""


def main():
    t0 = time.time()
    assert os.path.isdir(os.path.join(ROOT, 'tests')), 'run from a checkout of the repository'
    shutil.rmtree(TRAIN_DIR, ignore_errors=True)
    os.makedirs(TRAIN_DIR)
    for name in TRAIN_MODELS:
        rec, dt = gen_model(name)
        print('== %s (%.1fs): %d parameters in %d tensors, %d running values; other initializers: %s'
              % (name, dt, rec['num_parameters'], len(rec['step']['grads']), rec['num_running'],
                 rec['other_initializers'] or 'none'))
        print('   ONNX ops: %s; %d BatchNormalization nodes' % (' '.join(rec['onnx_ops']), len(rec['bn'])))
        print('   step loss %.6f, eval loss %.6f' % (rec['step']['loss'], rec['eval_loss']))
        for key in OPTIMIZERS:
            ls = rec[key]['losses']
            print('   %-13s loss[0] %.6f  loss[9] %.6f  after %.6f   max |f32 - f64| over the 10 losses %.2g'
                  % (key, ls[0], ls[-1], rec[key]['loss_after_last_step'],
                     rec['float64_check'][key + '_losses_max_abs_diff']))
        c = rec['float64_check']
        print('   float64 check: %d activations, %d kink flips, min |pre - kink| %.2g; step grads max |f32-f64| '
              '%.2g (max |g| %.2g), worst per-tensor rel L2 %.2g; zero-gradient tensors: %s'
              % (c['activations_at_kinks']['count'], c['activations_at_kinks']['kink_flips_f32_vs_f64'],
                 c['activations_at_kinks']['min_distance_to_kink_f64'], c['step_grads_max_abs_diff'],
                 c['step_grads_max_abs'], c['step_grads_worst_rel_l2_per_tensor'],
                 ' '.join(c['step_grads_zero_in_exact_arithmetic']) or 'none'))
    losses = gen_losses()
    print('== losses: ' + ', '.join('%s %.6f' % (k, v['loss']) for k, v in losses.items() if isinstance(v, dict)))
    sched = gen_schedules()
    for k in ('step', 'cosine', 'warmup_cosine'):
        print('== schedule %-13s %s  (max |torch - closed form| %.2g)'
              % (k, ' '.join('%.4g' % v for v in sched[k]['lrs']), sched[k]['max_abs_diff']))
    with open(os.path.join(TRAIN_DIR, 'README.md'), 'w') as f:
        f.write(README)
    total = sum(os.path.getsize(os.path.join(TRAIN_DIR, f)) for f in os.listdir(TRAIN_DIR))
    print('== tests/data/train: %d files, %.1f KiB; %.1fs' % (len(os.listdir(TRAIN_DIR)), total / 1024,
                                                           time.time() - t0))


if __name__ == '__main__':
    main()
