#!/bin/sh
# Host instructions of the software TLB, counted by callgrind:
#   tlb/hit_instructions         per 8-byte guest read that hits, beyond the
#                                plain host load loop (raw kernel) over the same data
#   tlb/miss_warm_instructions   per read that misses and is filled through the
#                                paging-structure caches (whole loop iteration)
#   bench/tlb_instructions.sh BUILD_DIR
set -eu
build=${1:?usage: tlb_instructions.sh BUILD_DIR}
here=$(dirname "$0")
prog="$build/bench/bench_tlb"
n=${TLB_INSTRUCTIONS_N:-200000}
value() { sh "$here/callgrind_delta.sh" x "$1" "$prog" --callgrind-kernel "$2" | awk '{ print $2 }'; }
hit=$(value "$n" hit)
raw=$(value "$n" raw)
miss=$(value "${TLB_MISS_INSTRUCTIONS_N:-20000}" miss_warm)
awk -v h="$hit" -v r="$raw" 'BEGIN { printf "tlb/hit_loop_instructions: %.1f instructions\ntlb/raw_loop_instructions: %.1f instructions\ntlb/hit_instructions: %.1f instructions\n", h, r, h - r }'
echo "tlb/miss_warm_instructions: $miss instructions"
