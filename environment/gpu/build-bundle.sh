#!/usr/bin/env bash
# Builds the GPU check bundle HERE (no GPU needed): a self-contained, trimmed publish of lib/AttentionLab.GpuCheck with
# TorchBackend=external into environment/gpu/bundle/ (git-ignored), small enough to `carry` to the GPU machine (64 MiB).
# libtorch is not in it: on the GPU machine run-on-gpu.sh points ATTNLAB_TORCH_LIB_DIR at Python torch's lib folder.
#
#   environment/gpu/build-bundle.sh            # publish when an input changed since the last bundle, else reuse it
#   environment/gpu/build-bundle.sh --force    # publish anyway
#
# Inputs hashed for the reuse check: lib/AttentionLab, lib/AttentionLab.GpuCheck, environment/build, the repo's
# Directory.*.props/targets, NuGet.config, global.json, this script, and the SDK version. Prints the bundle's size and
# fails when it is over 60 MiB (the device tool carries at most 64 MiB in all).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

bundle=environment/gpu/bundle
staging=artifacts/gpu-bundle/publish
force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    *) echo "build-bundle.sh: unknown argument '$arg' (only --force)"; exit 2 ;;
  esac
done

inputs_hash() {
  {
    dotnet --version
    find lib/AttentionLab lib/AttentionLab.GpuCheck environment/build -type f \
      -not -path '*/bin/*' -not -path '*/obj/*' -print0 | sort -z | xargs -0 sha256sum
    sha256sum Directory.Build.props Directory.Build.targets Directory.Packages.props NuGet.config global.json \
      environment/gpu/build-bundle.sh
  } | sha256sum | cut -d' ' -f1
}

# TorchSharp copies ~480 MB of natives beside itself (cpu/, cuda-*/) when its native library fails to load and a NuGet
# cache is at hand (e.g. the bundle was run without ATTNLAB_TORCH_LIB_DIR); such a copy never belongs in the bundle.
rm -rf "$bundle"/cpu "$bundle"/cuda-*
hash=$(inputs_hash)
if [ "$force" -eq 0 ] && [ -x "$bundle/attnlab-gpucheck" ] && [ -f "$bundle/.inputs.sha256" ] \
   && [ "$(cat "$bundle/.inputs.sha256")" = "$hash" ]; then
  echo "bundle up to date: $bundle (inputs unchanged; --force to publish again)"
else
  echo "publishing the GPU check bundle (TorchBackend=external, self-contained, trimmed) ..."
  rm -rf "$staging"
  # AttnLabBuildTag keeps this publish's obj/bin under artifacts/gpu-bundle/, away from the normal cpu build.
  # The trim warnings of the non-annotated dependencies are silenced only for this publish (see the csproj), and
  # EnableTrimAnalyzer=false keeps the compiler's trim analyzer (switched on by PublishTrimmed, which reaches the
  # referenced library too) from failing the library's build on reflection the check never reaches (e.g. JSON in
  # CheckpointStore): the trimmer drops that code, and the CPU proof runs what is left.
  dotnet publish lib/AttentionLab.GpuCheck/AttentionLab.GpuCheck.csproj -c Release -r linux-x64 --self-contained \
    -p:TorchBackend=external -p:PublishTrimmed=true -p:TrimMode=partial -p:InvariantGlobalization=true \
    -p:EnableTrimAnalyzer=false -p:AttnLabBuildTag=gpu-bundle -o "$staging" --nologo
  # Nothing else belongs in the bundle: no libtorch (it comes from the GPU machine), no debugger-only runtime parts.
  rm -f "$staging"/*.pdb "$staging"/*.xml "$staging"/createdump
  if ls "$staging" | grep -qE '^lib(torch|torch_cpu|c10)\.so$'; then
    echo "FAILED: the bundle contains libtorch itself; TorchBackend=external should leave it out"; exit 1
  fi
  rm -rf "$bundle"
  mv "$staging" "$bundle"
  echo "$hash" > "$bundle/.inputs.sha256"
fi

# The native bridge must not demand a libstdc++ newer than the GPU machine may have (GLIBCXX_3.4.31+ should be weak).
if command -v readelf >/dev/null; then
  strong=$(readelf -V "$bundle/libLibTorchSharp.so" | grep -E 'Name: GLIBCXX_3\.4\.3[1-9]' | grep -v 'Flags: WEAK' || true)
  [ -z "$strong" ] || echo "WARNING: libLibTorchSharp.so needs these libstdc++ versions strongly (built on a machine that has them): $strong"
fi

bytes=$(du -sb "$bundle" | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
files=$(find "$bundle" -type f | wc -l)
echo "bundle: $bundle  $mib MiB in $files files (the device tool carries at most 64 MiB)"
if [ "$bytes" -gt $((60 * 1048576)) ]; then
  echo "FAILED: the bundle is over 60 MiB"; exit 1
fi
