"""What-if: the fast grid's halving replayed on the full grid's curves.

`hpsearch bench --only search` keeps every full-grid cell's curve (common
seeds; a cell the fast grid trains is bit for bit the same), so the halving
rule can be replayed offline for any order in which cells reach their rungs.
This replays the pruner's rule (`hpsearch.search.study.halving.promotable`,
rungs `settle` after each milestone) with two groupings, over 2,000 random
cell orders, counting the trunk epochs once per (batch size, weight decay):

    python .experiments/grid-cost/simulate_halving.py .experiments/grid-cost/bench-schedule-groups.json
"""

import json
import random
import statistics
import sys

from optuna.study import StudyDirection

from hpsearch.search.study.halving import promotable
from hpsearch.search.train.config import scale_milestones

r = json.load(open(sys.argv[1]))["grid_search"]
E = r["epochs"]
curves = {k: {int(e): v for e, v in c.items()} for k, c in r["full"]["curves"].items()}
best = {k: max(c.values()) for k, c in curves.items()}
winner = max(best, key=best.get)


def cell(key):
    p = dict(kv.split("=") for kv in key.split(", "))
    p["milestones"] = scale_milestones([int(m) for m in p["milestones"].split(",")], 200, E)
    return p


def replay(group_of, eta, order, settle=0.05):
    seen, trunks, trained, done = {}, {}, 0, []
    for key in order:
        p = cell(key)
        fork = p["milestones"][0]
        trunks[(p["batch_size"], p["weight_decay"])] = max(trunks.get((p["batch_size"], p["weight_decay"]), 0), fork)
        stop = E
        for rung in [m + max(1, round(settle * E)) for m in p["milestones"] if m + max(1, round(settle * E)) < E]:
            values = seen.setdefault((group_of(p), rung), [])
            values.append(curves[key][rung])
            if not promotable(curves[key][rung], values, eta, StudyDirection.MAXIMIZE):
                stop = rung
                break
        trained += stop - fork
        done += [key] if stop == E else []
    found = max(done, key=best.get)
    return (trained + sum(trunks.values())) / (len(curves) * E), best[winner] - best[found] <= 0.003


print(f"{len(curves)} cells, {E} epochs; the full grid's best: {winner} ({best[winner]:.2%})")
for name, group_of in (("same milestones", lambda p: tuple(p["milestones"])),
                       ("same LR schedule (milestones and gamma)", lambda p: (tuple(p["milestones"]), p["gamma"]))):
    for eta in (2, 3, 4):
        runs = [replay(group_of, eta, random.Random(i).sample(sorted(curves), len(curves))) for i in range(2000)]
        ratios = [x for x, _ in runs]
        print(f"{name}, eta {eta}: compute {statistics.mean(ratios):.2f}x of the full grid "
              f"({min(ratios):.2f}-{max(ratios):.2f}), best cell found in {sum(f for _, f in runs) / len(runs):.0%} of orders")
