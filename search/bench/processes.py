"""Benchmark part "processes": N worker processes sharing one device, as
`hpsearch run --workers N` runs them, against one process alone.

Each worker (`python -m hpsearch.search.bench.processes SPEC.json`, a real
separate process) builds `train()`'s step for the model (`setup()`, the path
`choose_path` picks), warms up, waits until every worker is ready, then steps
for a fixed number of seconds and writes its images/s to a file. The
aggregate is the sum over workers (their timed windows start together and
last as long). On CUDA, kernels of different processes time-slice unless
CUDA MPS runs; on CPU the processes share the cores, each with cores/N
torch threads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hpsearch.search.bench.environment import Sizes, sync
from hpsearch.search.gpus import mps_status

READY_TIMEOUT_S = 300.0  # a worker's start-up and warm-up (CUDA context, first steps)


def _worker(spec_path: str) -> None:
    import torch

    from hpsearch.search.bench.train_step import _ours, _step_inputs
    from hpsearch.search.train.config import TrainConfig

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    config = TrainConfig(model=spec["model"], batch_size=spec["batch_size"], device=device.type, seed=spec["index"])
    step = _ours(config, device, *_step_inputs(device, config.batch_size))  # train()'s step, as the bench times it
    for i in range(spec["warmup"]):
        step(i)
    sync(device)
    folder = Path(spec["folder"])
    (folder / f"ready-{spec['index']}").touch()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not (folder / "go").exists():  # a file barrier: every worker's timed window starts together
        if time.monotonic() > deadline:
            raise SystemExit("worker: no go signal")
        time.sleep(0.005)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < spec["seconds"]:
        step(steps)
        steps += 1
        if device.type == "cuda" and steps % 8 == 0:
            sync(device)  # keep the queue short so the window's end is measured, not enqueued
    sync(device)
    seconds = time.perf_counter() - start
    result = {"steps": steps, "seconds": seconds, "images_per_s": steps * config.batch_size / seconds,
              "threads": spec["threads"], "path": step.run.path.describe()}
    (folder / f"result-{spec['index']}.json").write_text(json.dumps(result))


def run_workers(model: str, device, batch_size: int, n: int, seconds: float, warmup: int,
                cores: int) -> dict[str, Any]:
    """N worker processes at once: each one's images/s and their sum."""
    threads = max(1, cores // n)
    with tempfile.TemporaryDirectory(prefix="hpsearch-procs-") as tmp:
        folder = Path(tmp)
        procs = []
        for i in range(n):
            spec = folder / f"spec-{i}.json"
            spec.write_text(json.dumps({"model": model, "device": str(device), "batch_size": batch_size,
                                        "index": i, "threads": threads, "seconds": seconds, "warmup": warmup,
                                        "folder": tmp}))
            procs.append(subprocess.Popen([sys.executable, "-m", "hpsearch.search.bench.processes", str(spec)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while len(list(folder.glob("ready-*"))) < n:
                dead = [p for p in procs if p.poll() not in (None, 0)]
                if dead:
                    err = dead[0].stderr.read().strip().splitlines()
                    raise RuntimeError(f"worker exited {dead[0].returncode}: {err[-1] if err else ''}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers not ready after {READY_TIMEOUT_S:.0f} s")
                time.sleep(0.01)
            (folder / "go").touch()
            for p in procs:
                _, err = p.communicate(timeout=seconds + READY_TIMEOUT_S)
                if p.returncode != 0:
                    lines = err.strip().splitlines()
                    raise RuntimeError(f"worker exited {p.returncode}: {lines[-1] if lines else ''}")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        workers = [json.loads((folder / f"result-{i}.json").read_text()) for i in range(n)]
    return {"processes": n, "threads_each": threads, "workers": workers,
            "aggregate_images_per_s": sum(w["images_per_s"] for w in workers)}


def bench_processes(model: str, device, batch_size: int, sizes: Sizes, cores: int) -> dict[str, Any]:
    rows = [run_workers(model, device, batch_size, n, sizes.process_seconds, max(2, sizes.step_warmup), cores)
            for n in sizes.process_counts]
    alone = rows[0]["aggregate_images_per_s"] if rows[0]["processes"] == 1 else None
    for r in rows:
        r["vs_one_process_alone"] = r["aggregate_images_per_s"] / alone if alone else None
    return {"model": model, "batch_size": batch_size, "seconds": sizes.process_seconds,
            "mps": mps_status() if device.type == "cuda" else {"running": False, "pipe_directory": None},
            "path": rows[0]["workers"][0]["path"], "rows": rows, "one_process_images_per_s": alone}


if __name__ == "__main__":
    _worker(sys.argv[1])
