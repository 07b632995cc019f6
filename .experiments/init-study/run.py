"""Run issue-9 jobs, one JSON line each to results.jsonl (skips jobs already there).

python run.py WORKER NWORKERS   # worker k runs jobs k, k+N, ...
Jobs (see JOBS): ("ours", preset-tiny 3 epochs via hpsearch.search.train.loop.train, config overrides),
("plain", hpsearch.search.bench.parity.plain_loop_val_acc), ("seed", resnet-seed plain step loop, see seed_steps.py).
"""
import json
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)
from common import bundle, config  # noqa: E402

OUT = Path(__file__).with_name("results.jsonl")
INITS = {  # name -> TrainConfig overrides
    "fanout+zero": dict(init="kaiming_fan_out", zero_init_residual=True),   # today's default
    "default": dict(init="torch_default", zero_init_residual=False),
    "fanin+zero": dict(init="kaiming_fan_in", zero_init_residual=True),
    "fanout": dict(init="kaiming_fan_out", zero_init_residual=False),
    "fanout+warmup": dict(init="kaiming_fan_out", zero_init_residual=False, warmup_epochs=1),
    "fanout+zero+warmup": dict(init="kaiming_fan_out", zero_init_residual=True, warmup_epochs=1),
    "default+zero": dict(init="torch_default", zero_init_residual=True),
    "fanin": dict(init="kaiming_fan_in", zero_init_residual=False),
}


def jobs():
    js = []
    for seed in (0, 1, 2):  # seed-major: partial results cover every config
        for name in ("fanout+zero", "default", "fanin+zero", "fanout", "fanout+zero+warmup"):
            js.append(("ours", name, False, seed))
        js.append(("plain", "fanout+zero", False, seed))
        for name in ("fanout+zero", "default", "fanout+zero+warmup"):
            js.append(("ours", name, True, seed))
        js.append(("plain", "fanout+zero", True, seed))
    return js


def run(kind, name, augment, seed):
    t = time.perf_counter()
    if kind == "ours":
        from hpsearch.search.train.loop import train
        data = bundle(5000)
        cfg = config(model="resnet-tiny", epochs=3, augment=augment, seed=seed, **INITS[name])
        r = train(cfg, data)
        h = r.history
        out = dict(final_val=h[-1].val_acc, best_val=r.best_val_acc, val=[e.val_acc for e in h],
                   train_loss=[e.train_loss for e in h], epoch_s=[e.seconds for e in h],
                   milestones=list(cfg.milestones), status=r.status)
    else:
        from hpsearch.models import build_model
        from hpsearch.search.bench.parity import plain_loop_val_acc
        data = bundle(5000)
        ov = {k: v for k, v in INITS[name].items() if k != "warmup_epochs"}
        acc = plain_loop_val_acc(lambda: build_model("resnet-tiny", **ov), data.train_x, data.train_y,
                                 data.val_x, data.val_y, epochs=3, lr=0.1, batch_size=64,
                                 milestones=[1, 2], augment=augment, seed=seed)
        out = dict(final_val=acc)
    out.update(kind=kind, name=name, augment=augment, seed=seed, seconds=time.perf_counter() - t)
    return out


if __name__ == "__main__":
    k, n = int(sys.argv[1]), int(sys.argv[2])
    done = set()
    if OUT.exists():
        for line in OUT.read_text().splitlines():
            d = json.loads(line)
            done.add((d["kind"], d["name"], d["augment"], d["seed"]))
    for j in jobs()[k::n]:
        if j in done:
            continue
        res = run(*j)
        with open(OUT, "a") as f:
            f.write(json.dumps(res) + "\n")
        print(json.dumps(res), flush=True)
