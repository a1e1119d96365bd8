#!/usr/bin/env bash
# The main job, as far as it exists today: build legodnn, then import a
# bundled PyTorch model (a reduced-width CIFAR ResNet18), describe it and run
# it on an input, checking the result against PyTorch's.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD_DIR=build scripts/build.sh
model=tests/data/models/resnet18.onnx
echo
build/legodnn info "$model"
echo
build/legodnn run "$model" --input tests/data/models/resnet18.in.bin --output /tmp/legodnn-resnet18.out.bin --repeat 20
cmp_tool=build/tests/test_fixture
"$cmp_tool" tests/data/models/resnet18 | sed 's/^/compared with PyTorch: /'
