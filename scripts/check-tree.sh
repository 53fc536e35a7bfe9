#!/usr/bin/env bash
# Refuses build outputs in git: tracked executables (ELF) and files over
# 2 MB. `make lint` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue
  size=$(stat -c %s "$f")
  if [ "$size" -gt 2097152 ]; then
    echo "tracked file over 2 MB: $f ($size bytes): build outputs and data do not belong in git (git rm --cached)" >&2
    bad=1
  fi
  if [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ]; then
    echo "tracked executable: $f: build outputs do not belong in git (git rm --cached)" >&2
    bad=1
  fi
done < <(git ls-files -z)
exit "$bad"
