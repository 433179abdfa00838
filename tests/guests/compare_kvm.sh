#!/bin/sh
# Run a guest on both backends and compare the two consoles line by line.
#
#   compare_kvm.sh VMMU GUEST.elf VCPUS BASE [RUN-OPTION...]
#
# The KVM run comes first: without a usable /dev/kvm `vmmu run --backend
# kvm` says why in one line and exits with 77 (VMMU_KVM_SKIP is set here),
# as does a guest that finds this KVM without what it tests (RT_EXIT_SKIP);
# CTest reports either as skipped, and the KVM transcript says why.  Otherwise both runs must exit with 0 and
# print the same lines, except the lines BASE.VCPUS.expected (or
# BASE.expected) marks with a leading "~" (timings, addresses): those match
# when their text up to the first ':' is the same.  A difference prints
# both transcripts.
#
# KVM_VMMU_ONLY="TEXT:|TEXT:" names lines that differ by design: how many
# vmmu-only checks a guest ran, or a part this KVM cannot run; they match
# by their text up to ':' too, and the test says so.
set -u
vmmu=$1 elf=$2 vcpus=$3 base=$4
shift 4
expected=$base.$vcpus.expected
[ -f "$expected" ] || expected=$base.expected
kvm=$(mktemp) || exit 1
emu=$(mktemp) || exit 1
trap 'rm -f "$kvm" "$emu"' EXIT
VMMU_KVM_SKIP=1 "$vmmu" run --backend kvm --vcpus "$vcpus" "$@" "$elf" >"$kvm"
kstatus=$?
if [ "$kstatus" -eq 77 ]; then
    cat "$kvm"
    exit 77
fi
"$vmmu" run --backend vmmu --vcpus "$vcpus" --max-insns 2000000000 "$@" "$elf" >"$emu"
estatus=$?
[ -n "${KVM_VMMU_ONLY:-}" ] && echo "note: the lines \"$KVM_VMMU_ONLY\" differ by design between the backends; they are compared up to their ':'"
bad=0
if ! awk -v expfile="$expected" -v kvmfile="$kvm" -v only="${KVM_VMMU_ONLY:-}" '
    BEGIN { n = 0; while ((getline l < expfile) > 0) want[++n] = l
            k = 0; while ((getline l < kvmfile) > 0) kv[++k] = l
            nv = split(only, keys, "|"); for (j = 1; j <= nv; j++) vonly[keys[j]] = 1 }
    function key(s,    j) { j = index(s, ":"); return j ? substr(s, 1, j) : s }
    { em[++e] = $0 }
    END {
        bad = 0
        for (i = 1; i <= (k > e ? k : e); i++) {
            a = (i <= e) ? em[i] : "<end>"; b = (i <= k) ? kv[i] : "<end>"
            timing = (i <= n && substr(want[i], 1, 1) == "~") || (key(a) in vonly)
            ok = timing ? (key(a) == key(b)) : (a == b)
            if (!ok) { printf "line %d: vmmu \"%s\"\n        kvm  \"%s\"\n", i, a, b; bad = 1 }
        }
        exit bad
    }' "$emu"; then
    bad=1
fi
if [ "$kstatus" -ne 0 ] || [ "$estatus" -ne 0 ]; then
    echo "exit status: vmmu $estatus, kvm $kstatus"
    bad=1
fi
if [ "$bad" -ne 0 ]; then
    echo "--- $elf on $vcpus vCPUs, vmmu backend:"
    cat "$emu"
    echo "--- the same on the kvm backend:"
    cat "$kvm"
    exit 1
fi
exit 0
