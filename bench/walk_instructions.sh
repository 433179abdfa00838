#!/bin/sh
# Host instructions per x86 page walk (4-level, 4 KiB pages, warm tables),
# counted by callgrind: bench_walk performs N and then 2N walks after the
# same setup, and the difference divided by N is the cost of one walk,
# free of setup and start-up costs.
#   bench/walk_instructions.sh BUILD_DIR
# Prints:  walk/4level_4k_instructions: <n> instructions
set -eu
build=${1:?usage: walk_instructions.sh BUILD_DIR}
bin=$build/bench/bench_walk
n=${WALK_INSTRUCTIONS_N:-20000}
if ! command -v valgrind >/dev/null 2>&1; then
  echo "bench: walk_instructions.sh needs valgrind (scripts/install-deps.sh bench)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Total instructions (Ir) of one run of N walks.
instructions() {
  valgrind --tool=callgrind --callgrind-out-file="$tmp/out.$1" "$bin" --callgrind-kernel "$1" \
    >/dev/null 2>"$tmp/log.$1" || { cat "$tmp/log.$1" >&2; exit 1; }
  awk '/^(summary|totals):/ { print $2; exit }' "$tmp/out.$1"
}

one=$(instructions "$n")
two=$(instructions $((2 * n)))
awk -v a="$one" -v b="$two" -v n="$n" \
  'BEGIN { printf "walk/4level_4k_instructions: %.0f instructions\n", (b - a) / n }'
