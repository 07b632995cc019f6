"""`hpsearch bench` at tiny sizes: a benchmark, not a timed test. The figures
must exist and be positive; their size is not asserted (CI machines vary)."""

import json
import math
import subprocess
import sys
from pathlib import Path


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_quick_bench_prints_and_writes_every_figure(cli, workdir, mnist_wheel, monkeypatch):  # parity and grid cost read real digits
    monkeypatch.setenv("HPSEARCH_SPEEDS", str(workdir / "speeds.json"))
    out = workdir / "bench.json"
    result = cli("bench", "--quick", "--device", "cpu", "--json", out)
    for needle in ("data path", "training step", "search overhead", "grid cost", "as one model", "bench.json"):
        assert needle in result.output

    r = json.loads(out.read_text())
    assert r["device"] == "cpu" and r["quick"] is True
    assert r["cores"] >= 1 and r["torch"] and r["model"] == "resnet-tiny" and r["batch_size"] == 64
    assert set(r["sizes"]) >= {"rounds", "data_images", "trials", "epochs", "synthetic_size", "val_size"}

    d = r["data_path"]
    for key in ("ours_images_per_s", "torchvision_images_per_s", "ratio"):
        assert positive(d[key]), key
    assert d["num_workers"] == r["cores"] and d["images_per_round"] > 0
    assert d["ratio"] == d["ours_images_per_s"] / d["torchvision_images_per_s"]

    s = r["train_step"]
    for key in ("naive_images_per_s", "ours_images_per_s", "ratio", "ours_with_augmentation_images_per_s"):
        assert positive(s[key]), key
    assert s["ours_path"] == {"channels_last": False, "bf16_autocast": False, "compile": "off",
                              "fused_sgd": False}  # nothing measured on this CPU: plain fp32
    assert "nothing measured" in s["ours_why"]

    v = r["step_variants"]  # every eager variant and fused SGD, at the CPU's one batch size; no compile with --quick
    assert v["batch_sizes"] == [64] and v["compile_skipped"] == []
    row = v["by_batch_size"]["64"]
    assert positive(row["plain_images_per_s"])
    assert {"fp32", "fp32+cl", "bf16", "bf16+cl"} < set(row["variants"])
    assert sum("fused_sgd" in k for k in row["variants"]) == 1
    assert all(positive(x["images_per_s"]) and positive(x["vs_plain"]) for x in row["variants"].values())
    p = r["paths"]  # the accuracy check: fp32 and bf16, two seeds each
    assert set(p["classes"]) == {"fp32", "bf16"} and p["classes"]["fp32"]["keeps_accuracy"] is True
    assert all(len(c["val_acc"]) == 2 and c["tolerance"] >= 0.01 for c in p["classes"].values())
    assert set(r["defaults"]["64"]) == {"3_epochs", "200_epochs"}
    assert "defaults on this device" in result.output
    assert not (workdir / "speeds.json").exists()  # --quick figures are not kept
    pr = r["processes"]
    assert [row["processes"] for row in pr["rows"]] == [1, 2] and pr["mps"]["running"] is False
    summary = subprocess.run([sys.executable, str(GPU_SUMMARY), str(workdir)], capture_output=True, text=True)
    assert summary.returncode == 0, summary.stderr
    assert "bench.json" in summary.stdout and "fp32+cl" in summary.stdout and "worker processes" in summary.stdout

    o = r["search_overhead"]
    assert 0 < o["fraction"] < 1 and positive(o["mean_trial_seconds"])
    assert o["trial_size"]["model"] == "resnet-tiny" and o["trial_size"]["trials"] == len(o["trials"]) == 1
    (trial,) = o["trials"]
    assert trial["state"] == "COMPLETE" and trial["epochs"] == r["sizes"]["epochs"]
    assert positive(trial["wall_seconds"]) and positive(trial["epoch_seconds"])
    assert math.isclose(trial["overhead_seconds"], trial["wall_seconds"] - trial["epoch_seconds"])
    assert math.isclose(sum(trial["breakdown_seconds"].values()), trial["overhead_seconds"], abs_tol=1e-3)
    f = r["fused_trials"]  # several trials as one model, against one trial alone
    assert [m["members"] for m in f["members"]] == [1, 2]
    assert all(positive(m["fused_images_per_s"]) and positive(m["vs_one_trial_alone"]) for m in f["members"])
    g = r["grid_search"]  # the fast grid trains less, and what it completes is exactly the full grid's
    assert g["full"]["cells"] == g["fast"]["cells"] == 4
    assert 0 < g["compute_ratio"] < 1 and g["exact_where_complete"] is True
    assert g["full"]["epochs_trained"] == g["full"]["epochs_represented"] == 4 * r["sizes"]["search_epochs"]
    # The study ran in a temporary directory: nothing landed in the caller's.
    assert not (workdir / "mlruns").exists()


def test_bench_refuses_an_unknown_model_in_one_line(cli, workdir):
    r = cli("bench", "--quick", "--device", "cpu", "--model", "resnet-huge", ok=False)
    assert r.exit_code == 2 and "unknown preset 'resnet-huge'" in r.output and "Traceback" not in r.output


GPU_SUMMARY = Path(__file__).resolve().parents[1] / ".ci" / "gpu_summary.py"


def test_quick_processes_part_runs_real_worker_processes(cli, workdir, monkeypatch):
    monkeypatch.setenv("HPSEARCH_SPEEDS", str(workdir / "speeds.json"))  # the workers inherit it: nothing measured
    out = workdir / "procs.json"
    result = cli("bench", "--quick", "--device", "cpu", "--only", "processes", "--json", out)
    assert "worker process" in result.output
    p = json.loads(out.read_text())["processes"]
    cores = json.loads(out.read_text())["cores"]
    assert [r["processes"] for r in p["rows"]] == [1, 2] and p["rows"][0]["vs_one_process_alone"] == 1.0
    for r in p["rows"]:
        assert len(r["workers"]) == r["processes"] and r["threads_each"] == max(1, cores // r["processes"])
        assert all(w["steps"] > 0 and positive(w["images_per_s"]) for w in r["workers"])
        assert math.isclose(r["aggregate_images_per_s"], sum(w["images_per_s"] for w in r["workers"]))
    assert p["path"]["precision"] == "fp32"


def test_bench_refuses_bad_batch_sizes_in_one_line(cli, workdir):
    r = cli("bench", "--quick", "--device", "cpu", "--batch-sizes", "32,x", ok=False)
    assert r.exit_code == 2 and "--batch-sizes '32,x': expected integers" in r.output and "Traceback" not in r.output
