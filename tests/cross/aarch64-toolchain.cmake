# CMake toolchain file for Debian's aarch64 cross compiler (g++-aarch64-linux-gnu), used by
# tests/cross/CMakeLists.txt through tools/test_aarch64.sh. Binaries run under qemu-user:
# CMAKE_CROSSCOMPILING_EMULATOR makes ctest (and doctest_discover_tests at build time) run them as
# `qemu-aarch64 -L / <binary>`, i.e. on Debian's multiarch arm64 runtime (libc6:arm64,
# libstdc++6:arm64, libtbb12:arm64 in /lib and /usr/lib/aarch64-linux-gnu), which libtbb-dev:arm64
# installs anyway. Not `-L /usr/aarch64-linux-gnu`: once libc6:arm64 is installed, that prefix
# runs the cross toolchain's ld.so (glibc 2.36-8cross1) with the multiarch libc.so.6 (found first
# in /lib/aarch64-linux-gnu, a newer Debian revision): the two disagree on ld.so's private data
# and the first pthread_create spins forever in glibc's stack-cache walk (TBB, std::thread).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
find_program(DDPM_QEMU_AARCH64 qemu-aarch64 REQUIRED)
set(CMAKE_CROSSCOMPILING_EMULATOR ${DDPM_QEMU_AARCH64} -L /)
# Debian multiarch: aarch64 packages (libtbb-dev:arm64) install into / with lib/aarch64-linux-gnu
# library directories, so no CMAKE_FIND_ROOT_PATH; find_package picks the arch-qualified
# directories through CMAKE_LIBRARY_ARCHITECTURE, which CMake derives from this compiler.
