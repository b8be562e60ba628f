#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and no Rust (the device tool's machine):
# install a wheel built elsewhere, run every test with the CUDA cases, then
# the GPU benchmarks. Build the wheel first on a machine with Rust:
#   maturin build --release -o wheelhouse   (wheelhouse/ is git-ignored)
# Results go to $OUT (or ./gpu-results) for benchmarks/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -m pip install --quiet --no-deps --force-reinstall wheelhouse/cryptgpu-*.whl
python3 -c "import cryptgpu; print('cuda_is_available:', cryptgpu.cuda_is_available(), 'device_map:', cryptgpu.cuda.device_map())" | tee -a "$out/gpu.txt"
python3 -m pytest -q -rs tests 2>&1 | tee "$out/pytest.txt"
python3 benchmarks/gpu_gemm.py 2>&1 | tee "$out/gpu_gemm.txt"
python3 benchmarks/inference.py --device cuda --models LeNet,AlexNet,VGG-16/CIFAR,ResNet-50 2>&1 | tee "$out/inference_cuda.txt"
python3 benchmarks/training.py --device cuda --models VGG-16/CIFAR --batch 32 2>&1 | tee "$out/training_cuda_b32.txt"
python3 benchmarks/training.py --device cuda --models VGG-16/CIFAR --batch-size 128 2>&1 | tee "$out/training_cuda_b128.txt"
python3 benchmarks/training.py --device cuda --models LeNet,AlexNet/CIFAR 2>&1 | tee "$out/training_cuda.txt"
python3 benchmarks/figures.py --devices cpu,cuda 2>&1 | tee "$out/figures.txt"
cp benchmarks/fig1_conv.csv benchmarks/fig2_relu.csv "$out/" 2>/dev/null
