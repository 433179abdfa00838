#!/bin/sh
# Host instructions per vmmu_p2m_lookup() over the PC-like 4 GiB layout
# (loop overhead included: a load of a precomputed address and an add).
#   bench/p2m_instructions.sh BUILD_DIR
set -eu
build=${1:?usage: p2m_instructions.sh BUILD_DIR}
exec sh "$(dirname "$0")/callgrind_delta.sh" p2m/lookup_instructions \
  "${P2M_INSTRUCTIONS_N:-200000}" "$build/bench/bench_p2m" --callgrind-kernel
