"""Reduced-width PyTorch definitions of the model families LegoDNN supports.

Each family is written the way the original LegoDNN repository writes it
(cv_task/image_classification/cifar/models, and the mmseg / mmdet / mmpose /
mmaction style models of its other cv_tasks), so that exporting it to ONNX
produces the same operator patterns as the real model: BatchNorm after conv,
``out.view(out.size(0), -1)`` before the classifier, ``F.avg_pool2d`` with a
kernel equal to the spatial size, ``nn.UpsamplingBilinear2d``, ``torch.cat``
joins, and so on.  Only the widths, depths and input sizes are reduced, so the
graphs stay small enough to ship as test fixtures.

Every builder takes ``width`` (base channel count) and ``num_classes`` (or the
task's equivalent) so that training code can reuse them at other sizes.
``MODELS`` at the bottom maps a fixture name to (builder, example input shapes).

Used by tools/gen_fixtures.py; importable on its own (needs only torch).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------------------
# ResNet-18, CIFAR style (kuangliu / legodnn cifar/models/resnet.py)
# ---------------------------------------------------------------------------

class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN + (projection) shortcut, ReLU."""
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class ResNetCifar(nn.Module):
    """CIFAR ResNet: 3x3 stem, four BasicBlock stages, avg_pool2d(4), view, Linear."""

    def __init__(self, block=BasicBlock, num_blocks=(2, 2, 2, 2), num_classes=10, width=8):
        super().__init__()
        self.in_planes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(block, width, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, width * 2, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, num_blocks[3], stride=2)
        self.linear = nn.Linear(width * 8 * block.expansion, num_classes)

    def _make_layer(self, block, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


def resnet18(num_classes=10, width=8):
    """ResNet-18 for 32x32 CIFAR input (base width 64 in the original)."""
    return ResNetCifar(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, width=width)


# ---------------------------------------------------------------------------
# MobileNetV2, CIFAR style (legodnn cifar/models/mobilenetv2.py)
# ---------------------------------------------------------------------------

class InvertedResidual(nn.Module):
    """MobileNetV2 unit: 1x1 expand-BN-ReLU6, 3x3 depthwise-BN-ReLU6, 1x1 project-BN, add."""

    def __init__(self, in_planes, out_planes, expansion, stride):
        super().__init__()
        self.stride = stride
        planes = expansion * in_planes
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, stride=1, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU6(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU6(inplace=True)
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, stride=1, padding=0, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.use_res = stride == 1 and in_planes == out_planes

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.use_res:
            out = out + x
        return out


class MobileNetV2(nn.Module):
    """CIFAR MobileNetV2: 3x3 stem (stride 1), inverted residuals, 1x1 conv, adaptive pool, Linear."""
    # (expansion, out_planes, num_blocks, stride); the original is 32..320 wide.
    cfg = [(1, 2, 1, 1), (6, 3, 2, 1), (6, 4, 2, 2), (6, 6, 2, 2), (6, 8, 1, 1)]

    def __init__(self, num_classes=10, width=4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width * 2, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * 2)
        self.relu1 = nn.ReLU6(inplace=True)
        layers = []
        in_planes = width * 2
        for expansion, mult, num_blocks, stride in self.cfg:
            for s in [stride] + [1] * (num_blocks - 1):
                layers.append(InvertedResidual(in_planes, mult * width, expansion, s))
                in_planes = mult * width
        self.layers = nn.Sequential(*layers)
        self.conv2 = nn.Conv2d(in_planes, width * 16, kernel_size=1, stride=1, padding=0, bias=False)
        self.bn2 = nn.BatchNorm2d(width * 16)
        self.relu2 = nn.ReLU6(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(width * 16, num_classes)

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.avgpool(out)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


def mobilenetv2(num_classes=10, width=4):
    """MobileNetV2 for 32x32 input with ReLU6 (exports as Clip) and depthwise convs."""
    return MobileNetV2(num_classes=num_classes, width=width)


# ---------------------------------------------------------------------------
# ResNeXt-29, CIFAR style (legodnn cifar/models/resnext.py)
# ---------------------------------------------------------------------------

class ResNeXtBlock(nn.Module):
    """Grouped-convolution bottleneck: 1x1, 3x3 groups=cardinality, 1x1 (x2), + shortcut."""
    expansion = 2

    def __init__(self, in_planes, cardinality=4, bottleneck_width=2, stride=1):
        super().__init__()
        group_width = cardinality * bottleneck_width
        self.conv1 = nn.Conv2d(in_planes, group_width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(group_width)
        self.conv2 = nn.Conv2d(group_width, group_width, kernel_size=3, stride=stride, padding=1,
                               groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm2d(group_width)
        self.conv3 = nn.Conv2d(group_width, self.expansion * group_width, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(self.expansion * group_width)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * group_width:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * group_width, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * group_width))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class ResNeXt(nn.Module):
    """ResNeXt-29 layout (three stages, bottleneck width doubling), avg_pool2d(8), view, Linear."""

    def __init__(self, num_blocks=(1, 1, 1), cardinality=4, bottleneck_width=2, num_classes=10, width=8):
        super().__init__()
        self.cardinality = cardinality
        self.bottleneck_width = bottleneck_width
        self.in_planes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(num_blocks[0], 1)
        self.layer2 = self._make_layer(num_blocks[1], 2)
        self.layer3 = self._make_layer(num_blocks[2], 2)
        self.linear = nn.Linear(cardinality * bottleneck_width * 8, num_classes)

    def _make_layer(self, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(ResNeXtBlock(self.in_planes, self.cardinality, self.bottleneck_width, s))
            self.in_planes = ResNeXtBlock.expansion * self.cardinality * self.bottleneck_width
        self.bottleneck_width *= 2
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = F.avg_pool2d(out, 8)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


def resnext29(num_classes=10, width=8, cardinality=4, bottleneck_width=2):
    """ResNeXt-29 (2x2d-like, one block per stage) for 32x32 input, grouped 3x3 convs."""
    return ResNeXt((1, 1, 1), cardinality, bottleneck_width, num_classes=num_classes, width=width)


# ---------------------------------------------------------------------------
# Inception-v3 style (torchvision / legodnn cifar/models/inceptionv3.py)
# ---------------------------------------------------------------------------

class BasicConv2d(nn.Module):
    """Inception conv unit: conv (no bias) - BN(eps=1e-3) - ReLU."""

    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class InceptionA(nn.Module):
    """Branches 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool3x3(s1,p1)-1x1, concatenated."""

    def __init__(self, in_channels, pool_features, w=4):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 2 * w, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, w, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(w, 2 * w, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 2 * w, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(2 * w, 3 * w, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(3 * w, 3 * w, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)
        self.out_channels = 2 * w + 2 * w + 3 * w + pool_features

    def forward(self, x):
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        branch_pool = self.branch_pool(branch_pool)
        return torch.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    """Grid reduction: 3x3 s2 | 1x1-3x3-3x3 s2 | maxpool 3x3 s2, concatenated."""

    def __init__(self, in_channels, w=4):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 6 * w, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 2 * w, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(2 * w, 3 * w, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(3 * w, 3 * w, kernel_size=3, stride=2)
        self.out_channels = 6 * w + 3 * w + in_channels

    def forward(self, x):
        branch3x3 = self.branch3x3(x)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch3x3dbl, branch_pool], 1)


class InceptionC(nn.Module):
    """Factorised 7x7: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool-1x1, concatenated."""

    def __init__(self, in_channels, channels_7x7, w=4):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 4 * w, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 4 * w, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 4 * w, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 4 * w, kernel_size=1)
        self.out_channels = 16 * w

    def forward(self, x):
        branch1x1 = self.branch1x1(x)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b = self.branch7x7dbl_1(x)
        b = self.branch7x7dbl_2(b)
        b = self.branch7x7dbl_3(b)
        b = self.branch7x7dbl_4(b)
        branch7x7dbl = self.branch7x7dbl_5(b)
        branch_pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        branch_pool = self.branch_pool(branch_pool)
        return torch.cat([branch1x1, branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionV3(nn.Module):
    """Inception-v3 for 32x32: conv stem, InceptionA x2, InceptionB, InceptionC, pool, dropout, Linear."""

    def __init__(self, num_classes=10, width=4):
        super().__init__()
        w = width
        self.Conv2d_1a_3x3 = BasicConv2d(3, 2 * w, kernel_size=3, padding=1)
        self.Conv2d_2a_3x3 = BasicConv2d(2 * w, 4 * w, kernel_size=3, padding=1)
        self.Mixed_5b = InceptionA(4 * w, pool_features=w, w=w)
        self.Mixed_5c = InceptionA(self.Mixed_5b.out_channels, pool_features=2 * w, w=w)
        self.Mixed_6a = InceptionB(self.Mixed_5c.out_channels, w=w)
        self.Mixed_6b = InceptionC(self.Mixed_6a.out_channels, channels_7x7=2 * w, w=w)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.5)
        self.linear = nn.Linear(self.Mixed_6b.out_channels, num_classes)

    def forward(self, x):
        x = self.Conv2d_1a_3x3(x)
        x = self.Conv2d_2a_3x3(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        x = self.Mixed_5b(x)
        x = self.Mixed_5c(x)
        x = self.Mixed_6a(x)
        x = self.Mixed_6b(x)
        x = self.avgpool(x)
        x = self.dropout(x)
        x = x.view(x.size(0), -1)
        x = self.linear(x)
        return x


def inceptionv3(num_classes=10, width=4):
    """Inception-v3 style net: multi-branch modules joined by torch.cat."""
    return InceptionV3(num_classes=num_classes, width=width)


# ---------------------------------------------------------------------------
# WideResNet (legodnn cifar/models/wideresnet.py)
# ---------------------------------------------------------------------------

class WideBasic(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv3x3-BN-ReLU-Dropout-conv3x3, + (1x1) shortcut."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1))
        self.shortcut = nn.Sequential()
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride))

    def forward(self, x):
        residual = self.residual(x)
        shortcut = self.shortcut(x)
        return residual + shortcut


class WideResNet(nn.Module):
    """WRN-depth-k: init conv, three wide stages, BN-ReLU, adaptive pool, view, Linear."""

    def __init__(self, num_classes=10, depth=10, widen_factor=2, width=4):
        super().__init__()
        k = widen_factor
        n = int((depth - 4) / 6)
        self.in_channels = width
        self.init_conv = nn.Conv2d(3, self.in_channels, 3, 1, padding=1)
        self.conv2 = self._make_layer(width * k, n, 1)
        self.conv3 = self._make_layer(2 * width * k, n, 2)
        self.conv4 = self._make_layer(4 * width * k, n, 2)
        self.bn = nn.BatchNorm2d(4 * width * k)
        self.relu = nn.ReLU(inplace=True)
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(4 * width * k, num_classes)

    def _make_layer(self, out_channels, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(WideBasic(self.in_channels, out_channels, s))
            self.in_channels = out_channels
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.init_conv(x)
        x = self.conv2(x)
        x = self.conv3(x)
        x = self.conv4(x)
        x = self.bn(x)
        x = self.relu(x)
        x = self.avg_pool(x)
        x = x.view(x.size(0), -1)
        x = self.linear(x)
        return x


def wideresnet(num_classes=10, width=4, depth=10, widen_factor=2):
    """WideResNet-10-2 (base 16 in the original WRN-40-10) with dropout inside blocks."""
    return WideResNet(num_classes=num_classes, depth=depth, widen_factor=widen_factor, width=width)


# ---------------------------------------------------------------------------
# Residual Attention Network (legodnn cifar/models/ran/)
# ---------------------------------------------------------------------------

class RANResidualBlock(nn.Module):
    """Pre-activation bottleneck of RAN: BN-ReLU-1x1-BN-ReLU-3x3-BN-ReLU-1x1 (+ 1x1 projection)."""

    def __init__(self, input_channels, output_channels, stride=1):
        super().__init__()
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.stride = stride
        self.bn1 = nn.BatchNorm2d(input_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(input_channels, output_channels // 4, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(output_channels // 4)
        self.conv2 = nn.Conv2d(output_channels // 4, output_channels // 4, 3, stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(output_channels // 4)
        self.conv3 = nn.Conv2d(output_channels // 4, output_channels, 1, 1, bias=False)
        self.conv4 = nn.Conv2d(input_channels, output_channels, 1, stride, bias=False)

    def forward(self, x):
        residual = x
        out = self.bn1(x)
        out1 = self.relu(out)
        out = self.conv1(out1)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn3(out)
        out = self.relu(out)
        out = self.conv3(out)
        if (self.input_channels != self.output_channels) or (self.stride != 1):
            residual = self.conv4(out1)
        out += residual
        return out


class AttentionModuleCifar(nn.Module):
    """RAN attention module (stage1_cifar): trunk branch and a soft-mask branch that goes down
    with MaxPool twice and back up with UpsamplingBilinear2d, then (1 + sigmoid mask) * trunk."""

    def __init__(self, in_channels, out_channels, size1=(16, 16), size2=(8, 8)):
        super().__init__()
        self.first_residual_blocks = RANResidualBlock(in_channels, out_channels)
        self.trunk_branches = nn.Sequential(
            RANResidualBlock(in_channels, out_channels),
            RANResidualBlock(in_channels, out_channels))
        self.mpool1 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.down_residual_blocks1 = RANResidualBlock(in_channels, out_channels)
        self.skip1_connection_residual_block = RANResidualBlock(in_channels, out_channels)
        self.mpool2 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.middle_2r_blocks = nn.Sequential(
            RANResidualBlock(in_channels, out_channels),
            RANResidualBlock(in_channels, out_channels))
        self.interpolation1 = nn.UpsamplingBilinear2d(size=size2)
        self.up_residual_blocks1 = RANResidualBlock(in_channels, out_channels)
        self.interpolation2 = nn.UpsamplingBilinear2d(size=size1)
        self.conv1_1_blocks = nn.Sequential(
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=1, stride=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=1, stride=1, bias=False),
            nn.Sigmoid())
        self.last_blocks = RANResidualBlock(in_channels, out_channels)

    def forward(self, x):
        x = self.first_residual_blocks(x)
        out_trunk = self.trunk_branches(x)
        out_mpool1 = self.mpool1(x)
        out_down_residual_blocks1 = self.down_residual_blocks1(out_mpool1)
        out_skip1_connection = self.skip1_connection_residual_block(out_down_residual_blocks1)
        out_mpool2 = self.mpool2(out_down_residual_blocks1)
        out_middle_2r_blocks = self.middle_2r_blocks(out_mpool2)
        out_interp = self.interpolation1(out_middle_2r_blocks) + out_down_residual_blocks1
        out = out_interp + out_skip1_connection
        out_up_residual_blocks1 = self.up_residual_blocks1(out)
        out_interp2 = self.interpolation2(out_up_residual_blocks1) + out_trunk
        out_conv1_1_blocks = self.conv1_1_blocks(out_interp2)
        out = (1 + out_conv1_1_blocks) * out_trunk
        out_last = self.last_blocks(out)
        return out_last


class ResidualAttentionNet(nn.Module):
    """RAN for 32x32: conv stem, maxpool, residual block, one attention module, residual
    blocks, BN-ReLU-AvgPool, view, Linear."""

    def __init__(self, num_classes=10, width=8):
        super().__init__()
        w = width
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, w, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True))                                    # 32x32
        self.mpool1 = nn.MaxPool2d(kernel_size=2, stride=2, padding=0)  # 16x16
        self.residual_block1 = RANResidualBlock(w, 2 * w)
        self.attention_module1 = AttentionModuleCifar(2 * w, 2 * w, size1=(16, 16), size2=(8, 8))
        self.residual_block2 = RANResidualBlock(2 * w, 4 * w, 2)      # 8x8
        self.residual_block3 = RANResidualBlock(4 * w, 4 * w)
        self.mpool2 = nn.Sequential(
            nn.BatchNorm2d(4 * w),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(kernel_size=8))
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        out = self.conv1(x)
        out = self.mpool1(out)
        out = self.residual_block1(out)
        out = self.attention_module1(out)
        out = self.residual_block2(out)
        out = self.residual_block3(out)
        out = self.mpool2(out)
        out = out.view(out.size(0), -1)
        out = self.fc(out)
        return out


def ran(num_classes=10, width=8):
    """Residual Attention Network (92_32input layout, one attention module)."""
    return ResidualAttentionNet(num_classes=num_classes, width=width)


# ---------------------------------------------------------------------------
# CBAM-ResNet (legodnn cifar/models/cbam/)
# ---------------------------------------------------------------------------

class Flatten(nn.Module):
    """x.view(x.size(0), -1) as a module (CBAM's MLP starts with it)."""

    def forward(self, x):
        return x.view(x.size(0), -1)


class ChannelGate(nn.Module):
    """CBAM channel attention: shared MLP on avg- and max-pooled features, summed, sigmoid."""

    def __init__(self, gate_channels, reduction_ratio=4, pool_types=('avg', 'max')):
        super().__init__()
        self.gate_channels = gate_channels
        self.mlp = nn.Sequential(
            Flatten(),
            nn.Linear(gate_channels, gate_channels // reduction_ratio),
            nn.ReLU(),
            nn.Linear(gate_channels // reduction_ratio, gate_channels))
        self.pool_types = pool_types

    def forward(self, x):
        channel_att_sum = None
        for pool_type in self.pool_types:
            if pool_type == 'avg':
                avg_pool = F.avg_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
                channel_att_raw = self.mlp(avg_pool)
            else:
                max_pool = F.max_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
                channel_att_raw = self.mlp(max_pool)
            if channel_att_sum is None:
                channel_att_sum = channel_att_raw
            else:
                channel_att_sum = channel_att_sum + channel_att_raw
        scale = torch.sigmoid(channel_att_sum).unsqueeze(2).unsqueeze(3).expand_as(x)
        return x * scale


class ChannelPool(nn.Module):
    """Max and mean over channels, stacked as two channels."""

    def forward(self, x):
        return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)


class SpatialGate(nn.Module):
    """CBAM spatial attention: ChannelPool - 7x7 conv - BN - sigmoid, broadcast multiply."""

    def __init__(self):
        super().__init__()
        kernel_size = 7
        self.compress = ChannelPool()
        self.spatial_conv = nn.Conv2d(2, 1, kernel_size, stride=1, padding=(kernel_size - 1) // 2, bias=False)
        self.spatial_bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01, affine=True)

    def forward(self, x):
        x_compress = self.compress(x)
        x_out = self.spatial_bn(self.spatial_conv(x_compress))
        scale = torch.sigmoid(x_out)  # broadcasting
        return x * scale


class CBAM(nn.Module):
    """ChannelGate followed by SpatialGate."""

    def __init__(self, gate_channels, reduction_ratio=4):
        super().__init__()
        self.ChannelGate = ChannelGate(gate_channels, reduction_ratio)
        self.SpatialGate = SpatialGate()

    def forward(self, x):
        return self.SpatialGate(self.ChannelGate(x))


class CBAMBasicBlock(nn.Module):
    """ResNet basic block with CBAM applied before the residual add."""
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))
        self.cbam = CBAM(planes, 4)

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out = self.cbam(out)
        out += residual
        out = self.relu(out)
        return out


def cbam_resnet18(num_classes=10, width=8):
    """ResNet-18 (CIFAR) whose basic blocks carry CBAM attention."""
    return ResNetCifar(CBAMBasicBlock, (2, 2, 2, 2), num_classes=num_classes, width=width)


# ---------------------------------------------------------------------------
# SE-ResNet (legodnn cifar/models/senet.py)
# ---------------------------------------------------------------------------

class SEPreActBlock(nn.Module):
    """Pre-activation block with squeeze-excitation: avg_pool2d, 1x1 conv fc1-ReLU-fc2-sigmoid, mul."""

    def __init__(self, in_planes, planes, stride=1, reduction=4):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False))
        # SE layers
        self.fc1 = nn.Conv2d(planes, planes // reduction, kernel_size=1)
        self.fc2 = nn.Conv2d(planes // reduction, planes, kernel_size=1)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, 'shortcut') else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        # Squeeze
        w = F.avg_pool2d(out, int(out.size(2)))
        w = F.relu(self.fc1(w))
        w = torch.sigmoid(self.fc2(w))
        # Excitation
        out = out * w
        out += shortcut
        return out


class SENet(nn.Module):
    """SENet-18 (pre-activation) for 32x32: stem, four stages of SE blocks, avg_pool2d(4), Linear."""

    def __init__(self, num_blocks=(2, 2, 2, 2), num_classes=10, width=8):
        super().__init__()
        self.in_planes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(width, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(2 * width, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(4 * width, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(8 * width, num_blocks[3], stride=2)
        self.linear = nn.Linear(8 * width, num_classes)

    def _make_layer(self, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(SEPreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


def senet18(num_classes=10, width=8):
    """SE-ResNet-18 (pre-activation blocks) with 1x1-conv excitation."""
    return SENet((2, 2, 2, 2), num_classes=num_classes, width=width)


# ---------------------------------------------------------------------------
# VGG with BatchNorm (legodnn cifar/models/vgg.py)
# ---------------------------------------------------------------------------

class VGG(nn.Module):
    """VGG-BN: conv3x3-BN-ReLU stacks with MaxPool, AvgPool2d(1), view, Linear."""
    cfg = {'VGG11': [1, 'M', 2, 'M', 4, 4, 'M', 8, 8, 'M', 8, 8, 'M']}

    def __init__(self, vgg_name='VGG11', num_classes=10, width=8):
        super().__init__()
        self.features = self._make_layers([c if c == 'M' else c * width for c in self.cfg[vgg_name]])
        self.classifier = nn.Linear(8 * width, num_classes)

    def forward(self, x):
        out = self.features(x)
        out = out.view(out.size(0), -1)
        out = self.classifier(out)
        return out

    def _make_layers(self, cfg):
        layers = []
        in_channels = 3
        for x in cfg:
            if x == 'M':
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                layers += [nn.Conv2d(in_channels, x, kernel_size=3, padding=1),
                           nn.BatchNorm2d(x),
                           nn.ReLU(inplace=True)]
                in_channels = x
        layers += [nn.AvgPool2d(kernel_size=1, stride=1)]
        return nn.Sequential(*layers)


def vgg11_bn(num_classes=10, width=8):
    """VGG-11 with BatchNorm for 32x32 input."""
    return VGG('VGG11', num_classes=num_classes, width=width)


# ---------------------------------------------------------------------------
# ImageNet-style ResNet backbone (torchvision / mmcv ResNet, with dilation
# support as in mmseg's ResNetV1c) shared by the dense-prediction, pose and
# action models.
# ---------------------------------------------------------------------------

class DilatedBasicBlock(nn.Module):
    """mmcv/mmseg BasicBlock: 3x3 (stride, dilation) -BN-ReLU- 3x3 (dilation) -BN, + downsample, ReLU."""

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNetBackbone(nn.Module):
    """ResNet-18 backbone: stem (7x7 s2, or deep 3x3 x3 for V1c), maxpool, four stages with
    configurable strides/dilations. Returns the last stage's feature map."""

    def __init__(self, width=8, num_blocks=(2, 2, 2, 2), strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1),
                 deep_stem=False, in_channels=3):
        super().__init__()
        if deep_stem:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width // 2), nn.ReLU(inplace=True),
                nn.Conv2d(width // 2, width // 2, 3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(width // 2), nn.ReLU(inplace=True),
                nn.Conv2d(width // 2, width, 3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.inplanes = width
        self.out_channels = width * 8
        layers = []
        for i in range(4):
            layers.append(self._make_layer(width * 2 ** i, num_blocks[i], strides[i], dilations[i]))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers

    def _make_layer(self, planes, blocks, stride, dilation):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))
        layers = [DilatedBasicBlock(self.inplanes, planes, stride, dilation, downsample)]
        self.inplanes = planes
        for _ in range(1, blocks):
            layers.append(DilatedBasicBlock(planes, planes, 1, dilation))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.stem(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return x


class ConvModule(nn.Sequential):
    """mmcv ConvModule: conv (no bias) - BN - ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, padding=0, dilation=1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True))


# ---------------------------------------------------------------------------
# FCN (mmseg FCNHead on a dilated ResNetV1c-18)
# ---------------------------------------------------------------------------

class FCN(nn.Module):
    """FCN: dilated ResNet-18 (output stride 8), FCNHead (two 3x3 convs, concat_input,
    conv_cat, dropout, 1x1 cls), bilinear resize (align_corners=False) to the input size."""

    def __init__(self, num_classes=5, width=8, channels=16):
        super().__init__()
        self.backbone = ResNetBackbone(width, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), deep_stem=True)
        in_ch = self.backbone.out_channels
        self.convs = nn.Sequential(
            ConvModule(in_ch, channels, 3, padding=1),
            ConvModule(channels, channels, 3, padding=1))
        self.conv_cat = ConvModule(in_ch + channels, channels, 3, padding=1)
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, img):
        x = self.backbone(img)
        output = self.convs(x)
        output = self.conv_cat(torch.cat([x, output], dim=1))
        output = self.conv_seg(self.dropout(output))
        return F.interpolate(output, size=img.shape[2:], mode='bilinear', align_corners=False)


def fcn_resnet18(num_classes=5, width=6):
    """FCN semantic segmentation (64x64 input) on a dilated ResNet-18."""
    return FCN(num_classes=num_classes, width=width)


# ---------------------------------------------------------------------------
# DeepLabV3 (mmseg ASPPHead on a dilated ResNetV1c-18)
# ---------------------------------------------------------------------------

class ASPPModule(nn.ModuleList):
    """Parallel atrous convs: 1x1 for dilation 1, 3x3 with padding=dilation otherwise."""

    def __init__(self, dilations, in_channels, channels):
        super().__init__()
        for d in dilations:
            self.append(ConvModule(in_channels, channels, 1 if d == 1 else 3,
                                   padding=0 if d == 1 else d, dilation=d))

    def forward(self, x):
        return [m(x) for m in self]


class DeepLabV3(nn.Module):
    """DeepLabV3: dilated ResNet-18, ASPP (image pool branch: AdaptiveAvgPool(1)-1x1 conv-bilinear
    resize; atrous branches), cat, 3x3 bottleneck, 1x1 cls, bilinear resize to input size."""

    def __init__(self, num_classes=5, width=8, channels=16, dilations=(1, 2, 4, 6)):
        super().__init__()
        self.backbone = ResNetBackbone(width, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), deep_stem=True)
        in_ch = self.backbone.out_channels
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvModule(in_ch, channels, 1))
        self.aspp_modules = ASPPModule(dilations, in_ch, channels)
        self.bottleneck = ConvModule((len(dilations) + 1) * channels, channels, 3, padding=1)
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, img):
        x = self.backbone(img)
        aspp_outs = [F.interpolate(self.image_pool(x), size=x.size()[2:], mode='bilinear', align_corners=False)]
        aspp_outs.extend(self.aspp_modules(x))
        aspp_outs = torch.cat(aspp_outs, dim=1)
        output = self.bottleneck(aspp_outs)
        output = self.conv_seg(self.dropout(output))
        return F.interpolate(output, size=img.shape[2:], mode='bilinear', align_corners=False)


def deeplabv3_resnet18(num_classes=5, width=6):
    """DeepLabV3 semantic segmentation (64x64 input) on a dilated ResNet-18."""
    return DeepLabV3(num_classes=num_classes, width=width)


# ---------------------------------------------------------------------------
# U-Net (mmseg UNet style: conv-BN-ReLU x2, maxpool down, bilinear upsample + conv up)
# ---------------------------------------------------------------------------

class DoubleConv(nn.Sequential):
    """Two conv3x3-BN-ReLU."""

    def __init__(self, in_channels, out_channels):
        super().__init__(ConvModule(in_channels, out_channels, 3, padding=1),
                         ConvModule(out_channels, out_channels, 3, padding=1))


class UpBlock(nn.Module):
    """Decoder step: upsample x2 (F.interpolate bilinear) - 1x1 conv, cat with skip, DoubleConv."""

    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__()
        self.reduce = ConvModule(in_channels, skip_channels, 1)
        self.conv = DoubleConv(2 * skip_channels, out_channels)

    def forward(self, skip, x):
        x = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)
        x = self.reduce(x)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net with three downsamplings, skip concatenations and a 1x1 classifier."""

    def __init__(self, num_classes=2, width=8, in_channels=3):
        super().__init__()
        w = width
        self.enc1 = DoubleConv(in_channels, w)
        self.enc2 = DoubleConv(w, 2 * w)
        self.enc3 = DoubleConv(2 * w, 4 * w)
        self.enc4 = DoubleConv(4 * w, 8 * w)
        self.pool = nn.MaxPool2d(2)
        self.up3 = UpBlock(8 * w, 4 * w, 4 * w)
        self.up2 = UpBlock(4 * w, 2 * w, 2 * w)
        self.up1 = UpBlock(2 * w, w, w)
        self.conv_seg = nn.Conv2d(w, num_classes, kernel_size=1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        e4 = self.enc4(self.pool(e3))
        d3 = self.up3(e3, e4)
        d2 = self.up2(e2, d3)
        d1 = self.up1(e1, d2)
        return self.conv_seg(d1)


def unet(num_classes=2, width=8):
    """U-Net segmentation (64x64 input)."""
    return UNet(num_classes=num_classes, width=width)


# ---------------------------------------------------------------------------
# YOLOv3 (mmdet Darknet + YOLOV3Neck + YOLOV3Head, reduced)
# ---------------------------------------------------------------------------

class DarkConv(nn.Sequential):
    """Darknet conv unit: conv (no bias) - BN - LeakyReLU(0.1)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                      padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(negative_slope=0.1, inplace=True))


class DarkResBlock(nn.Module):
    """Darknet residual: 1x1 (half) - 3x3, added to the input."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = DarkConv(channels, channels // 2, 1)
        self.conv2 = DarkConv(channels // 2, channels, 3)

    def forward(self, x):
        return x + self.conv2(self.conv1(x))


class Darknet(nn.Module):
    """Darknet-53 layout (reduced: four stride-2 stages, one residual block each); returns the
    last three stages' maps (strides 4, 8, 16 of the input)."""

    def __init__(self, width=8):
        super().__init__()
        w = width
        self.conv1 = DarkConv(3, w, 3)
        chans = [w, 2 * w, 4 * w, 8 * w, 16 * w]
        self.stages = nn.ModuleList()
        for i in range(4):
            self.stages.append(nn.Sequential(DarkConv(chans[i], chans[i + 1], 3, stride=2),
                                             DarkResBlock(chans[i + 1])))
        self.out_channels = chans[2:]

    def forward(self, x):
        x = self.conv1(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 1:
                outs.append(x)
        return outs


class DetectionBlock(nn.Sequential):
    """YOLOv3 neck block: 1x1 - 3x3 - 1x1 - 3x3 - 1x1."""

    def __init__(self, in_channels, out_channels):
        double = out_channels * 2
        super().__init__(DarkConv(in_channels, out_channels, 1), DarkConv(out_channels, double, 3),
                         DarkConv(double, out_channels, 1), DarkConv(out_channels, double, 3),
                         DarkConv(double, out_channels, 1))


class YOLOv3(nn.Module):
    """YOLOv3: Darknet, neck with nearest x2 upsampling + cat, 3x3 + 1x1 heads at three scales."""

    def __init__(self, num_classes=2, width=8, num_anchors=3):
        super().__init__()
        self.backbone = Darknet(width)
        c3, c4, c5 = self.backbone.out_channels
        self.detect1 = DetectionBlock(c5, c5 // 2)
        self.conv1 = DarkConv(c5 // 2, c4 // 2, 1)
        self.detect2 = DetectionBlock(c4 + c4 // 2, c4 // 2)
        self.conv2 = DarkConv(c4 // 2, c3 // 2, 1)
        self.detect3 = DetectionBlock(c3 + c3 // 2, c3 // 2)
        out_ch = num_anchors * (5 + num_classes)
        self.convs_bridge = nn.ModuleList([DarkConv(c, 2 * c, 3) for c in (c5 // 2, c4 // 2, c3 // 2)])
        self.convs_pred = nn.ModuleList([nn.Conv2d(2 * c, out_ch, 1) for c in (c5 // 2, c4 // 2, c3 // 2)])

    def forward(self, x):
        x3, x4, x5 = self.backbone(x)
        n1 = self.detect1(x5)
        t = F.interpolate(self.conv1(n1), scale_factor=2, mode='nearest')
        n2 = self.detect2(torch.cat((t, x4), 1))
        t = F.interpolate(self.conv2(n2), scale_factor=2, mode='nearest')
        n3 = self.detect3(torch.cat((t, x3), 1))
        return tuple(pred(bridge(f)) for f, bridge, pred in zip((n1, n2, n3), self.convs_bridge, self.convs_pred))


def yolov3(num_classes=2, width=4):
    """YOLOv3-style detector (64x64 input), three output maps (coarse to fine)."""
    return YOLOv3(num_classes=num_classes, width=width)


# ---------------------------------------------------------------------------
# GANomaly (DCGAN encoder / decoder; legodnn cv_task/anomaly_detection)
# ---------------------------------------------------------------------------

class DCGANEncoder(nn.Module):
    """DCGAN encoder: conv4x4 s2 + LeakyReLU(0.2), then conv4x4 s2 + BN + LeakyReLU to 4x4,
    final conv4x4 to nz x 1 x 1."""

    def __init__(self, isize=32, nz=16, nc=3, ndf=8):
        super().__init__()
        main = nn.Sequential()
        main.add_module('initial-conv', nn.Conv2d(nc, ndf, 4, 2, 1, bias=False))
        main.add_module('initial-relu', nn.LeakyReLU(0.2, inplace=True))
        csize, cndf = isize // 2, ndf
        while csize > 4:
            main.add_module('pyramid-%d-conv' % cndf, nn.Conv2d(cndf, cndf * 2, 4, 2, 1, bias=False))
            main.add_module('pyramid-%d-bn' % (cndf * 2), nn.BatchNorm2d(cndf * 2))
            main.add_module('pyramid-%d-relu' % (cndf * 2), nn.LeakyReLU(0.2, inplace=True))
            cndf *= 2
            csize //= 2
        main.add_module('final-conv', nn.Conv2d(cndf, nz, 4, 1, 0, bias=False))
        self.main = main

    def forward(self, x):
        return self.main(x)


class DCGANDecoder(nn.Module):
    """DCGAN decoder: ConvTranspose 4x4 (1x1 -> 4x4) + BN + ReLU, ConvTranspose 4x4 s2 p1
    + BN + ReLU up the pyramid, final ConvTranspose + Tanh."""

    def __init__(self, isize=32, nz=16, nc=3, ngf=8):
        super().__init__()
        cngf, tisize = ngf // 2, 4
        while tisize != isize:
            cngf *= 2
            tisize *= 2
        main = nn.Sequential()
        main.add_module('initial-convt', nn.ConvTranspose2d(nz, cngf, 4, 1, 0, bias=False))
        main.add_module('initial-bn', nn.BatchNorm2d(cngf))
        main.add_module('initial-relu', nn.ReLU(True))
        csize = 4
        while csize < isize // 2:
            main.add_module('pyramid-%d-convt' % cngf, nn.ConvTranspose2d(cngf, cngf // 2, 4, 2, 1, bias=False))
            main.add_module('pyramid-%d-bn' % (cngf // 2), nn.BatchNorm2d(cngf // 2))
            main.add_module('pyramid-%d-relu' % (cngf // 2), nn.ReLU(True))
            cngf //= 2
            csize *= 2
        main.add_module('final-convt', nn.ConvTranspose2d(cngf, nc, 4, 2, 1, bias=False))
        main.add_module('final-tanh', nn.Tanh())
        self.main = main

    def forward(self, x):
        return self.main(x)


class GANomaly(nn.Module):
    """GANomaly generator: encoder1 -> latent_i -> decoder -> gen_imag -> encoder2 -> latent_o."""

    def __init__(self, isize=32, nz=16, nc=3, width=8):
        super().__init__()
        self.encoder1 = DCGANEncoder(isize, nz, nc, width)
        self.decoder = DCGANDecoder(isize, nz, nc, width)
        self.encoder2 = DCGANEncoder(isize, nz, nc, width)

    def forward(self, x):
        latent_i = self.encoder1(x)
        gen_imag = self.decoder(latent_i)
        latent_o = self.encoder2(gen_imag)
        return gen_imag, latent_i, latent_o


def ganomaly(width=8, nz=16, isize=32):
    """GANomaly anomaly-detection generator (32x32 input); returns (gen_imag, latent_i, latent_o)."""
    return GANomaly(isize=isize, nz=nz, width=width)


# ---------------------------------------------------------------------------
# Pose estimation (mmpose DeepPose and SimpleBaseline / TopdownHeatmapSimpleHead)
# ---------------------------------------------------------------------------

class DeepPose(nn.Module):
    """DeepPose: ResNet-18 backbone, global average pooling neck, Linear regression to
    (N, K, 2) keypoint coordinates."""

    def __init__(self, num_joints=5, width=8):
        super().__init__()
        self.backbone = ResNetBackbone(width)
        self.gap = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.backbone.out_channels, num_joints * 2)

    def forward(self, img):
        x = self.backbone(img)
        x = self.gap(x)
        x = x.view(x.size(0), -1)
        output = self.fc(x)
        N, C = output.shape
        return output.reshape([N, C // 2, 2])


def deeppose_resnet18(num_joints=5, width=4):
    """DeepPose keypoint regression (64x64 input)."""
    return DeepPose(num_joints=num_joints, width=width)


class SimpleBaseline(nn.Module):
    """SimpleBaselines: ResNet-18 backbone, three ConvTranspose2d(4, s2, p1)-BN-ReLU, 1x1 conv
    to K heatmaps."""

    def __init__(self, num_joints=5, width=8, deconv_channels=16):
        super().__init__()
        self.backbone = ResNetBackbone(width)
        layers = []
        in_ch = self.backbone.out_channels
        for _ in range(3):
            layers += [nn.ConvTranspose2d(in_ch, deconv_channels, kernel_size=4, stride=2, padding=1,
                                          output_padding=0, bias=False),
                       nn.BatchNorm2d(deconv_channels),
                       nn.ReLU(inplace=True)]
            in_ch = deconv_channels
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(deconv_channels, num_joints, kernel_size=1, stride=1, padding=0)

    def forward(self, img):
        return self.final_layer(self.deconv_layers(self.backbone(img)))


def simplebaseline_resnet18(num_joints=5, width=4):
    """SimpleBaselines heatmap pose estimation (64x64 input -> 16x16 heatmaps)."""
    return SimpleBaseline(num_joints=num_joints, width=width)


# ---------------------------------------------------------------------------
# Action recognition (mmaction Recognizer2D with TSNHead / TRNHead)
# ---------------------------------------------------------------------------

class TSN(nn.Module):
    """TSN: frames (N*num_segs, 3, H, W) through a ResNet-18, average pool, reshape to
    (N, num_segs, C), mean consensus, dropout, view, Linear."""

    def __init__(self, num_classes=10, num_segs=8, width=8):
        super().__init__()
        self.num_segs = num_segs
        self.backbone = ResNetBackbone(width)
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=0.4)
        self.fc_cls = nn.Linear(self.backbone.out_channels, num_classes)

    def forward(self, imgs):
        x = self.backbone(imgs)
        x = self.avg_pool(x)
        x = x.reshape((-1, self.num_segs) + x.shape[1:])
        x = x.mean(dim=1, keepdim=True)           # AvgConsensus
        x = x.squeeze(1)
        x = self.dropout(x)
        x = x.view(x.size(0), -1)
        return self.fc_cls(x)


def tsn_resnet18(num_classes=10, num_segs=8, width=4):
    """TSN over num_segs frames (input (N*num_segs, 3, 32, 32))."""
    return TSN(num_classes=num_classes, num_segs=num_segs, width=width)


class RelationModule(nn.Module):
    """TRN single-scale relation: view (N, segs*hidden), ReLU-Linear-ReLU-Linear."""

    def __init__(self, hidden_dim, num_segments, num_classes):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.num_segments = num_segments
        bottleneck_dim = 32
        self.classifier = nn.Sequential(
            nn.ReLU(),
            nn.Linear(self.num_segments * self.hidden_dim, bottleneck_dim),
            nn.ReLU(),
            nn.Linear(bottleneck_dim, num_classes))

    def forward(self, x):
        x = x.view(x.size(0), -1)
        return self.classifier(x)


class TRN(nn.Module):
    """TRN: frames through a ResNet-18, average pool, flatten, per-frame Linear to hidden,
    view (N, num_segs, hidden), relation MLP over the frames."""

    def __init__(self, num_classes=10, num_segs=8, width=8, hidden_dim=16):
        super().__init__()
        self.num_segs = num_segs
        self.backbone = ResNetBackbone(width)
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=0.5)
        self.fc_cls = nn.Linear(self.backbone.out_channels, hidden_dim)
        self.consensus = RelationModule(hidden_dim, num_segs, num_classes)

    def forward(self, imgs):
        x = self.backbone(imgs)
        x = self.avg_pool(x)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        x = self.fc_cls(x)
        x = x.view((-1, self.num_segs) + x.size()[1:])
        return self.consensus(x)


def trn_resnet18(num_classes=10, num_segs=8, width=4):
    """TRN over num_segs frames (input (N*num_segs, 3, 32, 32))."""
    return TRN(num_classes=num_classes, num_segs=num_segs, width=width)


# ---------------------------------------------------------------------------
# Registry: fixture name -> (builder, list of input shapes)
# ---------------------------------------------------------------------------

MODELS = {
    'resnet18': (resnet18, [(1, 3, 32, 32)]),
    'mobilenetv2': (mobilenetv2, [(1, 3, 32, 32)]),
    'resnext29': (resnext29, [(1, 3, 32, 32)]),
    'inceptionv3': (inceptionv3, [(1, 3, 32, 32)]),
    'wideresnet': (wideresnet, [(1, 3, 32, 32)]),
    'ran': (ran, [(1, 3, 32, 32)]),
    'cbam_resnet18': (cbam_resnet18, [(1, 3, 32, 32)]),
    'senet18': (senet18, [(1, 3, 32, 32)]),
    'vgg11_bn': (vgg11_bn, [(1, 3, 32, 32)]),
    'fcn': (fcn_resnet18, [(1, 3, 64, 64)]),
    'deeplabv3': (deeplabv3_resnet18, [(1, 3, 64, 64)]),
    'unet': (unet, [(1, 3, 64, 64)]),
    'yolov3': (yolov3, [(1, 3, 64, 64)]),
    'ganomaly': (ganomaly, [(1, 3, 32, 32)]),
    'deeppose': (deeppose_resnet18, [(1, 3, 64, 64)]),
    'simplebaseline': (simplebaseline_resnet18, [(1, 3, 64, 64)]),
    'tsn': (tsn_resnet18, [(8, 3, 32, 32)]),
    'trn': (trn_resnet18, [(8, 3, 32, 32)]),
}
