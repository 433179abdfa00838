#!/bin/sh
# The vmmu command-line tool: help, version, unknown commands, and the demo's
# account of what happened (each access's outcome, checked line by line).
#   cli.sh PATH_TO_VMMU WORKDIR
set -u
vmmu=$1
fails=0
check() { # description, then a command that must succeed
  desc=$1; shift
  if "$@"; then :; else echo "FAIL: $desc"; fails=$((fails + 1)); fi
}

out=$("$vmmu" --help); check "--help exits 0" test $? -eq 0
check "--help lists demo" sh -c "printf '%s' \"\$1\" | grep -q '^  demo '" _ "$out"
check "version prints the version" sh -c "'$vmmu' version | grep -Eq '^vmmu [0-9]+\.[0-9]+\.[0-9]+$'"
check "--version prints the version" sh -c "'$vmmu' --version | grep -Eq '^vmmu [0-9]+\.[0-9]+\.[0-9]+$'"
check "--help names --version" sh -c "printf '%s' \"\$1\" | grep -q -- '--version'" _ "$out"
"$vmmu" version extra >/dev/null 2>"$2/cli.err"; check "version with an argument exits 2" test $? -eq 2
check "version names the unexpected argument" grep -q "unexpected argument 'extra'" "$2/cli.err"
"$vmmu" help run >"$2/cli.out" 2>&1; check "help run exits 0" test $? -eq 0
check "help run prints run's usage" grep -q "^usage: vmmu run" "$2/cli.out"
"$vmmu" help version >"$2/cli.out" 2>&1; check "help version exits 0" test $? -eq 0
check "help version prints its usage" grep -q "^usage: vmmu version" "$2/cli.out"
"$vmmu" help frobnicate >/dev/null 2>"$2/cli.err"; check "help of an unknown command exits 2" test $? -eq 2
check "help names the unknown command" grep -q "unknown command 'frobnicate'" "$2/cli.err"
"$vmmu" >/dev/null 2>&1; check "no command exits 2" test $? -eq 2
"$vmmu" frobnicate >/dev/null 2>"$2/cli.err"; check "unknown command exits 2" test $? -eq 2
check "unknown command is named" grep -q "unknown command 'frobnicate'" "$2/cli.err"

"$vmmu" demo --help >"$2/cli.out" 2>&1; check "demo --help exits 0" test $? -eq 0
check "demo --help prints its usage, not the demo" grep -q "^usage: vmmu demo" "$2/cli.out"
"$vmmu" demo extra >/dev/null 2>"$2/cli.err"; check "demo with an argument exits 2" test $? -eq 2
check "demo names the unexpected argument" grep -q "unexpected argument 'extra'" "$2/cli.err"
demo=$("$vmmu" demo); check "demo exits 0" test $? -eq 0
expect() { # pattern expected in the demo's output
  if printf '%s\n' "$demo" | grep -Eq -- "$1"; then :; else
    echo "FAIL: demo output lacks: $1"; fails=$((fails + 1)); fi
}
expect 'region [0-9]+: ram +gpa 0x0000000000-0x003fffffff ram-low'
expect 'region [0-9]+: mmio +gpa 0x00fee00000-0x00fee00fff counter'
expect 'read ROM +-> ok "vmmu demo firmware"'
expect 'guest write to ROM \(reports writes\) +-> VMMU_EROM'
expect 'read it back +-> ok "hello across a page boundary"'
expect 'dirty log of pages 1, 2, 3 +-> dirty dirty clean'
expect 'MMIO read again +-> ok value 2'
expect 'MMIO 4-byte write \(device refuses\) +-> VMMU_EMMIO at 0xfee00008'
expect 'read from the device-model range +-> VMMU_EDEVICE'
expect 'read from a hole +-> VMMU_EHOLE'
expect 'read from a hole, as hardware would +-> ok value 0xffffffff'
expect 'read running off the end of RAM +-> VMMU_EHOLE at 0x40000000'
expect 'add RAM overlapping ram-low +-> VMMU_EOVERLAP'
expect 'read beyond the 40-bit width +-> VMMU_ERANGE'
expect 'the MMIO device saw 4 callbacks'

[ $fails -eq 0 ] && echo "cli: all checks passed"
exit $fails
