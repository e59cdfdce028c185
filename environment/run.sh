#!/usr/bin/env bash
# The main job: build the library and the runner, then execute every notebook headless and publish the gallery.
# Needs only the .NET 10 SDK (Debian 12 / Ubuntu). All arguments go to the runner, e.g.
#   environment/run.sh --size smoke --filter 03 --jobs 2
#   environment/run.sh --notebooks /some/folder --out /tmp/out --cell-timeout 300
# Options: --size smoke|full, --filter TEXT, --jobs N, --notebooks DIR, --out DIR, --cell-timeout S, --notebook-timeout S.
# Environment passed to notebooks: ATTNLAB_DEVICE, ATTNLAB_THREADS, ATTNLAB_SEED (ATTNLAB_SIZE comes from --size).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_INTERACTIVE_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

dotnet tool restore
dotnet build lib/AttentionLab/AttentionLab.csproj -c Release --nologo
dotnet build lib/AttentionLab.Runner/AttentionLab.Runner.csproj -c Release --nologo

# The runner prints the gallery's path, then "N passed, N failed" as its last line; it exits 1 when a notebook failed.
exec dotnet run --project lib/AttentionLab.Runner/AttentionLab.Runner.csproj -c Release --no-build --no-launch-profile -- "$@"
