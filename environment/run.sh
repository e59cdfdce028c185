#!/usr/bin/env bash
# The main job: build the library and the runner, then execute every notebook headless and publish the gallery.
# Needs the .NET 10 SDK (Debian 12 / Ubuntu); npm (Node.js) for the gallery's math renderer. All arguments go to the runner, e.g.
#   environment/run.sh --size smoke --filter 03 --jobs 2
#   environment/run.sh --notebooks /some/folder --out /tmp/out --cell-timeout 300
# Options: --size smoke|full, --filter TEXT, --jobs N, --notebooks DIR, --out DIR, --cell-timeout S, --notebook-timeout S.
# Environment passed to notebooks: ATTNLAB_DEVICE, ATTNLAB_THREADS, ATTNLAB_SEED (ATTNLAB_SIZE comes from --size;
# ATTNLAB_SIZE set without --size stands for --size "$ATTNLAB_SIZE").
set -euo pipefail

# The size is checked before anything is built: an unknown one must not cost a build and then run at smoke.
check_size() { # $1 where it came from, $2 the value as given, $3 the value compared (the runner takes --size in lower case)
  case "${3-$2}" in
    smoke|full) ;;
    *) echo "run.sh: $1 '$2' is not smoke or full; nothing was built." >&2; exit 2 ;;
  esac
}
size_given=false
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --size) size_given=true; check_size --size "${args[i + 1]:-}" ;;
    --size=*) size_given=true; check_size --size "${args[i]#--size=}" ;;
  esac
done
if [[ -n "${ATTNLAB_SIZE:-}" ]]; then
  check_size ATTNLAB_SIZE "$ATTNLAB_SIZE" "${ATTNLAB_SIZE,,}"
  if [[ "$size_given" == false ]]; then set -- --size "${ATTNLAB_SIZE,,}" "$@"; fi
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_INTERACTIVE_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

dotnet tool restore
environment/gallery/install.sh || echo "run.sh: the KaTeX install failed: the gallery will show formulas as TeX source." >&2  # npm registry, pinned
dotnet build lib/AttentionLab/AttentionLab.csproj -c Release --nologo
dotnet build lib/AttentionLab.Runner/AttentionLab.Runner.csproj -c Release --nologo

# The runner prints the gallery's path, then "N passed, N failed" as its last line; it exits 1 when a notebook failed.
exec dotnet run --project lib/AttentionLab.Runner/AttentionLab.Runner.csproj -c Release --no-build --no-launch-profile -- "$@"
