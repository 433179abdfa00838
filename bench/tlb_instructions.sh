#!/bin/sh
# Host instructions of the software TLB, counted by callgrind.
#
# "Instructions beyond the access itself": each hit kernel runs the same
# loop as the raw kernel (load the next address from a prepared array, load
# 8 bytes from host memory, add them to a sum) but finds the host address
# through the TLB; the figure is (instructions per iteration of the TLB
# loop) - (instructions per iteration of the raw loop, where the host
# address is va + a constant held in a register, folded into the load).
# So it counts everything the translation adds: index, compare, branch,
# addend; the load itself, the loop and the address array are not counted.
#
#   tlb/hit_instructions         the JIT sequence of docs/tlb.md (RORX, AND,
#                                ANDN, CMP, JNE, ADD: BMI1 + BMI2 hosts), view
#                                in registers; skipped on hosts without BMI
#   tlb/hit_probe_instructions   vmmu_tlb_probe() from C, view in registers
#                                (what an interpreter loop compiles to; the
#                                build's compiler, baseline x86-64)
#   tlb/hit_lookup_instructions  vmmu_tlb_lookup() returning a pointer that
#                                the caller tests again (the older form)
#   tlb/miss_warm_instructions   per read that misses and is filled through the
#                                paging-structure caches (whole loop iteration)
#   tlb/miss_warm_2regions_instructions  the same with data pages alternating
#                                between two RAM regions
#   tlb/flush_empty_instructions per vmmu_vcpu_tlb_flush_all() of a vCPU that
#                                holds nothing (call included)
#   bench/tlb_instructions.sh BUILD_DIR
set -eu
build=${1:?usage: tlb_instructions.sh BUILD_DIR}
here=$(dirname "$0")
prog="$build/bench/bench_tlb"
n=${TLB_INSTRUCTIONS_N:-200000}
value() { sh "$here/callgrind_delta.sh" --value "$1" "$prog" --callgrind-kernel "$2"; }
raw=$(value "$n" raw)
lookup=$(value "$n" hit)
probe=$(value "$n" probe)
miss=$(value "${TLB_MISS_INSTRUCTIONS_N:-20000}" miss_warm)
miss2=$(value "${TLB_MISS_INSTRUCTIONS_N:-20000}" miss_warm_2regions)
beyond() { awk -v h="$2" -v r="$raw" -v f="$1" 'BEGIN { printf "%s: %.1f instructions\n", f, h - r }'; }
echo "tlb/raw_loop_instructions: $raw instructions"
if jit=$(value "$n" jit 2>/dev/null); then
  beyond tlb/hit_instructions "$jit"
else
  echo "bench: tlb/hit_instructions skipped: the host lacks BMI1/BMI2" >&2
fi
beyond tlb/hit_probe_instructions "$probe"
beyond tlb/hit_lookup_instructions "$lookup"
echo "tlb/miss_warm_instructions: $miss instructions"
echo "tlb/miss_warm_2regions_instructions: $miss2 instructions"
echo "tlb/flush_empty_instructions: $(value "$n" flush_empty) instructions"
