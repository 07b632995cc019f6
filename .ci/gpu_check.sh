#!/usr/bin/env bash
# GPU check of the fast training path and of several trials per GPU
# (`hpsearch bench`); not run by CI.
#
# From the repository root, on a machine with a CUDA GPU and torch installed
# (hpsearch itself need not be installed):
#     OUT=/some/dir bash .ci/gpu_check.sh        # OUT defaults to ./gpu-out
# It writes $OUT/bench-resnet-seed.json (data path, step, fused trials,
# compile and cudnn.benchmark variants), $OUT/bench-resnet-seed-bNNN.json
# (the step at batch 32, 256 and 512), $OUT/bench-resnet-tiny.json,
# $OUT/train.json and $OUT/gpu_check.log.
#
# Needs torch, torchvision, numpy, pillow, click and rich. The `hpsearch` group
# also imports optuna at start-up: where optuna is missing, wheels in .whl/
# (optuna, alembic, sqlalchemy, mako, colorlog for the machine's Python) are
# installed into /tmp/site; failing that the bench and train commands are
# invoked directly, which works without optuna. The search-overhead part of
# the bench (MLflow + Optuna stores) is measured on the CPU machine, not here.
#
# Budget: under 10 minutes on an H100/H200 in all (the step limits add up to
# 420 s), start-up included. Each step has its own time limit
# so that a slow torch.compile cannot eat the others, and `bench` writes its
# JSON after every part (compilation comes last), so a step cut short still
# leaves its figures.
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

# Data path, training step and fused trials (1, 2, 4, 8, 16 trials as one
# model against one trial alone) of the report's network at batch 64, then
# cudnn.benchmark and torch.compile variants of the step (compilation last).
step 150 bench-resnet-seed "${BENCH[@]}" --device cuda --model resnet-seed --only data --only step --only fused \
  --json "$OUT/bench-resnet-seed.json"
# The step (ours: channels_last + bf16, against plain fp32) at Table 2's other batch sizes.
for b in 32 256 512; do
  step 50 "bench-resnet-seed-b$b" "${BENCH[@]}" --device cuda --model resnet-seed --batch-size "$b" --only step \
    --json "$OUT/bench-resnet-seed-b$b.json"
done
# The tiny preset: launch-bound, where compile and fusion should help most.
step 60 bench-resnet-tiny "${BENCH[@]}" --device cuda --model resnet-tiny --only step --only fused \
  --json "$OUT/bench-resnet-tiny.json"
# A real 3-epoch run on a CIFAR-10-sized synthetic set (50,000 train / 5,000 val):
# ~14 s an epoch on an H200, so 60 s lets all three finish and train.json be
# written. Its val_acc shows whether resnet-seed learns under bf16 (it sat at
# chance with the earlier init).
step 60 train "${TRAIN[@]}" --model resnet-seed --dataset synthetic --set synthetic_size=55000 \
  --set val_size=5000 --epochs 3 --device cuda --no-track --json "$OUT/train.json"

python3 - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for name in ("bench-resnet-seed.json", "bench-resnet-seed-b32.json", "bench-resnet-seed-b256.json",
             "bench-resnet-seed-b512.json", "bench-resnet-tiny.json"):
    p = out / name
    if not p.exists():
        print(f"{name}: missing"); continue
    r = json.loads(p.read_text())
    d, s = r.get("data_path", {}), r.get("train_step", {})
    print(f"{name}: {r.get('device_name')} torch {r.get('torch')}")
    if "ratio" in d:
        print(f"  data path: ours {d['ours_images_per_s']:,.0f} img/s vs torchvision {d['torchvision_images_per_s']:,.0f}"
              f" ({d['num_workers']} workers): {d['ratio']:.1f}x")
    if "ratio" in s:
        print(f"  step {s['model']}: ours {s['ours_images_per_s']:,.0f} vs naive {s['naive_images_per_s']:,.0f} img/s:"
              f" {s['ratio']:.2f}x; full loop {s['ours_with_augmentation_images_per_s']:,.0f} img/s,"
              f" host syncs/step {s.get('host_syncs_per_step')}")
        for k, v in (s.get("variants") or {}).items():
            print(f"  + {k}: {v}")
    for m in r.get("fused_trials", {}).get("members", []):
        print(f"  {m['members']} trial(s) as one model: {m['fused_images_per_s']:,.0f} img/s, "
              f"{m['vs_one_trial_alone']:.2f}x one trial alone (sequential {m['sequential_images_per_s']:,.0f})")
    for k, v in r.items():
        if isinstance(v, dict) and "error" in v:
            print(f"  {k} failed: {v['error']}")
p = out / "train.json"
if p.exists():
    t = json.loads(p.read_text())
    secs = [e["seconds"] for e in t["epochs"]]
    print(f"train.json: best val_acc {t['best_val_acc']:.4f}; epoch seconds {[round(s, 2) for s in secs]}"
          f" ({50000 / min(secs):,.0f} img/s incl. eval at best)")
else:
    print("train.json: missing")
EOF
echo "total $(( $(date +%s) - START ))s"
