#!/bin/sh
# `vmmu run --backend`: refused arguments, and what the KVM backend does
# where /dev/kvm cannot be used (one line; exit 125, or 77 with
# VMMU_KVM_SKIP set) or can (the guest runs and exits with 0).
#
# Then compare_kvm.sh itself, with a stand-in for the KVM side (the vmmu
# backend again, once faithful and once printing an extra line): the same
# transcripts pass, a difference fails and shows both.
#
#   kvm_args.sh VMMU HELLO.elf HELLO-BASE COMPARE_KVM.sh
set -u
vmmu=$1 elf=$2 base=$3 compare=$4
err=$(mktemp) || exit 1
fake=$(mktemp) || exit 1
trap 'rm -f "$err" "$fake"' EXIT
fail=0
expect() { # STATUS MESSAGE-SUBSTRING ARGS...
    want=$1 msg=$2
    shift 2
    "$@" >/dev/null 2>"$err"
    got=$?
    if [ "$got" -ne "$want" ] || { [ -n "$msg" ] && ! grep -qF -- "$msg" "$err"; }; then
        echo "FAIL: $*: status $got (want $want), stderr:"
        cat "$err"
        echo "  (want a line containing: $msg)"
        fail=1
    fi
}
expect 2 "--backend must be vmmu or kvm" "$vmmu" run --backend qemu "$elf"
expect 2 "--backend must be vmmu or kvm" "$vmmu" run "$elf" --backend
expect 2 "--backend kvm cannot run a host pager" "$vmmu" run --backend kvm --pager 8 "$elf"
expect 2 "--backend kvm cannot check a migration" "$vmmu" run --backend kvm --migrate "$elf"
expect 2 "--backend kvm has no host stress" "$vmmu" run --backend kvm --chaos "$elf"
expect 0 "" "$vmmu" run --migrate "$elf"
expect 0 "" "$vmmu" run --backend vmmu "$elf"
if "$vmmu" run --backend kvm "$elf" >/dev/null 2>"$err"; then
    echo "kvm: /dev/kvm is usable here; hello ran on it"
else
    status=$?
    want="vmmu run: --backend kvm: /dev/kvm: "
    if [ "$status" -ne 125 ] || [ "$(wc -l <"$err")" -ne 1 ] || ! grep -q "^$want.*(KVM backend unavailable)\$" "$err"; then
        echo "FAIL: unusable /dev/kvm: status $status (want 125), stderr (want one line):"
        cat "$err"
        fail=1
    fi
    expect 77 "(KVM backend unavailable)" env VMMU_KVM_SKIP=1 "$vmmu" run --backend kvm "$elf"
    echo "kvm: unavailable here, as reported: $(cat "$err")"
fi
# The stand-in: `run --backend kvm ...` runs the vmmu backend; with
# FAKE_EXTRA set it prints one more line.
cat >"$fake" <<FAKE
#!/bin/sh
if [ "\$2" = "--backend" ] && [ "\$3" = "kvm" ]; then
    shift 3
    "$vmmu" run --backend vmmu "\$@" || exit
    [ -n "\${FAKE_EXTRA:-}" ] && echo "\$FAKE_EXTRA"
    exit 0
fi
exec "$vmmu" "\$@"
FAKE
chmod +x "$fake"
if ! sh "$compare" "$fake" "$elf" 4 "$base" >"$err" 2>&1; then
    echo "FAIL: compare_kvm.sh refused identical transcripts:"
    cat "$err"
    fail=1
fi
if FAKE_EXTRA="one more line" sh "$compare" "$fake" "$elf" 4 "$base" >"$err" 2>&1 ||
   ! grep -q '^line 7: vmmu "<end>"' "$err" || ! grep -q "kvm backend:" "$err" ||
   [ "$(grep -c "hello from vcpu 3" "$err")" -ne 2 ]; then
    echo "FAIL: compare_kvm.sh did not report an extra line on the kvm side with both transcripts:"
    cat "$err"
    fail=1
fi
[ "$fail" -eq 0 ] && echo "kvm_args: ok"
exit "$fail"
