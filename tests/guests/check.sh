#!/bin/sh
# Run a guest and compare its console with the expected transcript.
#
#   check.sh VMMU GUEST.elf VCPUS BASE [RUN-OPTION...]
#
# RUN-OPTIONs go to `vmmu run` (--pager N, --dma): the transcript must be
# the same whatever the machine does underneath.
#
# BASE.VCPUS.expected is used if it exists, else BASE.expected (and with
# --dma, --dmdev or --dm-listen, BASE.dma.expected if it exists).  A line of
# the expected transcript that starts with "~" matches any console line
# with the same text up to its first ':' (for lines that vary from run to
# run, such as timings).  The guest's exit status must be 0.
set -u
vmmu=$1 elf=$2 vcpus=$3 base=$4
shift 4
expected=$base.$vcpus.expected
[ -f "$expected" ] || expected=$base.expected
# With a device model attached, BASE.dma.expected if it exists: a guest
# that says whether it found the device must have found it.
for opt in "$@"; do
    case $opt in
    --dma | --dmdev | --dm-listen) [ -f "$base.dma.expected" ] && expected=$base.dma.expected ;;
    esac
done
out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT
"$vmmu" run --vcpus "$vcpus" --max-insns 2000000000 "$@" "$elf" >"$out"
status=$?
if ! awk -v expfile="$expected" '
    BEGIN { n = 0; while ((getline l < expfile) > 0) want[++n] = l }
    function key(s,    j) { j = index(s, ":"); return j ? substr(s, 1, j) : s }
    { got[++m] = $0 }
    END {
        bad = 0
        for (i = 1; i <= (n > m ? n : m); i++) {
            w = (i <= n) ? want[i] : "<end>"; g = (i <= m) ? got[i] : "<end>"
            ok = (substr(w, 1, 1) == "~") ? (key(g) == key(substr(w, 2))) : (g == w)
            if (!ok) { printf "line %d: expected \"%s\"\n        got      \"%s\"\n", i, w, g; bad = 1 }
        }
        exit bad
    }' "$out"; then
    echo "--- console of $elf on $vcpus vCPUs:"
    cat "$out"
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "guest exited with status $status"
    cat "$out"
    exit 1
fi
exit 0
