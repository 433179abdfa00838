#!/bin/sh
# `vmmu run --max-insns N`: a guest that needs more than N instructions on a
# vCPU fails with the limit's line; one that needs N passes.
#   max_insns.sh VMMU HELLO.elf
set -u
vmmu=$1 elf=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
"$vmmu" run --stats "$elf" >"$tmp/out" || { echo "FAIL: the guest does not pass"; exit 1; }
n=$(awk '/^instructions:/ { print $2 }' "$tmp/out")
[ -n "$n" ] && [ "$n" -gt 1000 ] || { echo "FAIL: no instruction count: $(cat "$tmp/out")"; exit 1; }
fail=0
for less in 1 100 255; do
    "$vmmu" run --max-insns $((n - less)) "$elf" >/dev/null 2>"$tmp/err"
    st=$?
    if [ $st -ne 125 ] || ! grep -q "reached the instruction limit ($((n - less)))" "$tmp/err"; then
        echo "FAIL: $n instructions under --max-insns $((n - less)): status $st, $(cat "$tmp/err")"
        fail=1
    fi
done
"$vmmu" run --max-insns "$n" "$elf" >/dev/null 2>"$tmp/err" ||
    { echo "FAIL: $n instructions under --max-insns $n: $(cat "$tmp/err")"; fail=1; }
exit $fail
