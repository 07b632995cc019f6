"""Tables (mean ± std over seeds) from results.jsonl and seed_results.jsonl, as Markdown."""
import json
import statistics as st
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent


def ms(v):
    v = [100 * x for x in v]
    sd = st.stdev(v) if len(v) > 1 else float("nan")
    return f"{st.mean(v):.1f} ± {sd:.1f}" if len(v) > 1 else f"{v[0]:.1f} (1 seed)"


rows = [json.loads(line) for line in (HERE / "results.jsonl").read_text().splitlines()]
g = defaultdict(list)
for r in rows:
    g[(r["kind"], r["name"], r["augment"])].append(r)
print("| path | init | augment | seeds | final val acc % (mean ± sd) | per seed | worst | train loss ep1/2/3 (mean) |")
print("|---|---|---|---|---|---|---|---|")
for (kind, name, aug), rs in sorted(g.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])):
    rs.sort(key=lambda r: r["seed"])
    vals = [r["final_val"] for r in rs]
    tl = ""
    if kind == "ours":
        tl = "/".join(f"{st.mean(r['train_loss'][i] for r in rs):.2f}" for i in range(3))
    print(f"| {'search.train' if kind == 'ours' else 'parity plain loop'} | {name} | {aug} | "
          f"{','.join(str(r['seed']) for r in rs)} | {ms(vals)} | {', '.join(f'{100 * v:.1f}' for v in vals)} | "
          f"{100 * min(vals):.1f} | {tl} |")
ep = [s for r in rows if r["kind"] == "ours" for s in r["epoch_s"]]
if ep:
    print(f"\nsearch.train epoch seconds (incl. 5,000-image val): min {min(ep):.1f}, median {st.median(ep):.1f}, max {max(ep):.1f}")
pl = [r["seconds"] / 3 for r in rows if r["kind"] == "plain"]
if pl:
    print(f"plain loop seconds per epoch (run / 3): min {min(pl):.1f}, max {max(pl):.1f}")
p = HERE / "seed_results.jsonl"
if p.exists():
    print("\n| model | init | seed | val acc % at steps | train loss (mean over each interval) | seconds |")
    print("|---|---|---|---|---|---|")
    for line in p.read_text().splitlines():
        r = json.loads(line)
        accs = ", ".join(f"{e['step']}: {100 * e['val_acc']:.1f}" for e in r["log"])
        losses = ", ".join(f"{e['train_loss']:.2f}" for e in r["log"])
        print(f"| {r.get('model', 'resnet-seed')} | {r['name']} | {r['seed']} | {accs} | {losses} | {r['seconds']:.0f} |")
