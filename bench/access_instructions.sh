#!/bin/sh
# Host instructions of a probe, counted by callgrind:
#   access/probe_instructions   per vmmu_access_probe() of an 8-byte read that
#                               hits the TLB, beyond a plain host load loop over
#                               the same data (raw kernel)
#   bench/access_instructions.sh BUILD_DIR
set -eu
build=${1:?usage: access_instructions.sh BUILD_DIR}
here=$(dirname "$0")
prog="$build/bench/bench_access"
n=${ACCESS_INSTRUCTIONS_N:-200000}
value() { sh "$here/callgrind_delta.sh" x "$1" "$prog" --callgrind-kernel "$2" | awk '{ print $2 }'; }
probe=$(value "$n" probe)
raw=$(value "$n" raw)
awk -v p="$probe" -v r="$raw" 'BEGIN { printf "access/probe_loop_instructions: %.1f instructions\naccess/probe_instructions: %.1f instructions\n", p, p - r }'
