"""resnet-seed at lr 0.1: a plain step loop (same model and init as search.train, SGD 0.1/0.9/1e-4,
batch 64, no augmentation, fp32, 9,000 train / 1,000 val of the fixture), val every EVERY steps.

PROXY=1 replaces resnet-seed's widths by stem 8, stages 8/16/32 (same 21 BasicBlocks, same depth,
~1/16 of the compute): resnet-seed itself takes ~14 s a step on one contended CPU core here.

python seed_steps.py NAME SEED STEPS EVERY   (NAME as in run.INITS; "+warmup" = LinearLR over the
first epoch = ceil(9000/64) = 141 steps, as train() does). One JSON line to seed_results.jsonl.
"""
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

torch.set_num_threads(int(__import__("os").environ.get("THREADS", "1")))
from common import bundle  # noqa: E402
from run import INITS  # noqa: E402

from hpsearch.data import prepare_batch  # noqa: E402
from hpsearch.models import build_model  # noqa: E402
from hpsearch.search.train.loop import evaluate  # noqa: E402

name, seed, steps, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ov = dict(INITS[name])
warm = ov.pop("warmup_epochs", 0)
data = bundle(1000)
torch.manual_seed(seed)
proxy = __import__("os").environ.get("PROXY") == "1"
if proxy:
    ov.update(stem_channels=8, channels=(8, 16, 32))
model = build_model("resnet-seed", **ov)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
per_epoch = math.ceil(len(data.train_y) / 64)
sched = torch.optim.lr_scheduler.LinearLR(opt, 1 / (warm * per_epoch), 1.0, warm * per_epoch) if warm else None
g = torch.Generator().manual_seed(seed)
crit = nn.CrossEntropyLoss()
log, losses, t0, step = [], [], time.perf_counter(), 0
while step < steps:
    order = torch.randperm(len(data.train_y), generator=g)
    for i in range(0, len(order) - 63, 64):
        model.train()
        idx = order[i:i + 64]
        loss = crit(model(prepare_batch(data.train_x[idx], None)), data.train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None and sched.last_epoch < sched.total_iters:
            sched.step()
        losses.append(loss.item())
        step += 1
        if step % every == 0:
            vl, va = evaluate(model, data.val_x, data.val_y, 500)
            log.append(dict(step=step, val_acc=va, val_loss=vl, train_loss=sum(losses[-every:]) / every,
                            seconds=time.perf_counter() - t0))
            print(json.dumps(log[-1]), flush=True)
        if step >= steps:
            break
rec = dict(model="resnet-seed" + ("-proxy-8/16/32" if proxy else ""), name=name, seed=seed, steps=steps, log=log,
           losses=[round(v, 4) for v in losses], seconds=time.perf_counter() - t0)
with open(Path(__file__).with_name("seed_results.jsonl"), "a") as f:
    f.write(json.dumps(rec) + "\n")
