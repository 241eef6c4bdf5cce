#!/usr/bin/env bash
# One-shot GPU check, for a session that is lent an NVIDIA GPU: the TensorRT tests, a torch-tensorrt
# FP16 engine with its parity check, and the live-pipeline latency on TensorRT vs ONNX Runtime.
# Everything it measures lands in bench/results/gpu-<date>/ (commit that folder).
#   bash scripts/gpu-check.sh [MODEL]     MODEL: a checkpoint .pt (e.g. runs/real_temporal_full/temporal.pt)
#                                         or a registry name with random weights (default avs_lite)
# On a machine without a GPU it still runs: the gpu tests are skipped and the TensorRT rows say why.
set -euo pipefail
model="${1:-avs_lite}"
if [ -e "$model" ]; then model="$(cd "$(dirname "$model")" && pwd)/$(basename "$model")"; fi  # before the cd below
cd "$(dirname "$0")/.."
out="bench/results/gpu-$(date -u +%Y-%m-%d)"
mkdir -p "$out"
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh train,dev
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi > "$out/nvidia-smi.txt"
    [ "${SKIP_SETUP:-0}" = 1 ] || .venv/bin/pip install -q -e ".[tensorrt]"
else
    echo "no nvidia-smi: no NVIDIA GPU here; the TensorRT parts are skipped" | tee "$out/nvidia-smi.txt"
fi
.venv/bin/python -m pytest -q -m gpu -rs tests/test_tensorrt.py 2>&1 | tee "$out/pytest-gpu.txt"
if [ -f "$model" ] && command -v nvidia-smi >/dev/null 2>&1; then
    .venv/bin/streamavs export "$model" --backend tensorrt --fp16 --name gpu-check-fp16 --out "$out/engines" \
        2>&1 | tee "$out/export-tensorrt-fp16.txt"
fi
.venv/bin/streamavs bench latency --seconds 20 --warmup 3 --models "$model" --backends tensorrt,onnxruntime \
    --json "$out/latency.json" 2>&1 | tee "$out/latency.txt"
echo "gpu check done: $out"
