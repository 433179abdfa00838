#!/bin/sh
# The README and docs/ name only things that exist: every vmmu_* or VMMU_*
# identifier they mention appears in the sources, and every public function
# they show being called (vmmu_name( with one underscore) is declared in a
# public header (include/vmmu/ or the device-model client's).  Catches a
# renamed or removed function left behind in the documentation.
#   docs_names.sh PATH_TO_VMMU WORKDIR   (the arguments of every tools/ test)
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
fails=0
docs="README.md docs/*.md"

# shellcheck disable=SC2086
for id in $(grep -ohE '\b(vmmu|VMMU)_[A-Za-z0-9_]+' $docs | sort -u); do
  if ! grep -rqw -- "$id" include src lib tools bench tests scripts cmake CMakeLists.txt Makefile; then
    # shellcheck disable=SC2086
    echo "FAIL: $id is named in $(grep -lw -- "$id" $docs | tr '\n' ' ')but exists nowhere in the sources"
    fails=$((fails + 1))
  fi
done

# shellcheck disable=SC2086
for fn in $(grep -ohE '\bvmmu_[a-z0-9][a-z0-9_]*\(' $docs | tr -d '(' | sort -u); do
  if ! grep -rqE -- "\b$fn\(" include; then
    # shellcheck disable=SC2086
    echo "FAIL: $fn() is called in $(grep -lw -- "$fn" $docs | tr '\n' ' ')but no public header declares it"
    fails=$((fails + 1))
  fi
done

if [ "$fails" -ne 0 ]; then
  echo "docs_names: $fails failure(s)"
  exit 1
fi
echo "docs_names: every name in README.md and docs/ exists"
