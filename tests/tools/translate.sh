#!/bin/sh
# `vmmu translate`: builds a small guest-physical image with 4-level page
# tables, then checks the JSON line of each access (translations, #PF with
# error code and CR2, #GP), that the image is untouched without --commit,
# that --commit writes exactly the A/D bits, and the refusals of bad input.
#   translate.sh PATH_TO_VMMU WORKDIR
# $long below is a list of options, split on purpose.
# shellcheck disable=SC2086
set -u
vmmu=$1
dir=$2/translate
rm -rf "$dir" && mkdir -p "$dir"
img=$dir/image
fails=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# put64 FILE OFFSET VALUE: store VALUE (< 2^63) little-endian at OFFSET.
put64() {
    bytes="" i=0
    while [ $i -lt 8 ]; do
        bytes="$bytes$(printf '\\%03o' $(( ($3 >> (8 * i)) & 255 )))"
        i=$((i + 1))
    done
    # The octal escapes are meant to be interpreted: they are the format.
    # shellcheck disable=SC2059
    printf "$bytes" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}

# get64 FILE OFFSET: print the 8 bytes at OFFSET as 0x... (lowercase hex).
get64() {
    od -A n -t x8 -j "$2" -N 8 "$1" | tr -d ' ' | sed 's/^0*//; s/^/0x/; s/^0x$/0x0/'
}

# 64 KiB of zeros; tables: PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000.
dd if=/dev/zero of="$img" bs=4096 count=16 2>/dev/null
P=1 RW=2 US=4 PS=128
put64 "$img" $((0x1000)) $((0x2000 | P | RW | US))        # PML4[0]
put64 "$img" $((0x2000)) $((0x3000 | P | RW | US))        # PDPT[0]
put64 "$img" $((0x3000)) $((0x4000 | P | RW | US))        # PD[0] -> PT
put64 "$img" $((0x3008)) $((0x400000 | P | RW | US | PS)) # PD[1]: 2 MiB page at 4 MiB
put64 "$img" $((0x4000 + 8 * 5)) $((0x9000 | P | RW | US)) # PT[5]: va 0x5000 -> 0x9000
put64 "$img" $((0x4000 + 8 * 6)) $((0xa000 | P | US))      # PT[6]: read-only user page
cp "$img" "$dir/pristine"

long="--cr0 0x80000011 --cr4 0x20 --efer 0x500 --cr3 0x1000"

# expect DESCRIPTION EXPECTED_OUTPUT ARGS...: run translate, compare stdout.
expect() {
    desc=$1 want=$2
    shift 2
    got=$("$vmmu" translate "$@" 2>"$dir/err")
    status=$?
    if [ $status -ne 0 ]; then
        fail "$desc: exit status $status ($(cat "$dir/err"))"
    elif [ "$got" != "$want" ]; then
        fail "$desc: got '$got', want '$want'"
    fi
}

expect "4 KiB translation" \
    '{"va":"0x5123","ok":true,"gpa":"0x9123","size":4096}' \
    --image "$img" $long read@0x5123
expect "2 MiB translation, decimal address" \
    '{"va":"0x212345","ok":true,"gpa":"0x412345","size":2097152}' \
    --image "$img" $long "read@$((0x212345))"
expect "user write to a read-only page: #PF P|W|U" \
    '{"va":"0x6008","ok":false,"vector":14,"error_code":"0x7","cr2":"0x6008"}' \
    --image "$img" $long --cpl 3 write@0x6008
expect "supervisor write to a read-only page with CR0.WP=0 succeeds" \
    '{"va":"0x6008","ok":true,"gpa":"0xa008","size":4096}' \
    --image "$img" $long write@0x6008
expect "not-present page: #PF with P=0" \
    '{"va":"0x7000","ok":false,"vector":14,"error_code":"0x2","cr2":"0x7000"}' \
    --image "$img" $long write@0x7000
expect "non-canonical address: #GP(0)" \
    '{"va":"0x800000000000","ok":false,"vector":13,"error_code":"0x0"}' \
    --image "$img" $long read@0x800000000000
expect "non-canonical stack access: #SS(0)" \
    '{"va":"0x800000000000","ok":false,"vector":12,"error_code":"0x0"}' \
    --image "$img" $long read,stack@0x800000000000
expect "paging off: linear is physical" \
    '{"va":"0x5123","ok":true,"gpa":"0x5123","size":4096}' \
    --image "$img" read@0x5123
expect "several accesses, one line each" \
    "$(printf '%s\n%s' '{"va":"0x5000","ok":true,"gpa":"0x9000","size":4096}' \
        '{"va":"0x7000","ok":false,"vector":14,"error_code":"0x10","cr2":"0x7000"}')" \
    --image "$img" $long --efer 0xd00 read@0x5000 fetch@0x7000

# PAE paging with CR3 = 0x1000: the "PDPT" there holds the PML4E above,
# whose R/W and U/S bits are reserved in a PDPTE, so loading the PDPTE
# registers from memory is refused; --pdpte gives them as the guest last
# loaded them (PDPTE 0 -> the PD at 0x3000).
pae="--cr0 0x80000011 --cr4 0x20 --cr3 0x1000"
expect "PAE paging with the PDPTE registers given" \
    '{"va":"0x5123","ok":true,"gpa":"0x9123","size":4096}' \
    --image "$img" $pae --pdpte 0x3001,0,0,0 read@0x5123
expect "PAE paging, a PDPTE register not present: #PF P=0" \
    '{"va":"0x40005000","ok":false,"vector":14,"error_code":"0x0","cr2":"0x40005000"}' \
    --image "$img" $pae --pdpte 0x3001,0,0,0 read@0x40005000

cmp -s "$img" "$dir/pristine" || fail "the image changed without --commit"

expect "write with --commit" \
    '{"va":"0x5010","ok":true,"gpa":"0x9010","size":4096}' \
    --image "$img" $long --commit write@0x5010
A=32 D=64
[ "$(get64 "$img" $((0x1000)))" = "$(printf '0x%x' $((0x2000 | P | RW | US | A)))" ] ||
    fail "--commit: PML4E lacks A: $(get64 "$img" $((0x1000)))"
[ "$(get64 "$img" $((0x3000)))" = "$(printf '0x%x' $((0x4000 | P | RW | US | A)))" ] ||
    fail "--commit: PDE lacks A: $(get64 "$img" $((0x3000)))"
[ "$(get64 "$img" $((0x4028)))" = "$(printf '0x%x' $((0x9000 | P | RW | US | A | D)))" ] ||
    fail "--commit: PTE lacks A|D: $(get64 "$img" $((0x4028)))"
[ "$(get64 "$img" $((0x4030)))" = "$(printf '0x%x' $((0xa000 | P | US)))" ] ||
    fail "--commit: an unused PTE changed"
[ "$(wc -c <"$img")" -eq 65536 ] || fail "--commit changed the image size"

cp "$dir/pristine" "$img"
expect "faulting write with --commit" \
    '{"va":"0x6000","ok":false,"vector":14,"error_code":"0x7","cr2":"0x6000"}' \
    --image "$img" $long --cpl 3 --commit write@0x6000
cmp -s "$img" "$dir/pristine" || fail "a faulting walk with --commit changed the image"

# Refusals: usage errors exit 2, impossible states and unreadable images 1.
refuse() {
    desc=$1 want=$2
    shift 2
    "$vmmu" translate "$@" >/dev/null 2>&1
    status=$?
    [ $status -eq "$want" ] || fail "$desc: exit status $status, want $want"
}
refuse "no image" 2 read@0x1000
refuse "no access" 2 --image "$img"
refuse "bad access kind" 2 --image "$img" exec@0x1000
refuse "bad number" 2 --image "$img" --cr3 0xzz read@0
refuse "trailing garbage in an address" 2 --image "$img" read@12abc
refuse "unknown option" 2 --image "$img" --cr9 1 read@0
refuse "unknown option last" 2 --image "$img" --cr9
refuse "option without its value" 2 --image "$img" --cr3
# ... and say why: an unknown option as unknown, whatever follows it.
says() {
    pat=$1
    shift
    "$vmmu" translate "$@" 2>&1 >/dev/null | grep -q -e "$pat" || fail "translate $*: no '$pat' in its message"
}
says "unknown option --cr9" --image "$img" --cr9 1 read@0
says "unknown option --cr9" --image "$img" --cr9
says "cr3 needs a value" --image "$img" --cr3
refuse "unknown feature" 2 --image "$img" --features nx,warp read@0
refuse "cpl out of range" 2 --image "$img" --cpl 4 read@0
refuse "maxphyaddr out of range" 2 --image "$img" --maxphyaddr 53 read@0
refuse "a CPU model with la57 but no long mode" 2 --image "$img" --features la57,nx read@0
refuse "missing image file" 1 --image "$dir/none" read@0
refuse "reserved CR4 bit" 1 --image "$img" --cr4 0x8000 read@0
refuse "PCIDE outside long mode" 1 --image "$img" --cr0 0x80000011 --cr4 0x20020 read@0
refuse "LA57 without the feature" 1 --image "$img" --without la57 --cr4 0x1020 read@0
: >"$dir/empty"
refuse "empty image" 1 --image "$dir/empty" read@0
refuse "a directory as the image" 1 --image "$dir" read@0
says "is not a regular file" --image "$dir" read@0
refuse "PAE paging, the PDPTEs read from a PDPT with reserved bits" 1 --image "$img" $pae read@0
refuse "--pdpte with a reserved bit" 1 --image "$img" $pae --pdpte 0x3003,0,0,0 read@0
refuse "--pdpte with three values" 2 --image "$img" $pae --pdpte 0x3001,0,0 read@0
refuse "--pdpte with five values" 2 --image "$img" $pae --pdpte 0x3001,0,0,0,0 read@0
refuse "--pdpte with an empty value" 2 --image "$img" $pae --pdpte 0x3001,,0,0 read@0
refuse "--pdpte outside PAE paging" 2 --image "$img" $long --pdpte 0x3001,0,0,0 read@0
says "is for PAE paging" --image "$img" $long --pdpte 0x3001,0,0,0 read@0
refuse "an empty modifier" 2 --image "$img" read,@0x1000
refuse "an option after the accesses" 2 --image "$img" read@0x1000 --cr3 0x1000
says "options come first" --image "$img" read@0x1000 --cr3 0x1000
"$vmmu" translate -h | grep -q "usage: vmmu translate" || fail "-h prints the usage"
"$vmmu" translate --image "$img" -h | grep -q "usage: vmmu translate" || fail "-h after --image prints the usage"
"$vmmu" translate --help | grep -q "usage: vmmu translate" || fail "--help prints the usage"

[ $fails -eq 0 ] || exit 1
echo "translate: all checks passed"
