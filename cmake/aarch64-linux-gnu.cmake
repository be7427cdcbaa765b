# Cross-build fedvigil for arm64 (Raspberry Pi 4/5, Jetson) on a Debian
# host with gcc-aarch64-linux-gnu and the arm64 -dev packages installed
# through multiarch (scripts/deps --arm64):
#
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
#
# Libraries and headers come from Debian's multiarch paths
# (/usr/lib/aarch64-linux-gnu, /usr/include); the C library and the
# compiler's own files from /usr/aarch64-linux-gnu. protoc-c stays the
# host's: it only generates C sources.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)

# Programs (protoc-c) are the host's; libraries, headers and CMake package
# files must be the target's.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# pkg-config must see only the arm64 .pc files, never the host's.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# ctest runs the cross-built test programs through qemu-user. No -L
# prefix: multiarch has put libc6:arm64 and its loader in /lib, where the
# binaries look for them, and qemu-aarch64 7.2 (Debian 12) hangs every
# fork() child when given -L /usr/aarch64-linux-gnu or QEMU_LD_PREFIX
# (test_mqtt forks the broker).
find_program(FV_QEMU_AARCH64 qemu-aarch64)
if(FV_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${FV_QEMU_AARCH64})
endif()
