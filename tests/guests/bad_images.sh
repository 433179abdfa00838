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
# Program header 0 (offset 64) of GOOD is the PT_LOAD segment holding the entry.
patch() { # patch NAME OFFSET BYTES: a copy of GOOD with BYTES (printf escapes) at OFFSET
    cp "$good" "$tmp/$1"; printf "$3" | dd of="$tmp/$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
# e_phnum (offset 56) = 0
patch phnum 56 '\000\000'
# p_offset (offset 72) = 2^64 - 256: p_offset + p_filesz wraps around
patch offwrap 72 '\000\377\377\377\377\377\377\377'
# p_vaddr (offset 80) = 0x101000, p_paddr stays 0x100000
patch vaddr 81 '\020'
# p_vaddr and p_paddr (offsets 80, 88) = 0x1000: over the boot info
patch lowseg 80 '\000\020\000\000\000\000\000\000\000\020\000\000\000\000\000\000'
# p_memsz (offset 104) = 2^64 - 2^20: p_paddr + p_memsz wraps around to 0
patch memwrap 104 '\000\000\360\377\377\377\377\377'
# p_memsz (offset 104) = 1, fewer than p_filesz
patch memsz 104 '\001\000\000\000\000\000\000\000'
expect 125 "not an ELF file" "$vmmu" run "$tmp/empty"
expect 125 "not an ELF file" "$vmmu" run "$tmp/text"
expect 125 "program header table lies outside" "$vmmu" run "$tmp/truncated"
expect 125 "not an x86-64 image" "$vmmu" run "$tmp/i386"
expect 125 "not in an executable segment" "$vmmu" run "$tmp/entry"
expect 125 "program header table lies outside" "$vmmu" run "$tmp/phoff"
expect 125 "bad program header table" "$vmmu" run "$tmp/phnum"
expect 125 "segment 0 lies outside the file" "$vmmu" run "$tmp/offwrap"
expect 125 "segment 0: virtual 0x101000 differs from physical 0x100000" "$vmmu" run "$tmp/vaddr"
expect 125 "segment 0 at 0x1000+.* is outside RAM from 0x100000" "$vmmu" run "$tmp/lowseg"
expect 125 "segment 0 at 0x100000+0xfffffffffff00000 is outside RAM" "$vmmu" run "$tmp/memwrap"
expect 125 "segment 0 has more file bytes than memory bytes" "$vmmu" run "$tmp/memsz"
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
# Numbers are decimal or 0x-hexadecimal: a leading 0 is not octal, and a
# sign, a blank or a value past 2^64 is named in the refusal.
runs() { # runs PATTERN ARGS...: `vmmu run --stats ARGS` exits 0 and prints PATTERN
    pat=$1; shift
    "$vmmu" run --stats "$@" >"$tmp/out" 2>"$tmp/err"; got=$?
    if [ "$got" -ne 0 ] || ! grep -q -- "$pat" "$tmp/out"; then
        echo "FAIL: run --stats $* -> status $got, no '$pat': $(cat "$tmp/err")"; fail=1
    fi
}
runs "vmmu run: 10 vCPUs" --vcpus 010 "$good"
runs "vmmu run: 2 vCPUs" --vcpus 0x2 "$good"
runs "exit status 0" --max-insns 0 "$good"
expect 2 "needs a number .*not '-1'" "$vmmu" run --vcpus -1 "$good"
expect 2 "needs a number .*not ' 4'" "$vmmu" run --vcpus " 4" "$good"
expect 2 "needs a number .*not '99999999999999999999'" "$vmmu" run --max-insns 99999999999999999999 "$good"
expect 125 "cannot read .*Is a directory" "$vmmu" run "$tmp"
expect 2 "no GUEST given" "$vmmu" run --stats
expect 2 "no GUEST given" "$vmmu" run --
# "--" ends the options: a guest whose name starts with '-'.
cp "$good" "$tmp/-guest"
case $vmmu in /*) vmmu_abs=$vmmu ;; *) vmmu_abs=$PWD/$vmmu ;; esac
(cd "$tmp" && "$vmmu_abs" run -- -guest >/dev/null 2>"$tmp/err2") || {
    echo "FAIL: run -- -guest: $(cat "$tmp/err2")"; fail=1; }
expect 2 "one guest at a time" "$vmmu" run -- "$good" "$good"
exit $fail
