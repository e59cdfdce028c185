#!/usr/bin/env bash
# Runs the GPU check ON THE GPU MACHINE (one H200, Python torch, no .NET, no network), in the repo root of the copied
# working tree, with environment/gpu/bundle/ carried (build it here first: environment/gpu/build-bundle.sh).
#
#   bash environment/gpu/run-on-gpu.sh [bundle arguments, e.g. --quick or --time-budget 200]
#
# Steps, each saved under the output folder ${OUT:-./gpu-out}:
#   1. machine, nvidia-smi                                     -> system.txt, nvidia-smi.txt
#   2. Python torch: version, CUDA, device; its lib/ folder    -> python-torch.txt
#   3. ldd -r of the bundle's libLibTorchSharp.so against that lib/ folder; undefined symbols STOP the run here,
#      listed (demangled with c++filt when present)            -> ldd.txt, undefined-symbols.txt
#   4. the bundle: load report, correctness CUDA vs CPU, benchmarks, memory probes
#                                                              -> bundle.log, environment.csv, correctness.csv,
#                                                                 bench.csv, memory.csv, summary.txt, xcheck/
#   5. Python torch recomputes one reference-attention case    -> xcheck.txt, python-xcheck.csv
# Everything printed also goes to run.log. Exit status: 0 all passed; 1 a correctness check failed; 2 no libtorch, no
# bundle, or libtorch did not load; 3 the bundle failed otherwise; 4 the Python cross-check disagrees; 5 libtorch does
# not fit the bundle (step 3: undefined symbols, missing libraries); 124/137 the bundle ran past ATTNLAB_GPU_TIMEOUT.
# Overrides: ATTNLAB_GPU_TORCH_LIB (a libtorch lib/ folder instead of Python torch's), ATTNLAB_GPU_BUNDLE (the bundle
# folder), ATTNLAB_GPU_TIMEOUT (seconds for step 4, default 420).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out="${OUT:-./gpu-out}"
mkdir -p "$out"
out=$(cd "$out" && pwd)
exec > >(tee "$out/run.log") 2>&1
bundle="${ATTNLAB_GPU_BUNDLE:-environment/gpu/bundle}"
start=$SECONDS
step() { echo; echo "=== [$((SECONDS - start)) s] $*"; }
finish() {
  echo; echo "=== [$((SECONDS - start)) s] GPU CHECK $1"
  echo "results in $out:"; (cd "$out" && find . -type f | sort | sed 's/^\.\//  /')
  sleep 0.2   # let tee write the end of run.log
  exit "$2"
}

step "1. machine"
{ date -u '+%Y-%m-%d %H:%M:%S UTC'; uname -a; grep -m1 PRETTY_NAME /etc/os-release 2>/dev/null; nproc; free -g 2>/dev/null | head -2; } | tee "$out/system.txt"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi 2>&1 | tee "$out/nvidia-smi.txt"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 | tee -a "$out/nvidia-smi.txt"
else
  echo "nvidia-smi: not found" | tee "$out/nvidia-smi.txt"
fi

step "2. Python torch"
python=$(command -v python3 || command -v python || true)
have_torch=0
if [ -n "$python" ] && "$python" - >"$out/python-torch.txt" 2>&1 <<'PY'
import os, torch
print("python_torch", torch.__version__)
print("torch_cuda", torch.version.cuda)
print("cudnn", torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
print("cuda_available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device_count", torch.cuda.device_count())
    print("device_name", torch.cuda.get_device_name(0))
    print("capability", torch.cuda.get_device_capability(0))
print("cxx11_abi", torch.compiled_with_cxx11_abi())
print("lib_dir", os.path.dirname(torch.__file__) + "/lib")
PY
then have_torch=1; fi
cat "$out/python-torch.txt"
torch_lib="${ATTNLAB_GPU_TORCH_LIB:-}"
if [ -z "$torch_lib" ] && [ "$have_torch" -eq 1 ]; then torch_lib=$(sed -n 's/^lib_dir //p' "$out/python-torch.txt"); fi
if [ -z "$torch_lib" ] || [ ! -f "$torch_lib/libtorch_cpu.so" ]; then
  echo "no libtorch: Python torch is not importable and ATTNLAB_GPU_TORCH_LIB is not set (or has no libtorch_cpu.so): '$torch_lib'"
  finish "FAILED: no libtorch" 2
fi
echo "libtorch lib folder: $torch_lib"
ls -la "$torch_lib" | grep -E 'lib(c10|torch)[a-z_]*\.so' | tee -a "$out/python-torch.txt"
# pip's CUDA libraries (site-packages/nvidia/*/lib) are found through libtorch_cuda's RUNPATH; Python torch also
# preloads them by path when that fails, so put them on the search path too, as Python would find them.
nvidia_dirs=$(ls -d "$torch_lib"/../../nvidia/*/lib 2>/dev/null | xargs -r -n1 realpath 2>/dev/null | paste -sd: -)
[ -n "$nvidia_dirs" ] && echo "pip CUDA library folders: $nvidia_dirs" | tee -a "$out/python-torch.txt"
export LD_LIBRARY_PATH="$torch_lib${nvidia_dirs:+:$nvidia_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ATTNLAB_TORCH_LIB_DIR="$torch_lib"

step "3. ldd -r $bundle/libLibTorchSharp.so (TorchSharp 0.107's native bridge, built for libtorch 2.10)"
if [ ! -f "$bundle/libLibTorchSharp.so" ]; then
  echo "no bundle at $bundle: run environment/gpu/build-bundle.sh on the build machine and carry that folder"
  finish "FAILED: no bundle" 2
fi
ldd -r "$bundle/libLibTorchSharp.so" > "$out/ldd.txt" 2>&1
sed 's/^/  /' "$out/ldd.txt" | grep -v 'undefined symbol' | head -40
grep -o 'undefined symbol: [^[:space:]]*' "$out/ldd.txt" | cut -d' ' -f3 | sort -u > "$out/undefined-symbols.mangled.txt"
missing_libs=$(grep -E '=> not found' "$out/ldd.txt" || true)
strong_versions=$(grep -E "version \`[^']*' not found" "$out/ldd.txt" | grep -v 'weak version' || true)
undefined=$(wc -l < "$out/undefined-symbols.mangled.txt")
if [ "$undefined" -gt 0 ] || [ -n "$missing_libs" ] || [ -n "$strong_versions" ]; then
  if command -v c++filt >/dev/null; then
    paste "$out/undefined-symbols.mangled.txt" <(c++filt < "$out/undefined-symbols.mangled.txt") > "$out/undefined-symbols.txt"
  else
    { echo "(c++filt not found: mangled names only)"; cat "$out/undefined-symbols.mangled.txt"; } > "$out/undefined-symbols.txt"
  fi
  echo
  echo "STOP: libLibTorchSharp.so does not link against this libtorch ($torch_lib)."
  [ -n "$missing_libs" ] && echo "missing libraries:" && echo "$missing_libs" | sed 's/^/  /'
  [ -n "$strong_versions" ] && echo "missing symbol versions:" && echo "$strong_versions" | sed 's/^/  /'
  if [ "$undefined" -gt 0 ]; then
    echo "$undefined undefined symbol(s) — functions TorchSharp's bridge calls that this libtorch does not export"
    echo "(an ABI change between the libtorch it was built for and this one). Mangled, then demangled:"
    head -60 "$out/undefined-symbols.txt" | sed 's/^/  /'
    [ "$undefined" -gt 60 ] && echo "  ... all $undefined in undefined-symbols.txt"
  fi
  finish "FAILED: TorchSharp's native bridge does not fit this libtorch (see undefined-symbols.txt)" 5
fi
echo "ldd -r: every library found, no undefined symbols"

step "4. the bundle: $bundle/attnlab-gpucheck --out $out $*"
exe="$bundle/attnlab-gpucheck"
if [ ! -x "$exe" ]; then
  chmod +x "$exe" 2>/dev/null || { cp -r "$bundle" "${TMPDIR:-/tmp}/attnlab-bundle" && exe="${TMPDIR:-/tmp}/attnlab-bundle/attnlab-gpucheck" && chmod +x "$exe"; }
fi
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_gcServer=0
timeout --kill-after=10 "${ATTNLAB_GPU_TIMEOUT:-420}" "$exe" --out "$out" "$@" 2>&1 | tee "$out/bundle.log"
bundle_rc=${PIPESTATUS[0]}
echo "bundle exit code: $bundle_rc"

step "5. Python torch cross-check of one reference-attention case"
xcheck_rc=0
if [ "$have_torch" -eq 1 ] && [ -f "$out/xcheck/meta.txt" ]; then
  "$python" environment/gpu/xcheck.py "$out/xcheck" "$out/python-xcheck.csv" 2>&1 | tee "$out/xcheck.txt"
  xcheck_rc=${PIPESTATUS[0]}
else
  echo "skipped: $([ "$have_torch" -eq 1 ] && echo "the bundle wrote no xcheck/" || echo "Python torch is not importable here")" | tee "$out/xcheck.txt"
fi

if [ "$bundle_rc" -eq 0 ] && [ "$xcheck_rc" -eq 0 ]; then finish "OK" 0; fi
if [ "$bundle_rc" -ne 0 ]; then
  case "$bundle_rc" in
    1) why="a correctness check failed (correctness.csv)";;
    2) why="libtorch did not load or bad arguments (bundle.log)";;
    124|137) why="the bundle ran past ${ATTNLAB_GPU_TIMEOUT:-420} s (partial CSVs kept)";;
    *) why="the bundle failed with exit code $bundle_rc (bundle.log)";;
  esac
  finish "FAILED: $why" "$bundle_rc"
fi
finish "FAILED: the Python cross-check disagrees (xcheck.txt)" 4
