#!/usr/bin/env bash
# Configure and build into build/ (Release with debug info). Extra arguments
# go to cmake, e.g. scripts/build.sh -DLEGO_SANITIZE=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BUILD_DIR:-build}
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$dir"
