#!/bin/sh
# vmmu-dmdev (beside the vmmu tool): a bad argument is one clear line and
# exit status 1, before it connects to anything.
#   dmdev_args.sh PATH_TO_VMMU WORKDIR
set -u
dmdev=$(dirname "$1")/vmmu-dmdev
[ -x "$dmdev" ] || { echo "no $dmdev: skipped"; exit 77; }
err=$2/dmdev_args.err
fails=0
refused() { # the option that must be named, then the arguments
  opt=$1; shift
  "$dmdev" "$@" </dev/null >/dev/null 2>"$err"
  st=$?
  if [ "$st" -ne 1 ] || ! grep -q -- "^vmmu-dmdev: $opt needs a number" "$err"; then
    echo "FAIL: vmmu-dmdev $*: status $st, said:"; cat "$err"; fails=$((fails + 1))
  fi
}
refused --fd --fd abc             # was fd 0: it talked to its stdin
refused --fd --fd -1
refused --fd --fd 0x
refused --fd --fd 3x
refused --fd --fd 99999999999
refused --spin-us --fd 3 --spin-us xyz
refused --spin-us --fd 3 --spin-us 4294967296
refused --chunk-delay-us --fd 3 --chunk-delay-us -5
refused --cache-bytes --fd 3 --cache-bytes 1e6
refused --mmio-base --fd 3 --mmio-base 0xfe00000zz
refused --port-base --fd 3 --port-base 65536
"$dmdev" --fd 3 --frob 1 </dev/null >/dev/null 2>"$err"
if [ $? -ne 1 ] || ! grep -q '^usage: vmmu-dmdev' "$err"; then
  echo "FAIL: an unknown option gives the usage and status 1"; fails=$((fails + 1))
fi
[ "$fails" -eq 0 ] || exit 1
exit 0
