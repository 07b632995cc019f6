"""`hpsearch plots`: a study's figures as HTML files that display offline.

Optuna draws its own (history, importances, parallel coordinate, slice,
contours of the most important pairs, intermediate values, timeline); we add
the validation-accuracy curves of every trial overlaid and accuracy against
parameter count with its Pareto front. The files share one `plotly.min.js`
beside them (plotly's `include_plotlyjs="directory"`) instead of carrying
4.8 MB each. A figure that cannot be drawn from what the study holds is
skipped with its reason, never drawn empty. Everything written is logged to
the study's parent MLflow run under `plots/`.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from hpsearch.search.keys import TrialAttr
from hpsearch.search.review.model import Review, load_review

DEFAULT_PLOTS_DIR = Path("mlruns/plots")
PLOTLY_JS = "plotly.min.js"
CONTOUR_PARAMS = 3  # contours of every pair among the three most important parameters


# -- data behind our own figures ----------------------------------------------
def val_acc_curves(review: Review) -> list[dict]:
    """val_acc per epoch of every trial that ran an epoch. When the study
    metric is val_acc these are the values reported to Optuna; otherwise they
    come from each trial's MLflow run."""
    curves = []
    for t in review.trials:
        if review.metric == "val_acc":
            steps = sorted(t.intermediate_values)
            values = [t.intermediate_values[s] for s in steps]
        else:
            run_id = t.user_attrs.get(TrialAttr.MLFLOW_RUN_ID)
            history = review.tracker.client.get_metric_history(run_id, "val_acc") if run_id else []
            steps, values = [m.step for m in history], [m.value for m in history]
        if steps:
            curves.append({"number": t.number, "state": t.state.name, "epochs": steps, "values": values,
                           "params": t.params})
    return curves


def accuracy_points(review: Review) -> list[dict]:
    return [
        {"number": t.number, "param_count": int(t.user_attrs[TrialAttr.PARAM_COUNT]),
         "accuracy": float(t.user_attrs[TrialAttr.BEST_VAL_ACC]), "params": t.params}
        for t in review.complete()
        if t.user_attrs.get(TrialAttr.PARAM_COUNT) is not None and t.user_attrs.get(TrialAttr.BEST_VAL_ACC) is not None
    ]


def pareto_front(points: list[dict]) -> list[int]:
    """Trial numbers no other point dominates (at most as many parameters and
    at least as accurate, better in one), fewest parameters first."""
    front = []
    for p in points:
        dominated = any(
            q["param_count"] <= p["param_count"] and q["accuracy"] >= p["accuracy"]
            and (q["param_count"] < p["param_count"] or q["accuracy"] > p["accuracy"])
            for q in points
        )
        if not dominated:
            front.append(p)
    return [p["number"] for p in sorted(front, key=lambda p: (p["param_count"], -p["accuracy"]))]


# -- the figures ----------------------------------------------------------------
@dataclass
class Drawn:
    key: str  # file stem
    title: str
    fig: Any = None  # plotly Figure, or None when skipped
    skipped: str | None = None
    extra: dict = field(default_factory=dict)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _varying(complete: list[FrozenTrial]) -> list[str]:
    """Parameters that take two or more values across completed trials: the
    only ones importances, slices and contours can say anything about."""
    names = sorted({k for t in complete for k in t.params})
    return [n for n in names if len({repr(t.params.get(n)) for t in complete}) >= 2]


def study_figures(review: Review) -> list[Drawn]:
    import optuna.visualization as vis

    from hpsearch.search.review.figures import accuracy_vs_params, overlaid_curves

    study, metric = review.study, review.metric
    complete = review.complete()
    varying = _varying(complete)
    n_done = len(complete)
    out: list[Drawn] = []

    def draw(key: str, title: str, need: str | None, make: Callable[[], Any]) -> Drawn:
        if need:
            d = Drawn(key, title, skipped=need)
        else:
            try:
                d = Drawn(key, title, fig=make())
            except Exception as e:  # one figure Optuna cannot draw must not cost the others
                d = Drawn(key, title, skipped=f"failed: {_first_line(e)}")
            if d.fig is not None and not d.fig.data:  # Optuna warns and returns an empty figure
                d = Drawn(key, title, skipped="Optuna drew nothing from this study")
        out.append(d)
        return d

    one = None if n_done else "needs a completed trial (none yet)"
    draw("optimization_history", "Optimization history", one,
         lambda: vis.plot_optimization_history(study, target_name=metric))

    importances: dict[str, float] = {}
    need = ("needs two completed trials" if n_done < 2 else
            "needs a parameter that takes two values across completed trials" if not varying else None)
    if need is None:
        try:
            importances = optuna.importance.get_param_importances(study, params=varying)
        except Exception as e:  # contours then fall back to the parameters' order
            need = f"failed: {_first_line(e)}"
    draw("param_importances", "Parameter importances", need,
         lambda: vis.plot_param_importances(study, params=varying, target_name=metric))
    need = one or (None if varying else "needs a parameter that takes two values across completed trials")
    draw("parallel_coordinate", "Parallel coordinate", need,
         lambda: vis.plot_parallel_coordinate(study, params=varying, target_name=metric))
    draw("slice", "Slice", need, lambda: vis.plot_slice(study, params=varying, target_name=metric))

    ordered = sorted(varying, key=lambda n: -importances.get(n, 0.0))[:CONTOUR_PARAMS]
    pairs = list(itertools.combinations(ordered, 2))
    if n_done < 2 or not pairs:
        draw("contour", "Contour", "needs two completed trials and two parameters that vary across them",
             lambda: None)
    for a, b in pairs:
        draw(f"contour_{a}_{b}", f"Contour of {a} and {b}", None,
             lambda a=a, b=b: vis.plot_contour(study, params=[a, b], target_name=metric))

    any_curve = any(t.intermediate_values for t in review.trials)
    draw("intermediate_values", "Intermediate values (learning curve of every trial)",
         None if any_curve else "needs a trial that reported an epoch",
         lambda: vis.plot_intermediate_values(study))
    draw("timeline", "Timeline", None if review.trials else "needs a trial",
         lambda: vis.plot_timeline(study))

    curves = val_acc_curves(review)
    best = review.best()
    draw("val_acc_curves", "Validation accuracy of every trial",
         None if curves else "needs a trial that ran an epoch",
         lambda: overlaid_curves(curves, best.number if best else None))
    points = accuracy_points(review)
    draw("accuracy_vs_params", "Accuracy against parameter count",
         None if points else "needs a completed trial with its parameter count",
         lambda: accuracy_vs_params(points, pareto_front(points)))
    return out


# -- writing ----------------------------------------------------------------------
def top_rows(review: Review, n: int = 10) -> list[dict]:
    rows = []
    for rank, t in enumerate(review.ranked()[:n], 1):
        rows.append({"rank": rank, "trial": t.number, "value": t.value,
                     "param_count": t.user_attrs.get(TrialAttr.PARAM_COUNT), "params": t.params,
                     "epochs": t.user_attrs.get(TrialAttr.EPOCHS_RUN, len(t.intermediate_values)),
                     "best_epoch": t.user_attrs.get(TrialAttr.BEST_EPOCH),
                     "seconds": t.duration.total_seconds() if t.duration else None,
                     "run_id": t.user_attrs.get(TrialAttr.MLFLOW_RUN_ID)})
    return rows


def top_table_html(review: Review, n: int = 10) -> str:
    def cell(v, spec=""):
        return "-" if v is None else html.escape(format(v, spec))

    head = ["rank", "trial", review.metric, "parameters", "searched values", "epochs", "best epoch",
            "time (s)", "MLflow run"]
    body = "".join(
        "<tr>" + "".join(f"<td>{c}</td>" for c in (
            r["rank"], r["trial"], cell(r["value"], ".4f"), cell(r["param_count"], ","),
            html.escape(", ".join(f"{k}={v}" for k, v in r["params"].items())), cell(r["epochs"]),
            cell(r["best_epoch"]), cell(r["seconds"], ".1f"), cell(r["run_id"]))) + "</tr>"
        for r in top_rows(review, n)
    )
    if not body:
        return "<p>No completed trial yet.</p>"
    return ("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{body}</tbody></table>")


TABLE_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f3f3f3; }
.skipped { color: #777; }
"""


def _index_html(review: Review, drawn: list[Drawn]) -> str:
    links = "".join(f'<li><a href="{d.key}.html">{html.escape(d.title)}</a></li>' for d in drawn if d.fig)
    skipped = "".join(f'<li class="skipped">{html.escape(d.title)}: {html.escape(d.skipped)}</li>'
                      for d in drawn if d.skipped)
    counts: dict[str, int] = {}
    for t in review.trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    summary = ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())) or "no trials"
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>hpsearch plots: {html.escape(review.name)}</title>
<style>{TABLE_CSS}</style></head><body>
<h1>Study {html.escape(review.name)}</h1>
<p>{len(review.trials)} trials: {html.escape(summary)}; sampler {html.escape(str(review.spec.get('sampler')))},
pruner {html.escape(str(review.spec.get('pruner')))}, {html.escape(review.study.direction.name.lower())}
{html.escape(review.metric)}.</p>
<h2>Figures</h2><ul>{links}</ul>
{f'<h2>Skipped</h2><ul>{skipped}</ul>' if skipped else ''}
<h2>Top trials</h2>{top_table_html(review)}
</body></html>
"""


def write_plots(study_name: str, out_dir: str | Path | None, storage: str | None,
                tracking_uri: str | None, say: Callable[[str], None] = print) -> dict:
    """Write every figure that can be drawn and the index; log them to the
    parent run. Returns {"dir", "written": [paths], "skipped": {key: reason}}."""
    from plotly.offline import get_plotlyjs

    review = load_review(study_name, storage, tracking_uri)
    out = Path(out_dir) if out_dir else DEFAULT_PLOTS_DIR / study_name
    drawn = study_figures(review)
    out.mkdir(parents=True, exist_ok=True)
    # Written every time, not only when missing: a stale copy from another
    # plotly version may not draw the figures of this one.
    (out / PLOTLY_JS).write_text(get_plotlyjs(), encoding="utf-8")
    written = [out / PLOTLY_JS]
    for d in drawn:
        if d.fig is None:
            say(f"skipped {d.key}: {d.skipped}")
            continue
        path = out / f"{d.key}.html"
        d.fig.write_html(path, include_plotlyjs="directory", full_html=True, auto_open=False)
        written.append(path)
    (out / "index.html").write_text(_index_html(review, drawn), encoding="utf-8")
    written.append(out / "index.html")
    if review.parent_run_id:
        for path in written:
            review.tracker.log_file(review.parent_run_id, path, "plots")
    else:
        say(f"study {study_name} has no MLflow parent run recorded; figures not logged")
    return {"dir": out, "written": written, "skipped": {d.key: d.skipped for d in drawn if d.skipped},
            "parent_run_id": review.parent_run_id}
