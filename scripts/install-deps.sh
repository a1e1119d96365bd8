#!/usr/bin/env bash
# Install the Debian packages legodnn needs to build and test (as root, or
# through sudo). Packages already present are not fetched again, so this is
# fast and works offline on a machine that has them.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --dev    also python3-torch and python3-onnx, used
#                                    only to regenerate the reference fixtures,
#                                    and python3-pulp + coinor-cbc, used only by
#                                    bench/bench_optimizer (the original's ILP)
#   scripts/install-deps.sh --arm    the arm64 cross toolchain, the :arm64
#                                    -dev packages (Debian multiarch) and
#                                    qemu-user, for scripts/check-arm.sh
#   scripts/install-deps.sh --bench  what bench/bench_engines.sh needs besides
#                                    the build: PyTorch, torchvision and onnx
#                                    (Debian's), Node.js and npm (for
#                                    onnxruntime-node, which the script itself
#                                    installs under bench/ from the npm registry)
set -euo pipefail

pkgs=(
  cmake ninja-build gcc clang libclang-rt-14-dev   # build, sanitizers, libFuzzer
  libprotobuf-c-dev protobuf-c-compiler libonnx-dev # ONNX: schema + protobuf-c
  libblis-pthread-dev                               # CBLAS (picks AVX-512 by itself)
  libcjson-dev zlib1g-dev libpng-dev libjpeg-dev    # JSON manifests, gzip datasets, image folders
  nettle-dev                                        # SHA-256 of the block library's files
  dataset-fashion-mnist                             # the bundled default dataset
  gnuplot-nox                                       # `legodnn report --plot`
  libglpk-dev                                       # tests only: MILP cross-check of the optimizer
)
# oneDNN runs inference convolutions where Debian ships it (amd64 only); the
# build falls back to im2col + BLAS without it.
if [[ "$(dpkg --print-architecture 2>/dev/null)" == "amd64" ]]; then
  pkgs+=(libdnnl-dev)
fi
if [[ "${1:-}" == "--dev" ]]; then
  pkgs+=(python3-torch python3-onnx python3-numpy python3-pulp coinor-cbc)
fi
if [[ "${1:-}" == "--arm" ]]; then
  pkgs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user cmake ninja-build protobuf-c-compiler
        libonnx-dev)
  for p in libblis-pthread-dev libprotobuf-c-dev libcjson-dev zlib1g-dev libpng-dev libjpeg-dev nettle-dev; do
    pkgs+=("$p:arm64")
  done
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
    $SUDO dpkg --add-architecture arm64
  fi
fi
if [[ "${1:-}" == "--bench" ]]; then
  pkgs+=(python3-torch python3-torchvision python3-onnx python3-numpy)
  # a Node.js from elsewhere (e.g. NodeSource, npm included) is kept
  if ! command -v npm >/dev/null; then pkgs+=(nodejs npm); fi
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "installing: ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
