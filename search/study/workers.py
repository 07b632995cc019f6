"""`hpsearch run --workers N`: N worker processes on one study, one progress view.

The workers coordinate through Optuna's storage alone (the same mechanism as
workers on many machines); this module only starts them, gives each its own
GPU where there are several, shows the study's progress by reading the
storage, and forwards Ctrl-C. The study is created here first, so that the
workers never race to create it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from hpsearch.search.gpus import mps_status
from hpsearch.search.progress import Reporter
from hpsearch.search.study.runner import RunOptions, counts, prepare_stores, requeue_failed, work_left


def worker_args(opts: RunOptions) -> list[str]:
    # Failed trials are queued again here, once, not by every worker.
    args = [sys.executable, "-m", "hpsearch.search.cli", "run", "--study", str(opts.study), "--workers", "1", "--quiet",
            "--no-retry-failed"]
    for flag, value in (("--n-trials", opts.n_trials), ("--epochs", opts.epochs), ("--storage", opts.storage),
                        ("--tracking-uri", opts.tracking_uri), ("--data-dir", opts.data_dir),
                        ("--dataset", opts.dataset), ("--device", opts.device), ("--seed", opts.seed),
                        ("--study-name", opts.study_name), ("--fuse", opts.fuse)):
        if value is not None:
            args += [flag, str(value)]
    for s in opts.sets:
        args += ["--set", s]
    if opts.no_wait:
        args.append("--no-wait")
    return args


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # a broken CUDA install: treat as CPU only
        return 0


def cpu_threads(n: int) -> int:
    """Torch threads of each of n CPU workers: their share of the cores."""
    return max(1, (os.cpu_count() or 1) // n)


def placement(n: int, gpus: int, mps: bool | None = None) -> str:
    """Where the workers train, in words: round robin over the GPUs (each
    worker sees one, as its cuda:0), several to a GPU when there are more
    workers than GPUs, and then whether CUDA MPS lets their kernels overlap
    (`mps`, default: `mps_status()`); CPU workers share the cores."""
    if gpus == 0:
        return f"on the CPU, {cpu_threads(n)} thread(s) each"
    per = {g: [i + 1 for i in range(n) if i % gpus == g] for g in range(gpus)}
    text = "; ".join(f"worker(s) {', '.join(map(str, w))} on GPU {g}" for g, w in per.items() if w)
    if n > gpus:
        if mps is None:
            mps = mps_status()["running"]
        text += ("; workers sharing a GPU run their kernels concurrently (CUDA MPS is running)" if mps else
                 "; workers sharing a GPU take turns on it (no CUDA MPS running: `nvidia-cuda-mps-control -d`, "
                 "started by whoever administers the GPU, lets their kernels overlap)")
    return text


def run_workers(opts: RunOptions, n: int, poll_seconds: float = 2.0) -> int:
    opened, spec, _, _ = prepare_stores(opts)
    study = opened.study
    reporter = Reporter(quiet=opts.quiet)
    if opts.retry_failed:
        requeue_failed(study)
    left, _ = work_left(study, spec)
    if left == 0:
        reporter.always(f"{opened.name}: nothing left to run ({spec.size_text()})")
        return 0
    gpus = _gpu_count()
    procs = []
    for i in range(n):
        env = dict(os.environ)
        if gpus > 1:  # one GPU: every worker uses it (with CUDA MPS running, their kernels overlap)
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        # Each worker trains on its share of the cores; torch would otherwise
        # start as many threads as the machine has in every process.
        if gpus == 0:
            env.setdefault("OMP_NUM_THREADS", str(cpu_threads(n)))
        out = subprocess.DEVNULL if opts.quiet else None
        procs.append(subprocess.Popen(worker_args(opts), env=env, stdout=out, start_new_session=True))
    reporter.info(f"{opened.name}: started {n} workers (pids {', '.join(str(p.pid) for p in procs)}); "
                  + placement(n, gpus))
    last = None
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(poll_seconds)
            line = _status_line(study, spec)
            if line != last:
                reporter.info(line)
                last = line
    except KeyboardInterrupt:
        reporter.always("interrupted: stopping workers (each records its trial as interrupted)")
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        return 130
    codes = [p.returncode for p in procs]
    reporter.always(_status_line(study, spec) + f"; worker exit codes {codes}")
    return 0 if all(c == 0 for c in codes) else 1


def _status_line(study, spec) -> str:
    c = counts(study)
    left, running = work_left(study, spec)
    try:
        best = study.best_trial
        best_text = f"best {best.value:.4f} (trial {best.number})"
    except ValueError:
        best_text = "best -"
    done = sum(v for k, v in c.items() if k in ("COMPLETE", "PRUNED", "FAIL"))
    return f"{study.study_name}: {done} finished, {running} running, {left} to start; {best_text}"
