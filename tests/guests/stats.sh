#!/bin/sh
# `vmmu run --stats`: the summary's figures agree with one another.
#
#   stats.sh VMMU DMDEV GUESTS-DIR [migrate]
#
# The per-vCPU lines add up to the totals (instructions, accesses); with
# accesses that cross a page (atomics), accesses and page parts differ and
# each is named as what it is.  With the DMA engine and no pager, nothing
# is said to have been paged out (its failed DMA asks for a range the
# region table lacks: that is a page-in request, not a paged-out range).
# The pager and the migration check did their work on heap.
set -u
vmmu=$1 dmdev=$2 dir=$3
out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT
fail() { echo "stats.sh: $*"; cat "$out"; exit 1; }

if [ "${4:-}" = migrate ]; then
    # The migration took rounds of the dirty log while heap ran and
    # checked every page of RAM (label "migrate": its copier races the
    # guest's REP MOVS on purpose, which ThreadSanitizer cannot tell from
    # a bug).
    "$vmmu" run --vcpus 4 --migrate --stats "$dir/heap.elf" >"$out" ||
        fail "heap under --migrate did not pass"
    awk '/^migration:/ { rounds = $2; c = $0; sub(/.*; /, "", c); split(c, w, " "); pages = w[1] }
         END { if (!(rounds > 1 && pages == 16384)) {
                   print "migration: " rounds " rounds, " pages " pages checked"; exit 1 } }' \
        "$out" || fail "--migrate did nothing"
    exit 0
fi

"$vmmu" run --vcpus 4 --stats "$dir/atomics.elf" >"$out" || fail "atomics did not pass"
awk '
    /^  vcpu [0-9]+:/ { for (i = 1; i <= NF; i++) {
                          if ($i ~ /^instructions,?$/) insn += $(i - 1)
                          if ($i ~ /^accesses,?$/) acc += $(i - 1) } ; n++ }
    /^instructions:/ { tinsn = $2 }
    /^accesses:/ { tacc = $2 }
    /^page parts:/ { tparts = $3 }
    END {
        if (n != 4) { print "want 4 per-vCPU lines, got " n; exit 1 }
        if (insn != tinsn) { print "per-vCPU instructions add up to " insn ", total " tinsn; exit 1 }
        if (acc != tacc) { print "per-vCPU accesses add up to " acc ", total " tacc; exit 1 }
        if (tacc == tparts) { print "atomics crosses pages: accesses should differ from page parts"; exit 1 }
    }' "$out" || fail "the per-vCPU lines and the totals disagree"

"$vmmu" run --dmdev "$dmdev" --stats "$dir/dma.elf" >"$out" || fail "dma did not pass"
grep -q '^pager: *off$' "$out" || fail "no 'pager: off' line"
grep -q -i 'paged-out' "$out" && fail "the pager is off, yet something was paged out"
grep -q '^device model: .*[1-9][0-9]* page-in requests' "$out" ||
    fail "dma's DMA outside RAM makes a page-in request"
# The options whose runs the transcripts cannot tell from plain ones must
# have done something.  The pager paged heap's memory out and back in:
"$vmmu" run --vcpus 4 --pager 32 --stats "$dir/heap.elf" >"$out" ||
    fail "heap under --pager 32 did not pass"
awk '/^pager:/ { out = $2; back = $0; sub(/.*\), /, "", back); split(back, b, " "); ins = b[1] }
     END { if (!(out > 0 && ins > 0)) { print "the pager paged out " out " and in " ins; exit 1 } }' \
    "$out" || fail "--pager did nothing"
exit 0
