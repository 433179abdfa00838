#!/bin/sh
# `vmmu run` refuses bad guest images and arguments with one clear line
# and a failure status, and never crashes.
#   bad_images.sh VMMU GOOD.elf
set -u
vmmu=$1 good=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
expect() { # expect STATUS PATTERN CMD...
    want=$1 pat=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"; got=$?
    if [ "$got" -ne "$want" ] || ! grep -q -- "$pat" "$tmp/err"; then
        echo "FAIL: $* -> status $got (want $want), stderr: $(cat "$tmp/err")"; fail=1
    fi
}
: >"$tmp/empty"
echo "not an image" >"$tmp/text"
head -c 100 "$good" >"$tmp/truncated"
# e_machine (offset 18) = 3 (i386)
cp "$good" "$tmp/i386"; printf '\003' | dd of="$tmp/i386" bs=1 seek=18 conv=notrunc 2>/dev/null
# e_entry (offset 24) = 0x10 (outside every segment)
cp "$good" "$tmp/entry"; printf '\020\000\000\000' | dd of="$tmp/entry" bs=1 seek=24 conv=notrunc 2>/dev/null
# e_phoff (offset 32) far beyond the file
cp "$good" "$tmp/phoff"; printf '\377\377\377\177' | dd of="$tmp/phoff" bs=1 seek=32 conv=notrunc 2>/dev/null
expect 125 "not an ELF file" "$vmmu" run "$tmp/empty"
expect 125 "not an ELF file" "$vmmu" run "$tmp/text"
expect 125 "program header table lies outside" "$vmmu" run "$tmp/truncated"
expect 125 "not an x86-64 image" "$vmmu" run "$tmp/i386"
expect 125 "not in an executable segment" "$vmmu" run "$tmp/entry"
expect 125 "program header table lies outside" "$vmmu" run "$tmp/phoff"
expect 125 "cannot read" "$vmmu" run "$tmp/missing"
expect 2 "--vcpus must be" "$vmmu" run --vcpus 0 "$good"
expect 2 "--vcpus must be" "$vmmu" run --vcpus 65 "$good"
expect 2 "--ram must be" "$vmmu" run --ram 3 "$good"
expect 2 "needs a number" "$vmmu" run --vcpus x "$good"
expect 2 "unknown option" "$vmmu" run --bogus "$good"
expect 125 "instruction limit" "$vmmu" run --max-insns 100 "$good"
expect 2 "--pager needs at least 1 page" "$vmmu" run --pager 0 "$good"
expect 2 "needs a number" "$vmmu" run --pager "$good"
expect 2 "--dmdev needs a path" "$vmmu" run --dmdev
expect 125 "cannot start the device model" "$vmmu" run --dmdev "$tmp/missing" "$good"
exit $fail
