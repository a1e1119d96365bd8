# Cross-compiling for 64-bit ARM boards (Debian multiarch: gcc-aarch64-linux-gnu
# and the :arm64 -dev packages; scripts/install-deps.sh --arm installs them).
# Tests run under qemu-aarch64. oneDNN is not packaged for arm64, so the
# portable kernels are what this build has (-DLEGO_DNNL defaults to OFF here).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;/usr/aarch64-linux-gnu)
# programs (protoc-c) from the build machine; headers and libraries only
# from the arm64 multiarch directories (and the architecture-free /usr/include)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_IGNORE_PATH /usr/lib/x86_64-linux-gnu /usr/include/x86_64-linux-gnu)
