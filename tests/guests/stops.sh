#!/bin/sh
# The machine stops a guest that can go no further: a triple fault (the
# `triple` guest) and every vCPU halted with nothing to wake it (the
# `allhalt` guest), on 1 and 4 vCPUs.  Each run must print the guest's
# first line, exit with 125 and give the stop's reason in one line on
# stderr.  The same runs on KVM where /dev/kvm works (skipped here
# otherwise: VMMU_KVM_SKIP makes an unusable KVM exit with 77).
#   stops.sh VMMU GUEST_DIR_OF_ELFS
set -u
vmmu=$1 dir=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # backend guest vcpus first-line reason
    VMMU_KVM_SKIP=1 timeout 60 "$vmmu" run --backend "$1" --vcpus "$3" "$dir/$2.elf" \
        >"$tmp/out" 2>"$tmp/err"
    st=$?
    [ "$1" = kvm ] && [ $st -eq 77 ] && { echo "note: $2 on $3 vCPUs: KVM unusable, skipped"; return; }
    if [ $st -ne 125 ] || [ "$(head -n 1 "$tmp/out")" != "$4" ] ||
        [ "$(wc -l <"$tmp/err")" -ne 1 ] || ! grep -q "$5" "$tmp/err"; then
        echo "FAIL: $2 on $3 vCPUs ($1): status $st (want 125), stdout \"$(cat "$tmp/out")\", stderr \"$(cat "$tmp/err")\" (want \"$5\")"
        fail=1
    fi
}
for backend in vmmu kvm; do
    for n in 1 4; do
        check $backend triple $n "triple: an empty IDT, then UD2" "vcpu 0: triple fault"
        check $backend allhalt $n "allhalt: $n vCPUs halt with interrupts off" \
            "every vCPU is halted and none can be woken"
    done
done
# The vmmu backend names the instruction whose event could not be delivered.
"$vmmu" run "$dir/triple.elf" >/dev/null 2>"$tmp/err"
grep -q "triple fault at rip 0x[0-9a-f]* (no exception delivered before it)" "$tmp/err" ||
    { echo "FAIL: the triple fault's line: $(cat "$tmp/err")"; fail=1; }
exit $fail
