#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and no Rust (the device tool's machine):
# install a wheel built elsewhere, then in stages, each under its own time
# limit so that one hang cannot eat the rest: the driver and NVRTC, a smoke
# test of every kind of operation on the CUDA device, every test's CUDA
# case, and the GPU benchmarks. Build the wheel first on a machine with Rust:
#   maturin build --release -o wheelhouse   (wheelhouse/ is git-ignored)
# Logs go to $OUT (or ./gpu-results): env+smoke, pytest, benchmarks.
#   STAGES="smoke tests bench" scripts/gpu_run.sh   (the default: all three)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-results}"
mkdir -p "$out"
stages="${STAGES:-smoke tests bench}"
export PYTHONUNBUFFERED=1
site=/tmp/cryptgpu-site
rm -rf "$site"
python3 -m pip install --quiet --no-deps --no-compile --target "$site" wheelhouse/cryptgpu-*.whl || exit 1
# Python sources of the working tree over the wheel's (the engine stays the
# wheel's), so a Python-only fix needs no rebuild.
cp -r python/cryptgpu/. "$site/cryptgpu/"
export PYTHONPATH="$site"
# NVRTC and cuBLAS from the CUDA toolkit or the nvidia-* wheels, wherever found
for d in /usr/local/cuda/lib64 $(python3 -c "import glob,site;print(' '.join(glob.glob(site.getsitepackages()[0]+'/nvidia/*/lib')))"); do
    LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}:$d"
done
export LD_LIBRARY_PATH
log="$out/gpu.txt"
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
    lscpu | grep -E "Model name|^CPU\(s\)"
    python3 -c "import torch, cryptgpu; print('torch', torch.__version__, 'cuda_is_available:', cryptgpu.cuda_is_available(), 'device_map:', cryptgpu.cuda.device_map()); print(cryptgpu.cuda.compile_kernels())"
} 2>&1 | tee "$log"
stage() { case " $stages " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
if stage smoke; then
    echo "== smoke" | tee -a "$log"
    timeout "${SMOKE_S:-90}" python3 scripts/gpu_smoke.py 2>&1 | tee -a "$log"
    echo "smoke exit ${PIPESTATUS[0]}" | tee -a "$log"
fi
if stage tests; then
    echo "== tests (CUDA cases)" | tee "$out/pytest.txt"
    timeout "${TESTS_S:-180}" python3 -m pytest -q -p no:cacheprovider -k "cuda and not full_vit" \
        -n "${WORKERS:-6}" --timeout 120 --timeout-method=thread -rfE --tb=short --durations=10 tests 2>&1 \
        | tee -a "$out/pytest.txt" | grep -E "^(FAILED|ERROR)|[0-9] (passed|failed)" | cut -c1-300 | tail -40
    echo "pytest exit ${PIPESTATUS[0]}" | tee -a "$out/pytest.txt"
fi
if stage bench; then
    b="$out/bench.txt"
    echo "== benchmarks" | tee "$b"
    run() { local s=$1; shift; echo "-- $* (limit ${s}s)" | tee -a "$b"; timeout "$s" python3 "$@" 2>&1 | tee -a "$b"; echo "exit ${PIPESTATUS[0]}" | tee -a "$b"; }
    run 45 benchmarks/gpu_gemm.py
    run 60 benchmarks/inference.py --device cuda --models LeNet,AlexNet,VGG
    run "${TRAIN_S:-90}" benchmarks/training.py --device cuda --models "${TRAIN_MODELS:-LeNet,AlexNet/CIFAR,VGG-16/CIFAR}"
    cp benchmarks/inference.csv "$out/" 2>/dev/null
fi
