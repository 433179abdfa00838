#!/bin/sh
# The late_ipis guest on KVM, many times, with 12 vCPUs: vCPU 0 exits
# while the others keep sending it IPIs, so some IPIs come after its
# thread ended and was joined.  glibc keeps no freed thread stacks here
# (GLIBC_TUNABLES), so signalling a joined vCPU thread reads unmapped
# memory and crashes; otherwise that mistake would go unseen.  Each run
# must exit with 0 and print the guest's line.  Skipped (77) where KVM
# cannot be used.
#   late_ipis.sh VMMU LATE_IPIS.elf [RUNS]
set -u
vmmu=$1 elf=$2 runs=${3:-20}
out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT
i=0
while [ "$i" -lt "$runs" ]; do
    i=$((i + 1))
    GLIBC_TUNABLES=glibc.pthread.stack_cache_size=0 VMMU_KVM_SKIP=1 \
        "$vmmu" run --backend kvm --vcpus 12 "$elf" >"$out" 2>&1
    st=$?
    [ $st -eq 77 ] && { cat "$out"; exit 77; }
    if [ $st -ne 0 ] || ! grep -q "^late_ipis: vCPU 0 exits while 11 other" "$out"; then
        echo "FAIL: run $i of $runs: status $st (want 0), output:"
        cat "$out"
        exit 1
    fi
done
echo "late_ipis: $runs runs on KVM, each exited with 0"
