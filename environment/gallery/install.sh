#!/usr/bin/env bash
# The gallery's math renderer: KaTeX from the npm registry, pinned by environment/gallery/package-lock.json. Installs it
# into environment/gallery/node_modules once (again when the lock file changes); the runner copies it beside the pages.
# Called by run.sh and test.sh. Without npm it says so and returns 0: the pages then show formulas as TeX source and the
# tests that need KaTeX are skipped with that reason.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
stamp="$here/node_modules/.package-lock.json"
if [[ -f "$stamp" && ! "$here/package-lock.json" -nt "$stamp" && -f "$here/node_modules/katex/dist/katex.min.js" ]]; then exit 0; fi
if ! command -v npm >/dev/null 2>&1; then
  echo "environment/gallery/install.sh: npm not found: gallery formulas stay TeX source (install Node.js and npm to typeset them)." >&2
  exit 0
fi
npm ci --prefix "$here" --no-audit --no-fund --ignore-scripts --loglevel=error
