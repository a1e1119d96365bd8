#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   1. install dependencies, build, run every test (unit tests and the
#      PyTorch fixtures) under CTest;
#   2. rebuild with AddressSanitizer + UBSan and run the suite again;
#   3. build without oneDNN (the kernels an ARM board gets: our Winograd,
#      im2col + BLAS) and run the whole suite on them;
#   4. fuzz the ONNX importer for a bounded time (FUZZ_SECONDS, default 60);
#   5. cross-build for aarch64 and run the core and op tests under qemu
#      (scripts/check-arm.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

echo "== build and test (RelWithDebInfo)"
BUILD_DIR=build scripts/build.sh
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
BUILD_DIR=build-asan scripts/build.sh -DCMAKE_BUILD_TYPE=Debug -DLEGO_SANITIZE=ON
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

echo "== without oneDNN (the portable kernels, as on ARM boards)"
BUILD_DIR=build-portable scripts/build.sh -DLEGO_DNNL=OFF
ctest --test-dir build-portable --output-on-failure -j "$jobs"

echo "== fuzzing the ONNX importer for ${FUZZ_SECONDS:-60} s"
CC=clang BUILD_DIR=build-fuzz scripts/build.sh -DCMAKE_BUILD_TYPE=Debug -DLEGO_FUZZ=ON
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cp tests/data/ops/*.onnx "$corpus"/ 2>/dev/null || true
ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 \
  build-fuzz/fuzz/fuzz_onnx_import "$corpus" -max_total_time="${FUZZ_SECONDS:-60}" \
  -rss_limit_mb=4096 -max_len=65536 -print_final_stats=0 2>&1 | tail -n 3
echo "fuzz: 1 passed, 0 failed"

echo "== aarch64 build (cross-compiled; core and op tests under qemu)"
scripts/check-arm.sh
