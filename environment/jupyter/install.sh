#!/usr/bin/env bash
# Registers the repository's pinned .NET Interactive kernel with Jupyter as ".NET (C#)" (kernel name .net-csharp, the
# name every notebook's metadata asks for), for the user who runs this script:
#   * the kernel's HTTP endpoint listens on loopback only (--http-local-only; without it dotnet-interactive serves
#     HTTP on every interface, ports 2048-3000); Jupyter's own ZeroMQ ports are on 127.0.0.1 by default;
#   * it starts from any folder: kernel.json runs the pinned tool's DLL by its full path (`dotnet interactive` is a
#     local tool and is found only inside this clone);
#   * it signs (trusts) the executed notebooks already in artifacts/notebooks/, so their charts show in Jupyter.
# On Debian 12 / Ubuntu, as root it installs the Debian packages it needs when they are missing; as a user it prints
# the one command to run first (with sudo, or as root). Re-run it after `dotnet nuget locals all --clear` or a kernel
# upgrade in .config/dotnet-tools.json. Jupyter's own variables (JUPYTER_DATA_DIR, ...) are honoured.
# Usage: ./environment/jupyter/install.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_INTERACTIVE_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# jupyter-notebook: the classic UI; jupyter-nbconvert: headless execution; jupyter-client: `jupyter kernelspec`
# (registers kernels); jupyter-nbformat: `jupyter trust`.
packages=(jupyter-notebook jupyter-nbconvert jupyter-client jupyter-nbformat)
commands=(jupyter-notebook jupyter-nbconvert jupyter-kernelspec jupyter-trust)
missing=()
for i in "${!commands[@]}"; do command -v "${commands[i]}" >/dev/null || missing+=("${packages[i]}"); done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "install.sh: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  else
    echo "install.sh: Jupyter is missing (${missing[*]}). Install it first, then run this script again:" >&2
    echo "  sudo apt-get install -y ${packages[*]}" >&2
    echo "(no sudo? run 'apt-get install -y ${packages[*]}' as root)" >&2
    exit 1
  fi
fi
command -v dotnet >/dev/null || { echo "install.sh: the .NET 10 SDK (dotnet) is not on PATH." >&2; exit 1; }

dotnet tool restore >/dev/null
version=$(sed -n '/microsoft.dotnet-interactive/,/version/s/.*"version": *"\([^"]*\)".*/\1/p' .config/dotnet-tools.json | head -1)
packages_dir=$(dotnet nuget locals global-packages --list | sed 's/^global-packages: *//')
dll=$(ls "${packages_dir%/}"/microsoft.dotnet-interactive/"$version"/tools/*/any/Microsoft.DotNet.Interactive.App.dll 2>/dev/null | head -1)
[[ -f "$dll" ]] || { echo "install.sh: the kernel $version is not in $packages_dir after dotnet tool restore." >&2; exit 1; }
dotnet_exe=$(readlink -f "$(command -v dotnet)")

json() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }
spec=$(mktemp -d)
trap 'rm -rf "$spec"' EXIT
# the tool's own installer writes the kernel specs (with their logos) into a folder; its kernel.json is replaced below
dotnet tool run dotnet-interactive -- jupyter install --path "$spec" >/dev/null
cat >"$spec/.net-csharp/kernel.json" <<JSON
{
  "argv": [$(json "$dotnet_exe"), $(json "$dll"), "jupyter", "--default-kernel", "csharp",
           "--http-local-only", "--http-port-range", "2048-3000", "{connection_file}"],
  "display_name": ".NET (C#)",
  "language": "C#",
  "env": {"DOTNET_INTERACTIVE_CLI_TELEMETRY_OPTOUT": "1", "DOTNET_CLI_TELEMETRY_OPTOUT": "1", "DOTNET_NOLOGO": "1"},
  "metadata": {"attentionlab": {"tool": "microsoft.dotnet-interactive $version", "registered_by": "environment/jupyter/install.sh"}}
}
JSON
jupyter kernelspec install --user --replace --name .net-csharp "$spec/.net-csharp" >/dev/null
echo "install.sh: registered .NET (C#) (dotnet-interactive $version, HTTP on loopback only) in $(jupyter --data-dir)/kernels/.net-csharp"

shopt -s nullglob
executed=(artifacts/notebooks/*.ipynb)
if ((${#executed[@]})); then
  jupyter trust "${executed[@]}" >/dev/null
  echo "install.sh: trusted ${#executed[@]} executed notebook(s) in artifacts/notebooks/"
fi
root_flag=""; [[ $(id -u) -eq 0 ]] && root_flag=" --allow-root"
echo "install.sh: now run: jupyter notebook$root_flag notebooks/"
