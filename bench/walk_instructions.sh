#!/bin/sh
# Host instructions per x86 page walk (4-level, 4 KiB pages, warm tables):
# bench_walk's kernel mode performs N walks after the same setup.
#   bench/walk_instructions.sh BUILD_DIR
set -eu
build=${1:?usage: walk_instructions.sh BUILD_DIR}
exec sh "$(dirname "$0")/callgrind_delta.sh" walk/4level_4k_instructions \
  "${WALK_INSTRUCTIONS_N:-20000}" "$build/bench/bench_walk" --callgrind-kernel
