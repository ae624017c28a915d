#!/usr/bin/env bash
# One device call, about 8 minutes on one H100/H200, from the repository root:
#   bash bench/gpu_check.sh            # install the carried wheels (.whl/), sft's CUDA checks, sft vs TRL
#   bash bench/gpu_check.sh --tiny     # the same script on a CPU: no checks, the benchmark's --tiny mode
# Results (tables, JSON, logs) go to $OUT (default bench/results). BUDGET_S (default 480) bounds the whole call:
# the checks get at most 150 s, the benchmark the rest, and skips runs that would not fit (reported as skipped).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
BUDGET_S=${BUDGET_S:-480}
TINY=${1:-}
mkdir -p "$OUT"
START=$(date +%s)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export HF_DATASETS_DISABLE_PROGRESS_BARS=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
export HF_HOME=/tmp/hf-home SFT_CACHE_DIR=/tmp/sft-cache

# 1. TRL and what it needs that the machine lacks (datasets, pandas, ...), from wheels carried with the repository.
if ls .whl/*.whl >/dev/null 2>&1; then
  if python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl; then
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "wheels: not all of .whl/ installs on this Python; TRL runs only if it imports anyway" | tee "$OUT/wheels.txt"
  fi
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 - <<'PY'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "pandas", "pyarrow", "flash_attn"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as e:  # what is missing is part of the report
        print(name, "not importable:", type(e).__name__, str(e)[:120])
PY
} 2>&1 | tee "$OUT/environment.txt"

# 2. sft's CUDA-only paths: attention kernels give the unpacked loss, chunked loss, no host syncs per step.
if [ "$TINY" != "--tiny" ]; then
  timeout 150 python3 bench/gpu_sft_checks.py --out "$OUT" 2>&1 | grep -v -i "warn" | tee "$OUT/checks.log"
fi

# 3. sft vs TRL's SFTTrainer: LoRA r=16 on all linear layers, full fine-tuning on as many layers as fit, flex for both.
LEFT=$(( BUDGET_S - ($(date +%s) - START) ))
if [ "$TINY" = "--tiny" ]; then
  python3 bench/bench_sft_gpu.py --tiny --out "$OUT" 2>&1 | tee "$OUT/bench.log"
else
  timeout $(( LEFT > 60 ? LEFT : 60 )) python3 bench/bench_sft_gpu.py --out "$OUT" --time-budget $(( LEFT - 45 )) \
    2>&1 | tee "$OUT/bench.log"
fi
echo "total $(( $(date +%s) - START )) s"
cat "$OUT/sft_gpu.md" 2>/dev/null
