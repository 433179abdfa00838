#!/bin/sh
# Runs every benchmark in a build tree and prints one line per figure:
#   <part>/<figure>: <value> <unit>
# Each program measures its own baselines in the same run.  Scripts named
# bench/*_instructions.sh count host instructions with callgrind.
#   bench/run.sh BUILD_DIR
set -eu
build=${1:?usage: run.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
status=0
for b in "$build"/bench/bench_*; do
  [ -x "$b" ] || continue
  "$b" || { echo "bench: $(basename "$b") failed" >&2; status=1; }
done
for s in "$here"/*_instructions.sh; do
  [ -f "$s" ] || continue
  sh "$s" "$build" || { echo "bench: $(basename "$s") failed" >&2; status=1; }
done
exit $status
