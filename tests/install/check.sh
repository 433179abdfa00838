#!/bin/sh
# Installs vmmu from an existing build tree into a temporary prefix and
# builds a small program against it twice: with pkg-config and with CMake's
# find_package(vmmu).  Both programs must run.  Then builds and runs each
# program in examples/ with the build line its comment gives (cc FILE
# $(pkg-config --cflags --libs PACKAGES)), so the examples and their build
# lines work for someone who installed vmmu, not only inside this tree.
# Last, a C++ program that includes every public header.
#   tests/install/check.sh BUILD_DIR
set -eu
build=${1:?usage: check.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$tmp/prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# pkg-config, shared library
cc -std=c11 -Wall -Wextra -Werror "$here/hello.c" -o "$tmp/hello-pc" $(pkg-config --cflags --libs vmmu)
"$tmp/hello-pc" >"$tmp/out-pc"
grep -q "^hello from vmmu" "$tmp/out-pc"

# pkg-config, static library
cc -std=c11 -Wall -Wextra -Werror "$here/hello.c" -o "$tmp/hello-static" \
  $(pkg-config --cflags vmmu) "$tmp/prefix/lib/libvmmu.a" $(pkg-config --static --libs-only-l vmmu | sed 's/-lvmmu//')
"$tmp/hello-static" >/dev/null

# A device model with the client library only (shared, then static)
cc -std=c11 -Wall -Wextra -Werror "$here/dm_only.c" -o "$tmp/dm-only" $(pkg-config --cflags --libs vmmu-dmclient)
"$tmp/dm-only" | grep -q "^connect: VMMU_ESYS"
cc -std=c11 -Wall -Wextra -Werror "$here/dm_only.c" -o "$tmp/dm-only-static" \
  $(pkg-config --cflags vmmu-dmclient) "$tmp/prefix/lib/libvmmu-dmclient.a"
"$tmp/dm-only-static" | grep -q "^connect: VMMU_ESYS"

# CMake package
mkdir -p "$tmp/cm"
cat >"$tmp/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.25)
project(hello C)
find_package(vmmu 0.1 REQUIRED)
add_executable(hello $here/hello.c)
target_link_libraries(hello PRIVATE vmmu::vmmu)
add_executable(hello_static $here/hello.c)
target_link_libraries(hello_static PRIVATE vmmu::vmmu_static)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cm/build" >/dev/null
"$tmp/cm/build/hello" | grep -q "^hello from vmmu"
"$tmp/cm/build/hello_static" | grep -q "^hello from vmmu"
# The examples, as a user builds them: with the packages of the build line
# in each one's comment
for ex in "$here"/../../examples/*.c; do
  name=$(basename "$ex" .c)
  pkgs=$(sed -n 's/^ \*  *cc .*\$(pkg-config --cflags --libs \([^)]*\)).*/\1/p' "$ex" | head -n 1)
  [ -n "$pkgs" ] || { echo "install check: example $name has no build line in its comment"; exit 1; }
  # shellcheck disable=SC2086
  cc -std=c11 -Wall -Wextra -Werror "$ex" -o "$tmp/$name" $(pkg-config --cflags --libs $pkgs)
  "$tmp/$name" >"$tmp/$name.out" || { cat "$tmp/$name.out"; echo "install check: example $name failed"; exit 1; }
done
# C++: every public header compiles as C++11 (pedantic), and the inline hit
# path runs from C++ code
cxx="no C++ compiler (c++): C++ build skipped"
if command -v c++ >/dev/null 2>&1; then
  c++ -std=c++11 -Wall -Wextra -Werror -pedantic "$here/hello.cc" -o "$tmp/hello-cc" \
    $(pkg-config --cflags --libs vmmu vmmu-dmclient)
  "$tmp/hello-cc" >"$tmp/out-cc"
  grep -q "^hello from c++ (translated)" "$tmp/out-cc" || { cat "$tmp/out-cc"; exit 1; }
  cxx="a C++ program"
fi
echo "install check: pkg-config (shared, static) and find_package(vmmu) builds run, a device model on the client library alone, the examples, $cxx"
