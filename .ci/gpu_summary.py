"""Every figure of `.ci/gpu_check.sh`'s JSON files, one line each.

    python3 .ci/gpu_summary.py OUT_DIR

Reads OUT_DIR/*.json written by `hpsearch bench --json` (any parts) and
`hpsearch train --json` (train*.json). Plain standard library: it also runs
where hpsearch does not import. tests/test_bench.py runs it on a
`bench --quick --device cpu` JSON.
"""

import json
import sys
from pathlib import Path


def rate(v):
    return f"{v:,.0f}" if isinstance(v, (int, float)) else "-"


def bench(name, r):
    print(f"{name}: {r.get('device_name')} ({r.get('device')}), torch {r.get('torch')}, model {r.get('model')}")
    d = r.get("data_path", {})
    if "ratio" in d:
        print(f"  data path: ours {rate(d['ours_images_per_s'])} img/s vs torchvision "
              f"{rate(d['torchvision_images_per_s'])} ({d['num_workers']} workers): {d['ratio']:.1f}x")
    s = r.get("train_step", {})
    if "ratio" in s:
        print(f"  step at batch {s['batch_size']}: train()'s default path {rate(s['ours_images_per_s'])} vs plain "
              f"loop {rate(s['naive_images_per_s'])} img/s: {s['ratio']:.2f}x; epoch loop with augmentation "
              f"{rate(s['ours_with_augmentation_images_per_s'])} img/s, host syncs/step {s.get('host_syncs_per_step')}"
              f"; path: {s.get('ours_why')}")
    v = r.get("step_variants", {})
    for b, row in v.get("by_batch_size", {}).items():
        if "variants" not in row:
            print(f"  step variants at batch {b}: {row.get('error')}")
            continue
        cells = []
        for key, x in sorted(row["variants"].items(), key=lambda kv: -kv[1]["images_per_s"]):
            extra = ""
            if x["compile"] != "off":
                be = x.get("break_even_images")
                extra = f" [compile {x['compile_seconds']:.1f} s, break-even {rate(be) if be else 'never'} img]"
            cells.append(f"{key} {rate(x['images_per_s'])} ({x['vs_plain']:.2f}x){extra}")
        print(f"  step variants at batch {b} (plain loop {rate(row['plain_images_per_s'])} img/s): " + "; ".join(cells))
        for k, err in row.get("errors", {}).items():
            print(f"    {k} failed: {err}")
    for skipped in v.get("compile_skipped", []):
        print(f"  not measured: torch.compile {skipped}")
    cb = v.get("cudnn_benchmark", {})
    if "images_per_s" in cb:
        print(f"  cudnn.benchmark on {cb['on']}: {rate(cb['images_per_s'])} img/s ({cb['speedup']:.2f}x)")
    p = r.get("paths", {})
    for cls, row in p.get("classes", {}).items():
        print(f"  accuracy {cls} (as {row['variant']}): val acc {[round(a, 4) for a in row['val_acc']]}, "
              f"{row['difference'] * 100:+.2f} pts vs fp32 (tolerance {row['tolerance'] * 100:.1f}): "
              + ("keeps" if row["keeps_accuracy"] else "LOSES") + f" accuracy; {row['seconds']:.0f} s")
    for b, runs in r.get("defaults", {}).items():
        print(f"  default at batch {b}: " + "; ".join(f"{k.replace('_', ' ')} -> {x['path']}" for k, x in runs.items()))
    f = r.get("fused_trials", {})
    for m in f.get("members", []):
        print(f"  {m['members']} trial(s) as one model: {rate(m['fused_images_per_s'])} img/s, "
              f"{m['vs_one_trial_alone']:.2f}x one trial alone (sequential {rate(m['sequential_images_per_s'])})")
    a = r.get("fused_agreement", {})
    if "max_train_loss_diff" in a:
        print(f"  fused vs alone ({a['trials']} trials x {a['epochs']} epochs): largest train-loss difference "
              f"{a['max_train_loss_diff']:.1e}, val-acc {a['max_val_acc_diff']:.3f} ({a['execution']})")
    pr = r.get("processes", {})
    if "rows" in pr:
        mps = "CUDA MPS running" if pr["mps"]["running"] else "no MPS"
        print(f"  worker processes ({mps}): " + "; ".join(
            f"{x['processes']}: {rate(x['aggregate_images_per_s'])} img/s ({x['vs_one_process_alone']:.2f}x one alone)"
            for x in pr["rows"]))
    for k, x in r.items():
        if isinstance(x, dict) and "error" in x:
            print(f"  {k} failed: {x['error']}")


def main(out: Path) -> None:
    files = sorted(out.glob("*.json"))
    if not files:
        print(f"no JSON files in {out}")
    for p in files:
        try:
            r = json.loads(p.read_text())
        except ValueError as e:
            print(f"{p.name}: unreadable ({e})")
            continue
        if "hpsearch_bench" in r:
            bench(p.name, r)
        elif "epochs" in r:
            secs = [e["seconds"] for e in r["epochs"]]
            print(f"{p.name}: {r['status']}, best val_acc {r['best_val_acc']:.4f}; epoch seconds "
                  f"{[round(s, 2) for s in secs]}; path: {r.get('execution', {}).get('why')}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
