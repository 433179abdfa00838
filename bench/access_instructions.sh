#!/bin/sh
# Host instructions of a probe, counted by callgrind:
#   access/probe_instructions       per inline probe (vmmu_access_probe_hit) of
#                                   an 8-byte read that hits the TLB, beyond a
#                                   plain host load loop over the same data (raw
#                                   kernel): the latch test, the TLB hit and the
#                                   branch to the slow path
#   access/probe_call_instructions  the same through the out-of-line
#                                   vmmu_access_probe() (argument checks, the
#                                   whole result record with its gpa)
#   access/prepare_read_instructions per vmmu_access_prepare() of 64 bytes on
#                                   warm pages (some crossing a page) and one
#                                   8-byte vmmu_prepared_read() through it,
#                                   loop included
#   access/fill_mmio_instructions   per vmmu_tlb_fill() of an 8-byte write to
#                                   an MMIO page whose TLB entry is filled (a
#                                   JIT's slow path at each access to a device
#                                   register), vCPU online, loop included
#   bench/access_instructions.sh BUILD_DIR
set -eu
build=${1:?usage: access_instructions.sh BUILD_DIR}
here=$(dirname "$0")
prog="$build/bench/bench_access"
n=${ACCESS_INSTRUCTIONS_N:-200000}
value() { sh "$here/callgrind_delta.sh" --value "$1" "$prog" --callgrind-kernel "$2"; }
probe=$(value "$n" probe)
call=$(value "$n" probe_call)
raw=$(value "$n" raw)
prep=$(value "${ACCESS_PREPARE_N:-20000}" prepare)
mmio=$(value "${ACCESS_PREPARE_N:-20000}" fill_mmio_online)
awk -v p="$probe" -v c="$call" -v r="$raw" -v q="$prep" -v m="$mmio" 'BEGIN {
    printf "access/probe_loop_instructions: %.1f instructions\n", p
    printf "access/probe_instructions: %.1f instructions\n", p - r
    printf "access/probe_call_instructions: %.1f instructions\n", c - r
    printf "access/prepare_read_instructions: %.1f instructions\n", q
    printf "access/fill_mmio_instructions: %.1f instructions\n", m }'
