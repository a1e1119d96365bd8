"""The models of bench/bench_engines.sh, as PyTorch modules.

Shared by make_models.py (which exports them to ONNX) and torch_bench.py
(which rebuilds the same architecture and loads the ONNX file's weights into
it), so both sides run one definition. Weights are PyTorch's random
initialisation: nothing is downloaded, and timing does not depend on them.

MODELS maps a name to (builder, input shape C,H,W, source): 'export' models
are written by make_models.py; 'shipped' ones are ONNX files in the
repository, rebuilt here only so that PyTorch can run them. LAYERS holds
single convolutions of CIFAR ResNet18 and of its pruned descendants, for
bench/bench_layers.sh, in the same form.
"""

import os
import sys

import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tools'))
import model_zoo  # noqa: E402


class CifarMobileNetV2(nn.Module):
    """Full-size MobileNetV2 for 32x32 CIFAR input (10 classes): the ImageNet
    layout (32-channel stem, 16..320 inverted residuals, 1280-channel head)
    with the stem and the second stage at stride 1 instead of 2, as the CIFAR
    versions LegoDNN trains do, so the last feature map is 4x4. Units come from
    tools/model_zoo.py (ReLU6, residual when the shape is kept)."""
    cfg = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
           (6, 320, 1, 1)]

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu1 = nn.ReLU6(inplace=True)
        layers, in_planes = [], 32
        for expansion, out_planes, num_blocks, stride in self.cfg:
            for s in [stride] + [1] * (num_blocks - 1):
                layers.append(model_zoo.InvertedResidual(in_planes, out_planes, expansion, s))
                in_planes = out_planes
        self.layers = nn.Sequential(*layers)
        self.conv2 = nn.Conv2d(in_planes, 1280, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.relu2 = nn.ReLU6(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(1280, num_classes)

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.avgpool(out)
        out = out.view(out.size(0), -1)
        return self.linear(out)


def _tv(name):
    def build():
        import torchvision  # python3-torchvision (scripts/install-deps.sh --bench)
        return getattr(torchvision.models, name)(weights=None)
    return build


MODELS = {
    'cifar_resnet18': (lambda: model_zoo.resnet18(num_classes=10, width=64), (3, 32, 32), 'export'),
    'cifar_mobilenetv2': (lambda: CifarMobileNetV2(num_classes=10), (3, 32, 32), 'export'),
    'tv_resnet18': (_tv('resnet18'), (3, 224, 224), 'export'),
    'tv_mobilenetv2': (_tv('mobilenet_v2'), (3, 224, 224), 'export'),
    # the shipped Fashion-MNIST teacher: legodnn's built-in resnet18:8, same
    # layout and parameter names as model_zoo.resnet18(width=8)
    'fmnist_resnet18w8': (lambda: model_zoo.resnet18(num_classes=10, width=8), (3, 32, 32),
                          os.path.join(ROOT, 'models', 'fmnist_resnet18w8.onnx')),
}


class ConvUnit(nn.Module):
    """One convolution as CIFAR ResNet18's blocks run it (Conv, BatchNorm,
    ReLU), then global average pooling and a 10-class Linear: the head costs
    under 1% of the convolution and lets bench_train time a training step."""

    def __init__(self, cin, cout, kernel, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(cout, 10)

    def forward(self, x):
        out = self.pool(self.relu(self.bn(self.conv(x))))
        return self.linear(out.view(out.size(0), -1))


def _layer(cin, cout, size, kernel=3, stride=1):
    name = 'l%d_%d_%d_%d%s' % (kernel, cin, cout, size, 's2' if stride == 2 else '')
    return name, ((lambda: ConvUnit(cin, cout, kernel, stride)), (cin, size, size), 'export')


# Full-width layers of each stage; the stride-2 and 1x1 shortcut layers that
# open stages 2-4; and the pruned widths of the 0.3 and 0.8 descendants
# (C - floor(C s) filters kept: 64 -> 45 and 13, 512 -> 359, 205 and 103).
LAYERS = dict([
    _layer(64, 64, 32), _layer(64, 45, 32), _layer(45, 64, 32), _layer(64, 13, 32), _layer(13, 64, 32),
    _layer(128, 128, 16), _layer(256, 256, 8), _layer(512, 512, 4), _layer(512, 359, 4),
    _layer(359, 512, 4), _layer(512, 103, 4), _layer(103, 512, 4),
    _layer(64, 128, 32, stride=2), _layer(128, 256, 16, stride=2), _layer(256, 512, 8, stride=2),
    _layer(256, 359, 8, stride=2), _layer(256, 205, 8, stride=2), _layer(256, 103, 8, stride=2),
    _layer(64, 128, 32, kernel=1, stride=2), _layer(256, 512, 8, kernel=1, stride=2),
])


def lookup(name):
    """(builder, shape, source) of a model or a layer, or None."""
    return MODELS.get(name) or LAYERS.get(name)
