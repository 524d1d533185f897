#!/usr/bin/env bash
# The scale-out check of a GPU machine, offline, in one call sized for under 8 minutes: DDP, FSDP2
# and DeepSpeed ZeRO-2 (when `import deepspeed` works) on a bert-base-shaped and a gpt2-shaped
# model built here from their configs (tokens/s, peak memory per process, MFU), and an exact
# resume of an FSDP run killed with SIGKILL at a checkpoint. One table on stdout,
# OUT/gpu_check.json, each run's log under OUT/logs. See docs/distributed.md.
#   bash benchmarks/gpu_check.sh                      # every GPU; OUT=runs/gpu-check
#   bash benchmarks/gpu_check.sh --out /tmp/gpu-check --steps 30 --budget-seconds 600
#   bash benchmarks/gpu_check.sh --cpu-smoke          # tiny models, 2 processes over gloo
# Other options: --models bert,gpt2  --strategies ddp,fsdp,deepspeed  --no-resume-check
#   --resume-check-only
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

smoke=0
for arg in "$@"; do [ "$arg" = "--cpu-smoke" ] && smoke=1; done
if [ "$smoke" = 1 ]; then
  exec "$PY" benchmarks/gpu_check.py "$@"
fi

# How many GPUs: nvidia-smi where it exists, else torch (CUDA_VISIBLE_DEVICES is honoured).
gpus=0
if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
  gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
elif command -v nvidia-smi >/dev/null 2>&1; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
fi
if [ "${gpus:-0}" -lt 1 ]; then
  gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
fi
if [ "${gpus:-0}" -lt 1 ]; then
  echo "gpu_check: no NVIDIA GPU found (nvidia-smi -L, torch.cuda.device_count()). On a CPU" \
    "machine run: bash benchmarks/gpu_check.sh --cpu-smoke" >&2
  exit 2
fi
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
  echo "gpu_check: $gpus GPU(s) found but this torch ($("$PY" -c 'import torch; print(torch.__version__)')) has no CUDA; install a CUDA build of torch" >&2
  exit 2
}
nvidia-smi -L 2>/dev/null || true
exec "$PY" benchmarks/gpu_check.py --gpus "$gpus" "$@"
