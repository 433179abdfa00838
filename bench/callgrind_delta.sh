#!/bin/sh
# Host instructions per operation, counted by callgrind: runs a benchmark's
# kernel mode with N and then 2N operations after the same setup; the
# difference divided by N is the cost of one operation, free of setup and
# start-up costs (and repeatable: callgrind counts, it does not time).
#   bench/callgrind_delta.sh FIGURE N PROGRAM [ARGS...]
# runs `PROGRAM ARGS... N` and `PROGRAM ARGS... 2N`, then prints
#   FIGURE: <n> instructions
# or, with FIGURE given as --value, just <n> (for scripts that compute
# with it).  A count that fails stops with a message and status 1.
set -eu
figure=${1:?usage: callgrind_delta.sh FIGURE|--value N PROGRAM [ARGS...]}
n=${2:?usage: callgrind_delta.sh FIGURE N PROGRAM [ARGS...]}
shift 2
if ! command -v valgrind >/dev/null 2>&1; then
  echo "bench: $figure needs valgrind (scripts/install-deps.sh bench)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Total instructions (Ir) of `PROGRAM ARGS... C` for C = $1.
instructions_for() {
  c=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$tmp/out.$c" "$@" "$c" \
    >/dev/null 2>"$tmp/log.$c" || { cat "$tmp/log.$c" >&2; exit 1; }
  total=$(awk '/^(summary|totals):/ { print $2; exit }' "$tmp/out.$c")
  case $total in
    ''|*[!0-9]*)
      # valgrind ran but counted nothing we can read (a debug-info format
      # it does not know, say): say so rather than print an empty figure.
      cat "$tmp/log.$c" >&2
      echo "bench: $figure: callgrind gave no instruction total" >&2
      exit 1 ;;
  esac
  echo "$total"
}
one=$(instructions_for "$n" "$@")
two=$(instructions_for $((2 * n)) "$@")
awk -v a="$one" -v b="$two" -v n="$n" -v f="$figure" \
  'BEGIN { if (f == "--value") printf "%.1f\n", (b - a) / n;
           else printf "%s: %.1f instructions\n", f, (b - a) / n }'
