#!/bin/sh
# `vmmu run --dm-listen SOCKET`: the device model is started separately and
# connects to the machine; the dma guest's transcript must be the same as
# with the device model spawned by the machine.
#
#   dm_listen.sh VMMU VMMU-DMDEV DMA.elf BASE
set -u
vmmu=$1 dmdev=$2 elf=$3 base=$4
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
sock=$tmp/dm.sock
"$vmmu" run --vcpus 2 --dm-listen "$sock" "$elf" >"$tmp/out" 2>"$tmp/err" &
vm=$!
i=0
while [ ! -S "$sock" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -S "$sock" ]; then
    echo "FAIL: vmmu run never listened on $sock"; cat "$tmp/err"; kill $vm; exit 1
fi
"$dmdev" --socket "$sock" --mmio-base 0xfe000000 &
dm=$!
wait $vm
status=$?
wait $dm
dmstatus=$?
fail=0
if [ $status -ne 0 ] || ! cmp -s "$tmp/out" "$base.expected"; then
    echo "FAIL: guest status $status; console:"; cat "$tmp/out"; cat "$tmp/err"; fail=1
fi
[ $dmstatus -eq 0 ] || { echo "FAIL: the device model exited with $dmstatus"; fail=1; }
grep -q "waiting for a device model on" "$tmp/err" || { echo "FAIL: no waiting line"; fail=1; }
# Nobody connects: the run fails with one clear line (after its timeout,
# so only the argument errors are checked here).
"$vmmu" run --dm-listen "$sock" --dma "$elf" >/dev/null 2>"$tmp/err2"
[ $? -eq 2 ] && grep -q "one device model" "$tmp/err2" || { echo "FAIL: --dm-listen with --dma accepted"; fail=1; }
"$vmmu" run --dm-listen /nonexistent-dir/sock "$elf" >/dev/null 2>"$tmp/err3"
[ $? -eq 125 ] && grep -q "dm-listen /nonexistent-dir/sock" "$tmp/err3" || { echo "FAIL: unbindable socket: $(cat "$tmp/err3")"; fail=1; }
exit $fail
