#!/bin/sh
# Installs the Debian packages vmmu needs to build, test and benchmark.
# Quick when everything is present: it only asks dpkg.  Later parts of the
# project add their packages to the lists below.
#
#   scripts/install-deps.sh [build|test|bench|all]   (default: test)
set -eu

build="cmake make gcc pkg-config liburcu-dev libzydis-dev"
test="$build g++ libcmocka-dev clang libclang-rt-14-dev qemu-system-x86"
bench="$build valgrind gnuplot-nox"

case "${1:-test}" in
  build) want=$build ;;
  test) want=$test ;;
  bench) want="$test $bench" ;;
  all) want="$test $bench" ;;
  *) echo "usage: $0 [build|test|bench|all]" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  case " $missing " in *" $p "*) continue ;; esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

echo "vmmu: installing Debian packages:$missing"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "vmmu: need root to install:$missing (run as root or install them yourself)" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
# Update the package lists once per machine (or when they are missing).
if [ ! -e /var/lib/apt/periodic/vmmu-updated ] || ! $SUDO apt-get install -y -qq --no-install-recommends $missing; then
  $SUDO apt-get update -qq
  $SUDO mkdir -p /var/lib/apt/periodic && $SUDO touch /var/lib/apt/periodic/vmmu-updated
  $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
