#!/usr/bin/python3
"""Generate the PyTorch reference fixtures under tests/data/.

Run from the repository root with Debian's Python (it has torch 1.13 and onnx 1.12):

    /usr/bin/python3 tools/gen_fixtures.py

For every fixture NAME in tests/data/ops/ (single-op cases) and tests/data/models/
(model families from tools/model_zoo.py) it writes:

    NAME.onnx     the graph (every graph input float32 with a static shape)
    NAME.in.bin   all graph inputs, raw little-endian float32, concatenated in graph-input order
    NAME.out.bin  all graph outputs computed by PyTorch, raw little-endian float32,
                  concatenated in graph-output order

Single-op cases are exported with torch.onnx.export where torch produces the op and
attribute variant under test; the rest are built with onnx.helper (ir_version 8,
explicit opset) and their expected output is computed with equivalent torch code.
Models are exported in eval mode with training=TrainingMode.PRESERVE and
do_constant_folding=False so BatchNormalization nodes stay in the graph.

Everything is seeded (per fixture, from its name), so reruns are byte-identical.
The script deletes and rewrites tests/data/ops and tests/data/models, writes
tests/data/README.md, tests/data/{ops,models}/ops_used.txt, and prints a summary.
"""

import io
import os
import shutil
import sys
import time
import warnings
import zlib

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model_zoo  # noqa: E402

ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, 'tests', 'data')
OPS_DIR = os.path.join(DATA, 'ops')
MODELS_DIR = os.path.join(DATA, 'models')

torch.set_num_threads(1)
warnings.filterwarnings('ignore')

NAME_OK = set('abcdefghijklmnopqrstuvwxyz0123456789_')


def seed_for(name):
    """A stable per-fixture seed, so adding a fixture never changes another one."""
    return zlib.crc32(name.encode()) & 0x7fffffff


def randn(*shape):
    return torch.randn(tuple(shape), dtype=torch.float32)


# ---------------------------------------------------------------------------
# Writing and checking fixtures
# ---------------------------------------------------------------------------

RECORDS = {'ops': [], 'models': []}


def graph_op_types(model):
    """Op types of the main graph, plus any nested subgraphs (If/Loop), sorted."""
    ops = set()

    def walk(g):
        for n in g.node:
            ops.add(n.op_type)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        walk(sg)
    walk(model.graph)
    return sorted(ops)


def real_inputs(model):
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def static_shape(value_info):
    t = value_info.type.tensor_type
    dims = []
    for d in t.shape.dim:
        if not d.HasField('dim_value'):
            return None
        dims.append(d.dim_value)
    return tuple(dims)


def write_fixture(group, name, model, inputs, outputs, expect_ops=(), note='', dynamic_batch=False):
    """Validate `model` against the float32 numpy `inputs`/`outputs` and write the three files.

    With dynamic_batch, dimension 0 of every input may be symbolic; the .bin files then
    hold the batch the inputs have."""
    assert set(name) <= NAME_OK and name[0].isalpha(), name
    onnx.checker.check_model(model)
    onnx.checker.check_model(model, full_check=True)  # also runs strict shape inference
    ins = real_inputs(model)
    assert len(ins) == len(inputs), (name, [i.name for i in ins], len(inputs))
    for vi, arr in zip(ins, inputs):
        assert vi.type.tensor_type.elem_type == TensorProto.FLOAT, (name, vi.name)
        if dynamic_batch:
            dims = vi.type.tensor_type.shape.dim
            assert not dims[0].HasField('dim_value'), (name, vi.name, 'batch should be dynamic')
            assert all(d.HasField('dim_value') for d in dims[1:]), (name, vi.name)
            shp = (arr.shape[0],) + tuple(d.dim_value for d in dims[1:])
        else:
            shp = static_shape(vi)
            assert shp is not None, (name, vi.name, 'dynamic input shape')
        assert shp == tuple(arr.shape), (name, vi.name, shp, arr.shape)
        assert arr.dtype == np.float32
    outs = list(model.graph.output)
    assert len(outs) == len(outputs), (name, len(outs), len(outputs))
    for vi, arr in zip(outs, outputs):
        assert vi.type.tensor_type.elem_type == TensorProto.FLOAT, (name, vi.name)
        shp = static_shape(vi)
        if shp is not None and len(vi.type.tensor_type.shape.dim) > 0 and not dynamic_batch:
            assert shp == tuple(arr.shape), (name, vi.name, shp, arr.shape)
        assert arr.dtype == np.float32
        assert np.all(np.isfinite(arr)), (name, 'non-finite output')
    ops = graph_op_types(model)
    for op in expect_ops:
        assert op in ops, (name, 'expected op %s not in graph %s' % (op, ops))
    d = OPS_DIR if group == 'ops' else MODELS_DIR
    base = os.path.join(d, name)
    with open(base + '.onnx', 'wb') as f:
        f.write(model.SerializeToString())
    with open(base + '.in.bin', 'wb') as f:
        for a in inputs:
            f.write(np.ascontiguousarray(a, dtype='<f4').tobytes())
    with open(base + '.out.bin', 'wb') as f:
        for a in outputs:
            f.write(np.ascontiguousarray(a, dtype='<f4').tobytes())
    opset = max(o.version for o in model.opset_import if o.domain in ('', 'ai.onnx'))
    RECORDS[group].append(dict(name=name, opset=opset, ops=ops, note=note,
                               ins=[tuple(a.shape) for a in inputs], outs=[tuple(a.shape) for a in outputs]))


def to_np(t):
    return t.detach().cpu().contiguous().numpy().astype(np.float32)


def export_torch(module, inputs, opset, dynamic_batch=False):
    """Export `module` (eval mode, BN preserved, no constant folding); return (onnx model, torch outputs)."""
    module.eval()
    with torch.no_grad():
        out = module(*inputs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    in_names = ['input'] if len(inputs) == 1 else ['input%d' % i for i in range(len(inputs))]
    out_names = ['output'] if len(outs) == 1 else ['output%d' % i for i in range(len(outs))]
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module, tuple(inputs), buf, opset_version=opset,
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                          input_names=in_names, output_names=out_names,
                          dynamic_axes={n: {0: 'batch'} for n in in_names + out_names} if dynamic_batch else None)
    model = onnx.load_from_string(buf.getvalue())
    return model, [to_np(o) for o in outs]


class Fn(nn.Module):
    """Wrap a function of the inputs as a module for export."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def op_torch(name, opset, module, input_shapes, expect, note='', make_inputs=None):
    """A single-op fixture exported by torch."""
    torch.manual_seed(seed_for(name))
    if isinstance(module, nn.Module):
        m = module
    else:
        m = Fn(module)
    inputs = make_inputs() if make_inputs else [randn(*s) for s in input_shapes]
    model, outs = export_torch(m, inputs, opset)
    write_fixture('ops', name, model, [to_np(i) for i in inputs], outs, expect, note)


def op_helper(name, opset, nodes, inputs, outputs, initializers=None, note=''):
    """A single-op fixture built with onnx.helper.

    inputs: list of (name, torch tensor) graph inputs (float32).
    outputs: list of (name, torch tensor) expected outputs computed with torch.
    initializers: dict name -> numpy array (any dtype).
    """
    vin = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(t.shape)) for n, t in inputs]
    vout = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(t.shape)) for n, t in outputs]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()]
    graph = helper.make_graph(nodes, name, vin, vout, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)],
                              producer_name='legodnn-gen-fixtures')
    model.ir_version = 8
    expect = sorted({n.op_type for n in nodes})
    write_fixture('ops', name, model, [to_np(t) for _, t in inputs], [to_np(t) for _, t in outputs], expect, note)


def seeded(name):
    torch.manual_seed(seed_for(name))


# ---------------------------------------------------------------------------
# Single-op cases
# ---------------------------------------------------------------------------

def gen_elementwise():
    op_torch('add_scalar_o13', 13, lambda x: x + 2.5, [(2, 3, 4, 5)], ['Add'])
    op_torch('add_same_o11', 11, lambda x, y: x + y, [(2, 3, 4), (2, 3, 4)], ['Add'])
    op_torch('add_channel_o11', 11, lambda x, b: x + b, [(1, 4, 5, 6), (4, 1, 1)], ['Add'])
    op_torch('add_rank0_o17', 17, lambda x, y: x + y, [(2, 3), ()], ['Add'])
    op_torch('sub_row_o13', 13, lambda x, y: x - y, [(2, 3, 4, 5), (5,)], ['Sub'])
    op_torch('sub_rsub_o11', 11, lambda x: 1.0 - x, [(3, 4)], ['Sub'])
    op_torch('sub_col_lhs_o17', 17, lambda x, y: y - x, [(2, 3, 4), (3, 1)], ['Sub'])
    op_torch('mul_both_bcast_o17', 17, lambda x, y: x * y, [(2, 1, 5), (1, 4, 1)], ['Mul'])
    op_torch('mul_channel_o13', 13, lambda x, w: x * w, [(1, 4, 5, 6), (1, 4, 1, 1)], ['Mul'])
    op_torch('mul_scalar_o11', 11, lambda x: x * -0.75, [(2, 3, 4)], ['Mul'])

    def div_inputs():
        return [randn(3, 4, 5), torch.rand(4, 1) + 0.5]
    op_torch('div_bcast_o11', 11, lambda x, y: x / y, None, ['Div'], make_inputs=div_inputs)
    op_torch('div_scalar_o13', 13, lambda x: x / 4.0, [(2, 3, 4)], ['Div'])

    def div_lhs_inputs():
        return [torch.rand(2, 1, 4) + 0.5, randn(3, 1)]
    op_torch('div_both_bcast_o17', 17, lambda x, y: y / x, None, ['Div'], make_inputs=div_lhs_inputs)


def avgpool_ref(x, k, s, pads, ceil_mode=False, count_include_pad=True):
    """AveragePool reference for arbitrary (asymmetric) ONNX pads [hb, wb, he, we]."""
    hb, wb, he, we = pads
    if hb == he and wb == we:
        return F.avg_pool2d(x, k, s, (hb, wb), ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    assert not ceil_mode
    xp = F.pad(x, (wb, we, hb, he))
    total = F.avg_pool2d(xp, k, s) * (k[0] * k[1])
    if count_include_pad:
        return total / (k[0] * k[1])
    ones = F.pad(torch.ones_like(x[:1, :1]), (wb, we, hb, he))
    cnt = F.avg_pool2d(ones, k, s) * (k[0] * k[1])
    return total / cnt


def gen_pooling():
    op_torch('averagepool_k2s2_o11', 11, lambda x: F.avg_pool2d(x, 2), [(1, 3, 8, 8)], ['AveragePool'],
             note='torch emits Pad(0) + AveragePool for count_include_pad=True')
    op_torch('averagepool_pad_exclude_o13', 13,
             lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), [(1, 3, 9, 9)], ['AveragePool'])
    op_torch('averagepool_ceil_o17', 17,
             lambda x: F.avg_pool2d(x, 3, 2, 0, ceil_mode=True, count_include_pad=False), [(1, 2, 8, 8)],
             ['AveragePool'])
    op_torch('averagepool_k3s1p1_o13', 13, lambda x: F.avg_pool2d(x, 3, 1, 1), [(1, 3, 6, 6)], ['AveragePool', 'Pad'],
             note='inception branch_pool: torch emits Pad + AveragePool')
    # count_include_pad=1 with a pads attribute (torch never emits this itself).
    name = 'averagepool_pad_include_o11'
    seeded(name)
    x = randn(1, 3, 8, 8)
    y = F.avg_pool2d(x, 3, 2, 1, count_include_pad=True)
    op_helper(name, 11, [helper.make_node('AveragePool', ['x'], ['y'], kernel_shape=[3, 3], strides=[2, 2],
                                          pads=[1, 1, 1, 1], count_include_pad=1)],
              [('x', x)], [('y', y)])
    name = 'averagepool_asym_pads_o13'
    seeded(name)
    x = randn(1, 2, 7, 6)
    y = avgpool_ref(x, (3, 2), (2, 2), (0, 1, 2, 1), count_include_pad=False)
    op_helper(name, 13, [helper.make_node('AveragePool', ['x'], ['y'], kernel_shape=[3, 2], strides=[2, 2],
                                          pads=[0, 1, 2, 1])],
              [('x', x)], [('y', y)])
    name = 'averagepool_asym_include_o17'
    seeded(name)
    x = randn(1, 2, 7, 6)
    y = avgpool_ref(x, (3, 2), (2, 2), (0, 1, 2, 1), count_include_pad=True)
    op_helper(name, 17, [helper.make_node('AveragePool', ['x'], ['y'], kernel_shape=[3, 2], strides=[2, 2],
                                          pads=[0, 1, 2, 1], count_include_pad=1)],
              [('x', x)], [('y', y)])
    name = 'averagepool_ceil_pad_include_o17'
    seeded(name)
    x = randn(1, 2, 8, 8)
    y = F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=True)
    op_helper(name, 17, [helper.make_node('AveragePool', ['x'], ['y'], kernel_shape=[3, 3], strides=[2, 2],
                                          pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1)],
              [('x', x)], [('y', y)],
              note='torch divisor: the last (ceil) window counts pad cells but not cells past the pad')

    op_torch('maxpool_k2s2_o11', 11, lambda x: F.max_pool2d(x, 2), [(1, 3, 8, 8)], ['MaxPool'])
    op_torch('maxpool_k3s2p1_o13', 13, lambda x: F.max_pool2d(x, 3, 2, 1), [(1, 3, 9, 9)], ['MaxPool'])
    op_torch('maxpool_ceil_o17', 17, lambda x: F.max_pool2d(x, 3, 2, 0, ceil_mode=True), [(1, 2, 8, 8)],
             ['MaxPool'])
    op_torch('maxpool_ceil_pad_o13', 13, lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True), [(1, 2, 8, 8)],
             ['MaxPool'])
    op_torch('maxpool_dilation_o11', 11, lambda x: F.max_pool2d(x, 3, 1, 1, dilation=2), [(1, 2, 7, 7)],
             ['MaxPool'])
    op_torch('maxpool_rect_o13', 13, lambda x: F.max_pool2d(x, (2, 3), (1, 2), (1, 1)), [(1, 2, 6, 7)],
             ['MaxPool'])
    op_torch('maxpool_global_o17', 17, lambda x: F.max_pool2d(x, (x.size(2), x.size(3))), [(1, 4, 5, 6)],
             ['MaxPool'], note='CBAM ChannelGate style: kernel = spatial size')
    name = 'maxpool_asym_pads_o11'
    seeded(name)
    x = randn(1, 2, 7, 6)
    y = F.max_pool2d(F.pad(x, (1, 0, 0, 1), value=float('-inf')), 2, 2)
    op_helper(name, 11, [helper.make_node('MaxPool', ['x'], ['y'], kernel_shape=[2, 2], strides=[2, 2],
                                          pads=[0, 1, 1, 0])],
              [('x', x)], [('y', y)])

    op_torch('globalaveragepool_o11', 11, lambda x: F.adaptive_avg_pool2d(x, 1), [(1, 4, 5, 7)],
             ['GlobalAveragePool'])
    op_torch('globalaveragepool_o17', 17, nn.AdaptiveAvgPool2d((1, 1)), [(2, 3, 4, 4)], ['GlobalAveragePool'])
    name = 'globalmaxpool_o13'
    seeded(name)
    x = randn(2, 3, 5, 4)
    op_helper(name, 13, [helper.make_node('GlobalMaxPool', ['x'], ['y'])],
              [('x', x)], [('y', x.amax(dim=(2, 3), keepdim=True))])


def random_bn(bn):
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0, 0.3)
        bn.running_mean.normal_(0, 0.5)
        bn.running_var.uniform_(0.3, 2.0)
    return bn


def gen_batchnorm():
    seeded('batchnorm_o11')
    op_torch('batchnorm_o11', 11, random_bn(nn.BatchNorm2d(4)), [(2, 4, 5, 6)], ['BatchNormalization'])
    seeded('batchnorm_o15')
    op_torch('batchnorm_o15', 15, random_bn(nn.BatchNorm2d(4)), [(1, 4, 5, 5)], ['BatchNormalization'],
             note='opset 14+: training_mode=0 attribute')
    seeded('batchnorm_1d_o13')
    op_torch('batchnorm_1d_o13', 13, random_bn(nn.BatchNorm1d(6)), [(4, 6)], ['BatchNormalization'])
    seeded('batchnorm_eps_o17')
    op_torch('batchnorm_eps_o17', 17, random_bn(nn.BatchNorm2d(3, eps=1e-3)), [(1, 3, 4, 4)],
             ['BatchNormalization'])


def gen_concat_constant():
    op_torch('concat_axis1_o11', 11, lambda a, b, c: torch.cat([a, b, c], 1),
             [(1, 2, 3, 3), (1, 3, 3, 3), (1, 1, 3, 3)], ['Concat'])
    op_torch('concat_axis0_o13', 13, lambda a, b: torch.cat([a, b], 0), [(2, 3, 4), (1, 3, 4)], ['Concat'])
    name = 'concat_neg_o17'
    seeded(name)
    a, b = randn(2, 3, 2), randn(2, 3, 4)
    op_helper(name, 17, [helper.make_node('Concat', ['a', 'b'], ['y'], axis=-1)],
              [('a', a), ('b', b)], [('y', torch.cat([a, b], -1))])
    name = 'concat_neg2_o11'
    seeded(name)
    a, b = randn(2, 1, 3), randn(2, 2, 3)
    op_helper(name, 11, [helper.make_node('Concat', ['a', 'b'], ['y'], axis=-2)],
              [('a', a), ('b', b)], [('y', torch.cat([a, b], -2))])

    c = torch.tensor([[0.5, -1.0, 2.0, 0.25]])
    op_torch('constant_tensor_o11', 11, lambda x: x + torch.tensor([[0.5, -1.0, 2.0, 0.25]]), [(3, 4)],
             ['Constant', 'Add'])
    name = 'constant_value_float_o13'
    seeded(name)
    x = randn(2, 3)
    op_helper(name, 13, [helper.make_node('Constant', [], ['c'], value_float=1.5),
                         helper.make_node('Mul', ['x', 'c'], ['y'])],
              [('x', x)], [('y', x * 1.5)])
    name = 'constant_value_floats_o17'
    seeded(name)
    x = randn(2, 4)
    op_helper(name, 17, [helper.make_node('Constant', [], ['c'], value_floats=[0.5, -1.0, 2.0, 0.25]),
                         helper.make_node('Add', ['x', 'c'], ['y'])],
              [('x', x)], [('y', x + c[0])])
    name = 'constant_output_o13'
    seeded(name)
    x = randn(2, 2)
    cval = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    op_helper(name, 13, [helper.make_node('Constant', [], ['c'], value=numpy_helper.from_array(cval, 'c')),
                         helper.make_node('Relu', ['x'], ['y'])],
              [('x', x)], [('y', F.relu(x)), ('c', torch.from_numpy(cval))],
              note='a graph output produced by a Constant node')


def gen_conv():
    def conv(name, opset, make, shape, note=''):
        seeded(name)
        op_torch(name, opset, make(), [shape], ['Conv'], note=note)
    conv('conv_3x3_o11', 11, lambda: nn.Conv2d(3, 4, 3, padding=1), (1, 3, 8, 8))
    conv('conv_nobias_s2_o13', 13, lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), (1, 4, 9, 9))
    conv('conv_groups_o17', 17, lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2), (1, 4, 6, 6))
    conv('conv_depthwise_o11', 11, lambda: nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6, bias=False), (1, 6, 8, 8))
    conv('conv_depthwise_mult_o13', 13, lambda: nn.Conv2d(4, 8, 3, groups=4), (1, 4, 6, 6))
    conv('conv_dilation_o13', 13, lambda: nn.Conv2d(4, 4, 3, padding=2, dilation=2), (1, 4, 8, 8))
    conv('conv_dilation_s2_o17', 17, lambda: nn.Conv2d(3, 4, 3, stride=2, padding=3, dilation=3), (1, 3, 9, 9))
    conv('conv_1x1_o17', 17, lambda: nn.Conv2d(5, 3, 1), (2, 5, 4, 4))
    conv('conv_rect_o11', 11, lambda: nn.Conv2d(3, 4, (1, 7), stride=(2, 1), padding=(0, 3)), (1, 3, 6, 9))
    conv('conv_7x7_s2_o13', 13, lambda: nn.Conv2d(3, 4, 7, stride=2, padding=3, bias=False), (1, 3, 12, 12))
    conv('conv_nopad_o11', 11, lambda: nn.Conv2d(3, 2, (3, 2)), (2, 3, 5, 6))

    name = 'conv_asym_pads_o13'
    seeded(name)
    x, w, b = randn(1, 3, 6, 7), randn(4, 3, 3, 3) * 0.3, randn(4)
    y = F.conv2d(F.pad(x, (1, 1, 0, 2)), w, b)
    op_helper(name, 13, [helper.make_node('Conv', ['x', 'w', 'b'], ['y'], kernel_shape=[3, 3], pads=[0, 1, 2, 1])],
              [('x', x)], [('y', y)], {'w': to_np(w), 'b': to_np(b)})
    name = 'conv_same_upper_o11'
    seeded(name)
    x, w, b = randn(1, 3, 7, 8), randn(4, 3, 3, 3) * 0.3, randn(4)
    # out = ceil(in/stride); total pad H = (4-1)*2+3-7 = 2 -> (1,1); W = (4-1)*2+3-8 = 1 -> (0,1) upper
    y = F.conv2d(F.pad(x, (0, 1, 1, 1)), w, b, stride=2)
    op_helper(name, 11, [helper.make_node('Conv', ['x', 'w', 'b'], ['y'], kernel_shape=[3, 3], strides=[2, 2],
                                          auto_pad='SAME_UPPER')],
              [('x', x)], [('y', y)], {'w': to_np(w), 'b': to_np(b)})
    name = 'conv_same_lower_o13'
    seeded(name)
    x, w = randn(1, 3, 7, 8), randn(4, 3, 3, 3) * 0.3
    y = F.conv2d(F.pad(x, (1, 0, 1, 1)), w, None, stride=2)
    op_helper(name, 13, [helper.make_node('Conv', ['x', 'w'], ['y'], kernel_shape=[3, 3], strides=[2, 2],
                                          auto_pad='SAME_LOWER')],
              [('x', x)], [('y', y)], {'w': to_np(w)})
    name = 'conv_noattr_o17'
    seeded(name)
    x, w = randn(1, 2, 5, 5), randn(3, 2, 3, 3) * 0.3
    op_helper(name, 17, [helper.make_node('Conv', ['x', 'w'], ['y'])],
              [('x', x)], [('y', F.conv2d(x, w))], {'w': to_np(w)},
              note='no kernel_shape/strides/pads attributes: all inferred/defaulted')


def gen_convtranspose():
    def ct(name, opset, make, shape):
        seeded(name)
        op_torch(name, opset, make(), [shape], ['ConvTranspose'])
    ct('convtranspose_s2_o11', 11, lambda: nn.ConvTranspose2d(4, 3, 4, 2, 1), (1, 4, 5, 5))
    ct('convtranspose_outpad_o13', 13, lambda: nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1),
       (1, 4, 5, 5))
    ct('convtranspose_groups_o17', 17, lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2), (1, 4, 4, 4))
    ct('convtranspose_dilation_o13', 13, lambda: nn.ConvTranspose2d(3, 2, 3, stride=1, padding=2, dilation=2),
       (1, 3, 5, 5))
    ct('convtranspose_1x1in_o11', 11, lambda: nn.ConvTranspose2d(8, 4, 4, 1, 0, bias=False), (2, 8, 1, 1))
    ct('convtranspose_rect_o17', 17,
       lambda: nn.ConvTranspose2d(3, 2, (3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2)), (1, 3, 4, 3))
    ct('convtranspose_dil_s2_o11', 11,
       lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, dilation=2, output_padding=1, bias=False), (1, 2, 4, 4))


def gen_shape_ops():
    op_torch('expand_o13', 13, lambda x: x.expand(2, 3, 4), [(3, 1)], ['Expand'])
    op_torch('expand_as_o11', 11, lambda x, y: x.expand_as(y) + y, [(1, 4, 1, 1), (2, 4, 3, 3)], ['Expand'])
    name = 'expand_bidir_o17'
    seeded(name)
    x = randn(3, 1)
    op_helper(name, 17, [helper.make_node('Expand', ['x', 's'], ['y'])],
              [('x', x)], [('y', x * torch.ones(2, 1, 4))], {'s': np.array([2, 1, 4], np.int64)},
              note='shape [2,1,4] with input [3,1] broadcasts both ways -> [2,3,4]')
    name = 'expand_lower_rank_o13'
    seeded(name)
    x = randn(2, 1, 3)
    op_helper(name, 13, [helper.make_node('Expand', ['x', 's'], ['y'])],
              [('x', x)], [('y', x.expand(2, 4, 3))], {'s': np.array([4, 1], np.int64)},
              note='shape of lower rank than the input')

    op_torch('flatten_axis1_o11', 11, lambda x: torch.flatten(x, 1), [(2, 3, 4, 2)], ['Flatten'])
    for name, opset, axis, newshape in [('flatten_axis0_o13', 13, 0, (1, -1)), ('flatten_axis2_o17', 17, 2, (6, -1)),
                                        ('flatten_neg_o11', 11, -1, (24, -1))]:
        seeded(name)
        x = randn(2, 3, 4, 2)
        op_helper(name, opset, [helper.make_node('Flatten', ['x'], ['y'], axis=axis)],
                  [('x', x)], [('y', x.reshape(*newshape))])

    op_torch('gather_axis0_vec_o11', 11, lambda x: torch.index_select(x, 0, torch.tensor([2, 0, 1, 2])),
             [(3, 4, 2)], ['Gather'])
    op_torch('gather_axis1_scalar_o13', 13, lambda x: x[:, 2], [(2, 4, 3)], ['Gather'])
    op_torch('gather_neg_scalar_o17', 17, lambda x: x[:, -1], [(2, 4, 3)], ['Gather'])
    name = 'gather_neg_o17'
    seeded(name)
    x = randn(2, 5, 3)
    idx = np.array([-1, 0, -3], np.int64)
    op_helper(name, 17, [helper.make_node('Gather', ['x', 'i'], ['y'], axis=1)],
              [('x', x)], [('y', x[:, [4, 0, 2]])], {'i': idx})
    name = 'gather_2d_idx_o11'
    seeded(name)
    x = randn(3, 4)
    idx = np.array([[0, 2], [1, 1]], np.int64)
    op_helper(name, 11, [helper.make_node('Gather', ['x', 'i'], ['y'], axis=0)],
              [('x', x)], [('y', x[torch.from_numpy(idx)])], {'i': idx})
    name = 'gather_int32_last_o13'
    seeded(name)
    x = randn(2, 3, 5)
    idx = np.array([4, -5, 1], np.int32)
    op_helper(name, 13, [helper.make_node('Gather', ['x', 'i'], ['y'], axis=-1)],
              [('x', x)], [('y', x[:, :, [4, 0, 1]])], {'i': idx}, note='int32 indices, axis=-1')

    op_torch('reshape_neg1_o13', 13, lambda x: x.view(2, -1), [(2, 3, 4)], ['Reshape'])
    op_torch('reshape_view_size_o11', 11, lambda x: x.view(x.size(0), -1), [(2, 3, 2, 2)], ['Reshape'],
             note='view(x.size(0), -1) as exported for static shapes')
    name = 'reshape_zero_o11'
    seeded(name)
    x = randn(2, 3, 4)
    op_helper(name, 11, [helper.make_node('Reshape', ['x', 's'], ['y'])],
              [('x', x)], [('y', x.reshape(2, 6, 2))], {'s': np.array([0, -1, 2], np.int64)})
    name = 'reshape_zero_neg_o17'
    seeded(name)
    x = randn(2, 3, 4, 5)
    op_helper(name, 17, [helper.make_node('Reshape', ['x', 's'], ['y'])],
              [('x', x)], [('y', x.reshape(2, 3, 20))], {'s': np.array([0, 0, -1], np.int64)})

    name = 'shape_o13'
    seeded(name)
    x = randn(2, 3, 4)
    op_helper(name, 13, [helper.make_node('Shape', ['x'], ['s']),
                         helper.make_node('Cast', ['s'], ['y'], to=TensorProto.FLOAT)],
              [('x', x)], [('y', torch.tensor([2.0, 3.0, 4.0]))])
    name = 'shape_start_end_o15'
    seeded(name)
    x = randn(2, 3, 4, 5)
    op_helper(name, 15, [helper.make_node('Shape', ['x'], ['s'], start=1, end=-1),
                         helper.make_node('Cast', ['s'], ['y'], to=TensorProto.FLOAT)],
              [('x', x)], [('y', torch.tensor([3.0, 4.0]))])
    name = 'shape_reshape_o11'
    seeded(name)
    x = randn(2, 3, 4)
    # view(x.size(0), -1) written out the way a dynamic-shape export spells it
    nodes = [helper.make_node('Shape', ['x'], ['s']),
             helper.make_node('Gather', ['s', 'zero'], ['n'], axis=0),
             helper.make_node('Unsqueeze', ['n'], ['nu'], axes=[0]),
             helper.make_node('Concat', ['nu', 'minus1'], ['shp'], axis=0),
             helper.make_node('Reshape', ['x', 'shp'], ['y'])]
    op_helper(name, 11, nodes, [('x', x)], [('y', x.reshape(2, -1))],
              {'zero': np.array(0, np.int64), 'minus1': np.array([-1], np.int64)})

    op_torch('slice_steps_o13', 13, lambda x: x[:, ::2, 1:7:3], [(2, 5, 8)], ['Slice'])
    op_torch('slice_neg_o11', 11, lambda x: x[:, -3:, :-1], [(2, 5, 4)], ['Slice'])
    name = 'slice_axes_subset_o17'
    seeded(name)
    x = randn(2, 4, 3, 6)
    op_helper(name, 17, [helper.make_node('Slice', ['x', 'st', 'en', 'ax'], ['y'])],
              [('x', x)], [('y', x[:, 0:2, :, 1:])],
              {'st': np.array([1, 0], np.int64), 'en': np.array([100, 2], np.int64), 'ax': np.array([3, 1], np.int64)},
              note='axes [3,1] out of order, end clamped')
    name = 'slice_negstep_o13'
    seeded(name)
    x = randn(2, 3, 7)
    op_helper(name, 13, [helper.make_node('Slice', ['x', 'st', 'en', 'ax', 'sp'], ['y'])],
              [('x', x)], [('y', torch.flip(x, [2])[:, :, ::2])],
              {'st': np.array([-1], np.int64), 'en': np.array([-9223372036854775807], np.int64),
               'ax': np.array([-1], np.int64), 'sp': np.array([-2], np.int64)})
    name = 'slice_noaxes_o11'
    seeded(name)
    x = randn(4, 5)
    op_helper(name, 11, [helper.make_node('Slice', ['x', 'st', 'en'], ['y'])],
              [('x', x)], [('y', x[1:3, -4:-1])],
              {'st': np.array([1, -4], np.int64), 'en': np.array([3, -1], np.int64)})

    op_torch('squeeze_o11', 11, lambda x: x.squeeze(1), [(2, 1, 3, 1)], ['Squeeze'])
    op_torch('squeeze_o13', 13, lambda x: x.squeeze(3), [(2, 1, 3, 1)], ['Squeeze'])
    name = 'squeeze_all_o13'
    seeded(name)
    x = randn(1, 3, 1, 2)
    op_helper(name, 13, [helper.make_node('Squeeze', ['x'], ['y'])], [('x', x)], [('y', x.reshape(3, 2))])
    name = 'squeeze_neg_o11'
    seeded(name)
    x = randn(2, 1, 3, 1)
    op_helper(name, 11, [helper.make_node('Squeeze', ['x'], ['y'], axes=[-1, 1])], [('x', x)],
              [('y', x.reshape(2, 3))])
    op_torch('unsqueeze_o11', 11, lambda x: x.unsqueeze(2), [(2, 3, 4)], ['Unsqueeze'])
    op_torch('unsqueeze_o13', 13, lambda x: x.unsqueeze(-1), [(2, 3)], ['Unsqueeze'])
    name = 'unsqueeze_multi_o13'
    seeded(name)
    x = randn(3, 4)
    op_helper(name, 13, [helper.make_node('Unsqueeze', ['x', 'a'], ['y'])], [('x', x)],
              [('y', x.reshape(1, 3, 4, 1))], {'a': np.array([0, 3], np.int64)})
    name = 'unsqueeze_neg_o11'
    seeded(name)
    x = randn(3, 4)
    op_helper(name, 11, [helper.make_node('Unsqueeze', ['x'], ['y'], axes=[1, -1])], [('x', x)],
              [('y', x.reshape(3, 1, 4, 1))])

    op_torch('transpose_nhwc_o11', 11, lambda x: x.permute(0, 2, 3, 1), [(1, 3, 4, 5)], ['Transpose'])
    op_torch('transpose_2d_o13', 13, lambda x: x.t(), [(3, 5)], ['Transpose'])
    op_torch('transpose_12_o17', 17, lambda x: x.transpose(1, 2), [(2, 3, 4)], ['Transpose'])
    name = 'transpose_default_o13'
    seeded(name)
    x = randn(2, 3, 4)
    op_helper(name, 13, [helper.make_node('Transpose', ['x'], ['y'])], [('x', x)], [('y', x.permute(2, 1, 0))],
              note='no perm attribute: reverse the dimensions')


def gen_linear_algebra():
    seeded('gemm_linear_o11')
    op_torch('gemm_linear_o11', 11, nn.Linear(6, 4), [(3, 6)], ['Gemm'])

    class AddMM(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer('b', randn(4))
            self.register_buffer('w', randn(6, 4))

        def forward(self, x):
            return torch.addmm(self.b, x, self.w, beta=0.5, alpha=2.0)
    seeded('gemm_alpha_beta_o13')
    op_torch('gemm_alpha_beta_o13', 13, AddMM(), [(3, 6)], ['Gemm'])
    name = 'gemm_transa_o17'
    seeded(name)
    a, b, c = randn(6, 3), randn(4, 6), randn(1, 4)
    op_helper(name, 17, [helper.make_node('Gemm', ['a', 'b', 'c'], ['y'], transA=1, transB=1, alpha=0.7, beta=1.3)],
              [('a', a)], [('y', 0.7 * a.t() @ b.t() + 1.3 * c)], {'b': to_np(b), 'c': to_np(c)})
    name = 'gemm_noc_o13'
    seeded(name)
    a, b = randn(3, 5), randn(5, 2)
    op_helper(name, 13, [helper.make_node('Gemm', ['a', 'b'], ['y'])], [('a', a), ('b', b)], [('y', a @ b)])
    name = 'gemm_c_col_o11'
    seeded(name)
    a, b, c = randn(3, 5), randn(5, 2), randn(3, 1)
    op_helper(name, 11, [helper.make_node('Gemm', ['a', 'b', 'c'], ['y'], beta=0.5)],
              [('a', a), ('b', b), ('c', c)], [('y', a @ b + 0.5 * c)])
    name = 'gemm_c_scalar_o13'
    seeded(name)
    a, b = randn(3, 5), randn(2, 5)
    c = np.array([0.75], np.float32)
    op_helper(name, 13, [helper.make_node('Gemm', ['a', 'b', 'c'], ['y'], transB=1)],
              [('a', a)], [('y', a @ b.t() + 0.75)], {'b': to_np(b), 'c': c})

    op_torch('matmul_2d_o11', 11, lambda a, b: a @ b, [(3, 5), (5, 4)], ['MatMul'])
    op_torch('matmul_3d_o13', 13, lambda a, b: torch.matmul(a, b), [(2, 3, 5), (2, 5, 4)], ['MatMul'])
    op_torch('matmul_4d_2d_o17', 17, lambda a, b: torch.matmul(a, b), [(2, 2, 3, 5), (5, 4)], ['MatMul'])
    op_torch('matmul_bcast_batch_o13', 13, lambda a, b: torch.matmul(a, b), [(2, 1, 3, 5), (3, 5, 4)], ['MatMul'])


def gen_activations():
    op_torch('identity_o13', 13, lambda x: x.clone(), [(2, 3)], ['Identity'])
    name = 'identity_o11'
    seeded(name)
    x = randn(3, 4)
    op_helper(name, 11, [helper.make_node('Identity', ['x'], ['y'])], [('x', x)], [('y', x)])
    op_torch('dropout_eval_o13', 13, nn.Dropout(0.5), [(2, 3)], ['Identity'],
             note='torch exports eval-mode Dropout as Identity')
    name = 'dropout_o11'
    seeded(name)
    x = randn(2, 3, 4)
    op_helper(name, 11, [helper.make_node('Dropout', ['x'], ['y'], ratio=0.3)], [('x', x)], [('y', x)],
              note='Dropout-10: ratio attribute, inference = identity')
    name = 'dropout_o13'
    seeded(name)
    x = randn(2, 3, 4)
    op_helper(name, 13, [helper.make_node('Dropout', ['x', 'r'], ['y'])], [('x', x)], [('y', x)],
              {'r': np.array(0.5, np.float32)}, note='Dropout-12/13: ratio input, no training_mode -> identity')
    name = 'dropout_train_false_o17'
    seeded(name)
    x = randn(2, 3, 4)
    op_helper(name, 17, [helper.make_node('Dropout', ['x', 'r', 't'], ['y'])], [('x', x)], [('y', x)],
              {'r': np.array(0.5, np.float32), 't': np.array(False)}, note='training_mode=false input')

    op_torch('relu_o11', 11, F.relu, [(2, 3, 4)], ['Relu'])
    op_torch('relu_o17', 17, nn.ReLU(), [(3, 5)], ['Relu'])
    op_torch('leakyrelu_o11', 11, F.leaky_relu, [(2, 3, 4)], ['LeakyRelu'], note='default alpha 0.01')
    op_torch('leakyrelu_a01_o13', 13, nn.LeakyReLU(0.1), [(2, 3, 4)], ['LeakyRelu'])
    op_torch('leakyrelu_a02_o17', 17, nn.LeakyReLU(0.2), [(2, 3, 4)], ['LeakyRelu'])
    op_torch('clip_relu6_o11', 11, lambda x: F.relu6(x * 4), [(2, 3, 4)], ['Clip'])
    op_torch('clip_relu6_o13', 13, nn.ReLU6(), [(2, 3, 4)], ['Clip'],
             make_inputs=lambda: [randn(2, 3, 4) * 4])
    op_torch('clip_min_o13', 13, lambda x: torch.clamp(x, min=0.5), [(2, 3, 4)], ['Clip'])
    op_torch('clip_minmax_o17', 17, lambda x: torch.clamp(x, -0.5, 0.25), [(2, 3, 4)], ['Clip'])
    name = 'clip_max_only_o13'
    seeded(name)
    x = randn(2, 3, 4)
    op_helper(name, 13, [helper.make_node('Clip', ['x', '', 'mx'], ['y'])], [('x', x)],
              [('y', torch.clamp(x, max=0.3))], {'mx': np.array(0.3, np.float32)},
              note='min omitted with an empty input name')
    name = 'clip_none_o11'
    seeded(name)
    x = randn(2, 3)
    op_helper(name, 11, [helper.make_node('Clip', ['x'], ['y'])], [('x', x)], [('y', x)],
              note='no min/max: identity')
    op_torch('sigmoid_o13', 13, torch.sigmoid, [(2, 3, 4)], ['Sigmoid'],
             make_inputs=lambda: [randn(2, 3, 4) * 4])
    op_torch('sigmoid_o11', 11, nn.Sigmoid(), [(3, 4)], ['Sigmoid'])
    op_torch('tanh_o11', 11, torch.tanh, [(2, 3, 4)], ['Tanh'], make_inputs=lambda: [randn(2, 3, 4) * 2])
    op_torch('tanh_o17', 17, nn.Tanh(), [(3, 4)], ['Tanh'])

    op_torch('softmax_last_o11', 11, lambda x: F.softmax(x, -1), [(2, 3, 5)], ['Softmax'])
    op_torch('softmax_last_o13', 13, lambda x: F.softmax(x, -1), [(2, 3, 5)], ['Softmax'])
    op_torch('softmax_axis1_2d_o11', 11, lambda x: F.softmax(x, 1), [(3, 6)], ['Softmax'])
    op_torch('softmax_axis1_o13', 13, lambda x: F.softmax(x, 1), [(2, 4, 3, 3)], ['Softmax'])
    op_torch('softmax_dim1_torch_o11', 11, lambda x: F.softmax(x, 1), [(2, 4, 3, 3)], ['Softmax', 'Transpose'],
             note='torch emits Transpose-Softmax(last)-Transpose at opset < 13')
    name = 'softmax_axis1_o11'
    seeded(name)
    x = randn(2, 3, 2, 2)
    y = F.softmax(x.reshape(2, -1), 1).reshape(2, 3, 2, 2)
    op_helper(name, 11, [helper.make_node('Softmax', ['x'], ['y'], axis=1)], [('x', x)], [('y', y)],
              note='opset < 13 semantics: coerce to 2D at axis, softmax over all trailing dims')
    name = 'softmax_default_o11'
    seeded(name)
    x = randn(2, 3, 4)
    y = F.softmax(x.reshape(2, -1), 1).reshape(2, 3, 4)
    op_helper(name, 11, [helper.make_node('Softmax', ['x'], ['y'])], [('x', x)], [('y', y)],
              note='opset < 13 default axis=1 (flattened)')
    name = 'softmax_default_o13'
    seeded(name)
    x = randn(2, 3, 4)
    op_helper(name, 13, [helper.make_node('Softmax', ['x'], ['y'])], [('x', x)], [('y', F.softmax(x, -1))],
              note='opset 13 default axis=-1')
    name = 'softmax_axis0_o13'
    seeded(name)
    x = randn(3, 2, 4)
    op_helper(name, 13, [helper.make_node('Softmax', ['x'], ['y'], axis=0)], [('x', x)], [('y', F.softmax(x, 0))])


def gen_pad():
    op_torch('pad_constant_torch_o11', 11, lambda x: F.pad(x, (1, 2, 0, 1), value=0.5), [(1, 2, 3, 4)], ['Pad'],
             note='torch builds the pads tensor with Shape/ConstantOfShape/Concat/Slice/Transpose/Reshape/Cast')
    op_torch('pad_reflect_torch_o13', 13, lambda x: F.pad(x, (2, 1, 1, 2), mode='reflect'), [(1, 2, 4, 5)],
             ['Pad'])
    op_torch('pad_edge_torch_o17', 17, lambda x: F.pad(x, (1, 2, 2, 0), mode='replicate'), [(1, 2, 3, 4)],
             ['Pad'])
    cases = [
        ('pad_constant_o11', 11, 'constant', (1, 2, 0, 1), 0.5),
        ('pad_constant_nodefault_o13', 13, 'constant', (2, 0, 1, 1), None),
        ('pad_reflect_o13', 13, 'reflect', (2, 1, 1, 2), None),
        ('pad_edge_o17', 17, 'edge', (1, 2, 2, 0), None),
        ('pad_edge_o11', 11, 'edge', (0, 3, 1, 1), None),
    ]
    for name, opset, mode, p, value in cases:
        seeded(name)
        x = randn(1, 2, 3, 4)
        # torch pad order (w_begin, w_end, h_begin, h_end); ONNX [x1_b, x2_b, x3_b, x4_b, x1_e, ...]
        onnx_pads = np.array([0, 0, p[2], p[0], 0, 0, p[3], p[1]], np.int64)
        tmode = {'constant': 'constant', 'reflect': 'reflect', 'edge': 'replicate'}[mode]
        if mode == 'constant':
            y = F.pad(x, p, value=value or 0.0)
        else:
            y = F.pad(x, p, mode=tmode)
        ins = ['x', 'p'] + (['v'] if value is not None else [])
        inits = {'p': onnx_pads}
        if value is not None:
            inits['v'] = np.array(value, np.float32)
        op_helper(name, opset, [helper.make_node('Pad', ins, ['y'], mode=mode)], [('x', x)], [('y', y)], inits)
    name = 'pad_3d_o13'
    seeded(name)
    x = randn(2, 3, 4)
    y = F.pad(x, (1, 0, 0, 2, 1, 0), value=-1.0)
    op_helper(name, 13, [helper.make_node('Pad', ['x', 'p', 'v'], ['y'])], [('x', x)], [('y', y)],
              {'p': np.array([1, 0, 1, 0, 2, 0], np.int64), 'v': np.array(-1.0, np.float32)},
              note='pads on the batch axis too; default mode')


def gen_reduce():
    op_torch('reducemean_hw_keep_o11', 11, lambda x: x.mean((2, 3), keepdim=True), [(2, 3, 4, 5)], ['ReduceMean'])
    op_torch('reducemean_c_o13', 13, lambda x: x.mean(1), [(2, 3, 4, 5)], ['ReduceMean'])
    op_torch('reducemean_neg_o17', 17, lambda x: torch.mean(x, -1, keepdim=True), [(2, 3, 4)], ['ReduceMean'])
    op_torch('reducemean_all_o13', 13, lambda x: x.mean(), [(2, 3, 4)], ['ReduceMean'],
             note='all axes, keepdims=0: rank-0 output')
    op_torch('reducemax_c_o11', 11, lambda x: torch.max(x, 1)[0], [(2, 3, 4, 5)], ['ReduceMax'])
    op_torch('reducemax_hw_keep_o13', 13, lambda x: torch.amax(x, (2, 3), keepdim=True), [(2, 3, 4, 5)],
             ['ReduceMax'])
    op_torch('reducemax_all_o17', 17, lambda x: x.max(), [(2, 3, 4)], ['ReduceMax'])
    name = 'reducemean_all_keep_o11'
    seeded(name)
    x = randn(2, 3, 4)
    op_helper(name, 11, [helper.make_node('ReduceMean', ['x'], ['y'])], [('x', x)],
              [('y', x.mean().reshape(1, 1, 1))], note='no axes attribute, keepdims default 1')
    name = 'reducemax_neg_o13'
    seeded(name)
    x = randn(2, 3, 4)
    op_helper(name, 13, [helper.make_node('ReduceMax', ['x'], ['y'], axes=[-1, 0], keepdims=0)], [('x', x)],
              [('y', x.amax((0, 2)))])
    op_torch('reducesum_o11', 11, lambda x: x.sum(1), [(2, 3, 4)], ['ReduceSum'], note='axes attribute')
    op_torch('reducesum_o13', 13, lambda x: x.sum((1, 2), keepdim=True), [(2, 3, 4)], ['ReduceSum'],
             note='axes input')


def gen_resize():
    op_torch('resize_nearest_scale_o11', 11, lambda x: F.interpolate(x, scale_factor=2, mode='nearest'),
             [(1, 2, 3, 4)], ['Resize'], note='asymmetric + floor, scales input')
    op_torch('resize_nearest_scale_o13', 13, lambda x: F.interpolate(x, scale_factor=2, mode='nearest'),
             [(1, 2, 3, 4)], ['Resize'])
    op_torch('resize_nearest_size_o17', 17, lambda x: F.interpolate(x, size=(8, 6), mode='nearest'),
             [(1, 2, 4, 4)], ['Resize'], note='sizes input, non-integer ratio on W')
    op_torch('resize_nearest_down_o13', 13, lambda x: F.interpolate(x, size=(3, 2), mode='nearest'),
             [(1, 2, 6, 8)], ['Resize'])
    op_torch('resize_bilinear_scale_o13', 13,
             lambda x: F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False),
             [(1, 2, 3, 4)], ['Resize'], note='half_pixel linear, scales input')
    op_torch('resize_bilinear_size_o11', 11,
             lambda x: F.interpolate(x, size=(7, 10), mode='bilinear', align_corners=False),
             [(1, 2, 3, 4)], ['Resize'], note='half_pixel linear, sizes input')
    op_torch('resize_bilinear_size_o17', 17,
             lambda x: F.interpolate(x, size=(16, 16), mode='bilinear', align_corners=False),
             [(1, 3, 4, 4)], ['Resize'])
    op_torch('resize_bilinear_down_o13', 13,
             lambda x: F.interpolate(x, size=(3, 5), mode='bilinear', align_corners=False),
             [(1, 2, 6, 10)], ['Resize'], note='integer downscale x2')
    op_torch('resize_bilinear_from1_o13', 13,
             lambda x: F.interpolate(x, size=(4, 5), mode='bilinear', align_corners=False),
             [(1, 3, 1, 1)], ['Resize'], note='DeepLab image-pool branch: 1x1 -> HxW')
    op_torch('resize_align_corners_scale_o11', 11,
             lambda x: F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=True),
             [(1, 2, 3, 4)], ['Resize'], note='align_corners linear, scales input')
    op_torch('resize_align_corners_size_o13', 13, nn.UpsamplingBilinear2d(size=(5, 7)), [(1, 2, 3, 4)], ['Resize'],
             note='nn.UpsamplingBilinear2d (RAN), align_corners, sizes input')
    op_torch('resize_align_corners_size_o17', 17, nn.UpsamplingBilinear2d(size=(8, 8)), [(1, 2, 4, 4)], ['Resize'])
    # Explicit ONNX graphs for the attribute combinations, independent of torch's exporter.
    name = 'resize_half_pixel_scales_o13'
    seeded(name)
    x = randn(1, 2, 3, 4)
    y = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)
    op_helper(name, 13, [helper.make_node('Resize', ['x', '', 's'], ['y'], mode='linear',
                                          coordinate_transformation_mode='half_pixel')],
              [('x', x)], [('y', y)], {'s': np.array([1, 1, 2, 2], np.float32)})
    name = 'resize_half_pixel_sizes_o11'
    seeded(name)
    x = randn(1, 2, 3, 4)
    y = F.interpolate(x, size=(6, 6), mode='bilinear', align_corners=False)
    op_helper(name, 11, [helper.make_node('Resize', ['x', 'roi', 'sc', 'sz'], ['y'], mode='linear',
                                          coordinate_transformation_mode='half_pixel')],
              [('x', x)], [('y', y)], {'roi': np.zeros(0, np.float32), 'sc': np.zeros(0, np.float32),
                                       'sz': np.array([1, 2, 6, 6], np.int64)},
              note='opset 11: roi and scales given as empty tensors')
    name = 'resize_nearest_sizes_o13'
    seeded(name)
    x = randn(1, 2, 4, 3)
    y = F.interpolate(x, size=(8, 6), mode='nearest')
    op_helper(name, 13, [helper.make_node('Resize', ['x', '', '', 'sz'], ['y'], mode='nearest',
                                          coordinate_transformation_mode='asymmetric', nearest_mode='floor')],
              [('x', x)], [('y', y)], {'sz': np.array([1, 2, 8, 6], np.int64)})
    name = 'resize_align_corners_scales_o17'
    seeded(name)
    x = randn(1, 2, 3, 3)
    y = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=True)
    op_helper(name, 17, [helper.make_node('Resize', ['x', '', 's'], ['y'], mode='linear',
                                          coordinate_transformation_mode='align_corners')],
              [('x', x)], [('y', y)], {'s': np.array([1, 1, 2, 2], np.float32)})


def gen_ops():
    gen_elementwise()
    gen_pooling()
    gen_batchnorm()
    gen_concat_constant()
    gen_conv()
    gen_convtranspose()
    gen_shape_ops()
    gen_linear_algebra()
    gen_activations()
    gen_pad()
    gen_reduce()
    gen_resize()


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------

MODEL_OPSETS = {
    'resnet18': 13, 'mobilenetv2': 11, 'resnext29': 14, 'inceptionv3': 17, 'wideresnet': 11, 'ran': 13,
    'cbam_resnet18': 14, 'senet18': 17, 'vgg11_bn': 11, 'fcn': 13, 'deeplabv3': 11, 'unet': 14,
    'yolov3': 13, 'ganomaly': 17, 'deeppose': 11, 'simplebaseline': 14, 'tsn': 13, 'trn': 17,
}


def prepare_bn(model, input_shapes):
    """Give every BatchNorm realistic, non-identity statistics.

    First the running statistics are measured on a random batch (so activations stay
    well scaled through the depth), then weight, bias, mean and variance are perturbed
    randomly so no BN is an identity and none is exactly data-normalising."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        model(*[randn(s[0] * 4, *s[1:]) for s in input_shapes])
    model.eval()
    with torch.no_grad():
        for bn in bns:
            c = bn.num_features
            bn.weight.copy_(torch.empty(c).uniform_(0.6, 1.4))
            bn.bias.copy_(torch.randn(c) * 0.2)
            std = bn.running_var.clamp_min(1e-3).sqrt()
            bn.running_mean.add_(torch.randn(c) * 0.2 * std)
            bn.running_var.mul_(torch.empty(c).uniform_(0.7, 1.4))
            bn.momentum = 0.1
    return len(bns)


def gen_models():
    for name, (builder, shapes) in model_zoo.MODELS.items():
        t0 = time.time()
        seeded(name)
        model = builder()
        nbn = prepare_bn(model, shapes)
        inputs = [randn(*s) for s in shapes]
        onnx_model, outs = export_torch(model, inputs, MODEL_OPSETS[name])
        for o in outs:
            assert o.std() > 1e-3 and np.mean(o != 0) > 0.5, (name, 'degenerate output', o.std())
        n_bn_nodes = sum(1 for n in onnx_model.graph.node if n.op_type == 'BatchNormalization')
        assert n_bn_nodes == nbn, (name, 'BatchNormalization nodes', n_bn_nodes, 'modules', nbn)
        write_fixture('models', name, onnx_model, [to_np(i) for i in inputs], outs,
                      ['BatchNormalization'] if nbn else [],
                      note='%d BatchNormalization nodes; output std %s; %.1fs' % (
                          n_bn_nodes, ' '.join('%.3g' % o.std() for o in outs), time.time() - t0))

    # A dynamic batch axis, as users export for serving: view(x.size(0), -1) then keeps its
    # Shape->Gather->Unsqueeze->Concat chain, and the engine must refold it per batch size.
    name = 'resnet18_dynbatch'
    seeded(name)
    model = model_zoo.resnet18(width=4)
    prepare_bn(model, [(1, 3, 32, 32)])
    inputs = [randn(3, 3, 32, 32)]
    onnx_model, outs = export_torch(model, inputs, 13, dynamic_batch=True)
    write_fixture('models', name, onnx_model, [to_np(i) for i in inputs], outs,
                  ['BatchNormalization', 'Shape', 'Gather'], note='batch axis dynamic; .bin files hold batch 3',
                  dynamic_batch=True)


# ---------------------------------------------------------------------------
# Summary files
# ---------------------------------------------------------------------------

README = """\
# Test fixtures

Reference data for the C engine's fixture tests (`tests/test_fixture`, one CTest per
`*.onnx` here, registered by `tests/CMakeLists.txt`).  Everything in `ops/` and
`models/` is generated by PyTorch; do not edit by hand.

* `ops/` - single-operator graphs covering each supported op and its attribute variants
  (opsets 11-17).  Most are exported by `torch.onnx.export`; variants torch cannot emit
  (asymmetric pads, auto_pad, opset-11 Softmax semantics, negative Gather indices, ...)
  are built with `onnx.helper` (ir_version 8) and their expected output is computed with
  equivalent torch code.
* `models/` - reduced-width versions of the model families LegoDNN supports
  (`tools/model_zoo.py`), exported in eval mode with BatchNormalization kept as nodes
  (`training=TrainingMode.PRESERVE, do_constant_folding=False`), random weights and
  randomised BN statistics.

The fixture name encodes the opset: `..._o13` is opset 13.  `ops/ops_used.txt` and
`models/ops_used.txt` list, per fixture, the opset, input/output shapes and the ONNX op
types in the graph.

## File format

For each fixture `NAME`:

| file | content |
| --- | --- |
| `NAME.onnx` | the model; every graph input is float32 with a static shape |
| `NAME.in.bin` | all graph inputs (graph inputs that are not initializers), raw little-endian float32, concatenated in graph-input order, each in row-major order |
| `NAME.out.bin` | all graph outputs as computed by PyTorch, raw little-endian float32, concatenated in graph-output order |

Shapes are not stored in the .bin files: take them from the graph's inputs and outputs.
A rank-0 input or output is one float.

## Tolerance

The C tests compare elementwise with

    |got - ref| <= 1e-4 * max(1, max|ref|) + 1e-3 * |ref|

where `max|ref|` is taken over the whole output tensor.

## Regenerating

From the repository root, with Debian's Python (torch 1.13, onnx 1.12):

    /usr/bin/python3 tools/gen_fixtures.py

It is deterministic (every fixture is seeded from its name) and rewrites `ops/`, `models/`
and this file.  Optional independent check against onnxruntime (see the script's header
for the one-time setup): `/usr/bin/python3 tools/ort_check.py`.
"""


def fmt_shapes(shapes):
    return ','.join('x'.join(str(d) for d in s) if s else 'scalar' for s in shapes)


def write_summaries():
    for group, d in (('ops', OPS_DIR), ('models', MODELS_DIR)):
        lines = ['# name opset inputs -> outputs : ONNX op types  [note]',
                 '# generated by tools/gen_fixtures.py']
        for r in RECORDS[group]:
            line = '%s opset=%d %s -> %s : %s' % (r['name'], r['opset'], fmt_shapes(r['ins']),
                                                  fmt_shapes(r['outs']), ' '.join(r['ops']))
            if r['note'] and group == 'ops':
                line += '  [%s]' % r['note']
            lines.append(line)
        allops = sorted({o for r in RECORDS[group] for o in r['ops']})
        lines.append('# all op types: ' + ' '.join(allops))
        with open(os.path.join(d, 'ops_used.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    with open(os.path.join(DATA, 'README.md'), 'w') as f:
        f.write(README)


def dir_size(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def main():
    t0 = time.time()
    assert os.path.isdir(os.path.join(ROOT, 'tests')), 'run from a checkout of the repository'
    for d in (OPS_DIR, MODELS_DIR):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    gen_ops()
    t_ops = time.time() - t0
    gen_models()
    write_summaries()

    print('== models: ONNX op types per graph ==')
    for r in RECORDS['models']:
        print('%-15s opset %-2d in %-12s out %-22s %s' % (r['name'], r['opset'], fmt_shapes(r['ins']),
                                                          fmt_shapes(r['outs']), r['note']))
        print('    ' + ' '.join(r['ops']))
    std = {'Add', 'Sub', 'Mul', 'Div', 'AveragePool', 'MaxPool', 'GlobalAveragePool', 'GlobalMaxPool',
           'BatchNormalization', 'Concat', 'Constant', 'Conv', 'ConvTranspose', 'Expand', 'Flatten', 'Gather',
           'Gemm', 'MatMul', 'Identity', 'Dropout', 'Relu', 'LeakyRelu', 'Clip', 'Sigmoid', 'Tanh', 'Softmax',
           'Pad', 'ReduceMean', 'ReduceMax', 'Reshape', 'Resize', 'Shape', 'Slice', 'Squeeze', 'Unsqueeze',
           'Transpose'}
    extra = {}
    for group in ('ops', 'models'):
        for r in RECORDS[group]:
            for o in r['ops']:
                if o not in std:
                    extra.setdefault(o, []).append(r['name'])
    print('== op types beyond the core list ==')
    for o in sorted(extra):
        print('  %-16s %s' % (o, ' '.join(extra[o])))
    so, sm = dir_size(OPS_DIR), dir_size(MODELS_DIR)
    print('== size ==')
    print('  ops:    %4d fixtures  %8.1f KiB' % (len(RECORDS['ops']), so / 1024))
    print('  models: %4d fixtures  %8.1f KiB' % (len(RECORDS['models']), sm / 1024))
    print('  total tests/data: %.2f MiB' % ((so + sm + os.path.getsize(os.path.join(DATA, 'README.md'))) / 2**20))
    print('  time: ops %.1fs, total %.1fs' % (t_ops, time.time() - t0))


if __name__ == '__main__':
    main()
