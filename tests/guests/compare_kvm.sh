#!/bin/sh
# Run a guest on both backends and compare the two consoles line by line.
#
#   compare_kvm.sh VMMU GUEST.elf VCPUS BASE [RUN-OPTION...]
#
# The KVM run comes first: without a usable /dev/kvm `vmmu run --backend
# kvm` says why in one line and exits with 77 (VMMU_KVM_SKIP is set here),
# which CTest reports as skipped.  Otherwise both runs must exit with 0 and
# print the same lines, except the lines BASE.VCPUS.expected (or
# BASE.expected) marks with a leading "~" (timings, addresses): those match
# when their text up to the first ':' is the same.  A difference prints
# both transcripts.
#
# KVM_VMMU_ONLY="TEXT:" names a line that says how many vmmu-only checks a
# guest ran (it differs by design); it matches by its text up to ':' too,
# and the test says so.
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
[ "$kstatus" -eq 77 ] && exit 77
"$vmmu" run --backend vmmu --vcpus "$vcpus" --max-insns 2000000000 "$@" "$elf" >"$emu"
estatus=$?
[ -n "${KVM_VMMU_ONLY:-}" ] && echo "note: the line \"$KVM_VMMU_ONLY\" counts vmmu-only checks; it is compared up to its ':'"
bad=0
if ! awk -v expfile="$expected" -v kvmfile="$kvm" -v only="${KVM_VMMU_ONLY:-}" '
    BEGIN { n = 0; while ((getline l < expfile) > 0) want[++n] = l
            k = 0; while ((getline l < kvmfile) > 0) kv[++k] = l }
    function key(s,    j) { j = index(s, ":"); return j ? substr(s, 1, j) : s }
    { em[++e] = $0 }
    END {
        bad = 0
        for (i = 1; i <= (k > e ? k : e); i++) {
            a = (i <= e) ? em[i] : "<end>"; b = (i <= k) ? kv[i] : "<end>"
            timing = (i <= n && substr(want[i], 1, 1) == "~") || (only != "" && key(a) == only)
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
