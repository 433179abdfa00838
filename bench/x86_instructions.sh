#!/bin/sh
# x86/vmmu_share: the fraction of the reference emulator's host
# instructions spent inside libvmmu while it runs the memory-bound guest,
# counted by callgrind (self cost of every function compiled from src/,
# over the whole run).  The TLB's inline hit path is compiled into the
# emulator, so it counts as the emulator's.
#   bench/x86_instructions.sh BUILD_DIR
set -eu
build=${1:?usage: x86_instructions.sh BUILD_DIR}
src=$(cd "$(dirname "$0")/.." && pwd)/src/
if ! command -v valgrind >/dev/null 2>&1; then
  echo "bench: x86/vmmu_share needs valgrind (scripts/install-deps.sh bench)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$tmp/out" \
  "$build/vmmu" run "$build/guests/bench_memory.elf" >/dev/null 2>"$tmp/log" ||
  { cat "$tmp/log" >&2; exit 1; }
callgrind_annotate --threshold=100 "$tmp/out" 2>/dev/null | awk -v src="$src" '
  /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
  /^ *[0-9,]+ .*:/ && index($0, src) { v = $1; gsub(",", "", v); lib += v }
  END {
    if (total > 0 && lib > 0) printf "x86/vmmu_share: %.1f %%\n", 100 * lib / total
    else { print "bench: x86/vmmu_share: no function from src/ in the profile (build with -g)" > "/dev/stderr"; exit 1 }
  }'
