"""`hpsearch plots`: a study's figures as HTML files that display offline.

Optuna draws its own (history, importances, parallel coordinate, slice,
contours of the most important pairs, intermediate values, timeline); we add
the validation-accuracy curves of every trial overlaid and accuracy against
parameter count with its Pareto front. On disk the figure pages share one
`plotly.min.js` beside them (plotly's `include_plotlyjs="directory"`) instead
of carrying 4.8 MB each, and `study.html` holds every figure on one page with
plotly.js inlined once. A figure that cannot be drawn from what the study
holds is skipped with its reason, never drawn empty.

Only `study.html` is logged to the study's parent MLflow run (`plots/`):
MLflow's artifact viewer shows an HTML artifact in a sandboxed frame made
from that one file, where a script beside it (`plotly.min.js`) cannot be
loaded, so a page that leans on one draws nothing there.
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

from hpsearch.search.keys import StudyAttr, TrialAttr
from hpsearch.search.review.figures import integer_axis
from hpsearch.search.review.model import Review, load_review

DEFAULT_PLOTS_DIR = Path("mlruns/plots")
PLOTLY_JS = "plotly.min.js"
STUDY_PAGE = "study.html"  # every figure on one self-contained page: the one logged to MLflow
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
         lambda: integer_axis(vis.plot_optimization_history(study, target_name=metric),
                              [t.number for t in review.trials]))

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
         lambda: integer_axis(vis.plot_intermediate_values(study),
                              [s for t in review.trials for s in t.intermediate_values], title_text="epoch"))
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


def mlflow_ui_url(review: Review, given: str | None = None) -> str | None:
    """The MLflow UI's address, where it is known: given (`--mlflow-url`, or
    $HPSEARCH_MLFLOW_URL), or the tracking URI when that is a server."""
    import os

    url = given or os.environ.get("HPSEARCH_MLFLOW_URL")
    if not url and review.tracker is not None and review.tracker.uri.startswith(("http://", "https://")):
        url = review.tracker.uri
    return url.rstrip("/") if url else None


def run_link(review: Review, run_id: str | None, ui_url: str | None) -> str:
    """A run id, as a link to its page in the MLflow UI when the UI's address is known."""
    from hpsearch.search.study.stores import run_url

    if not run_id:
        return "-"
    experiment = review.study.user_attrs.get(StudyAttr.EXPERIMENT)
    if not ui_url or not experiment:
        return html.escape(run_id)
    href = html.escape(run_url(ui_url, experiment, run_id), quote=True)
    return f'<a href="{href}" target="_blank" rel="noopener">{html.escape(run_id)}</a>'


def top_table_html(review: Review, n: int = 10, ui_url: str | None = None) -> str:
    def cell(v, spec=""):
        return "-" if v is None else html.escape(format(v, spec))

    head = ["rank", "trial", review.metric, "parameters", "searched values", "epochs", "best epoch",
            "time (s)", "MLflow run"]
    body = "".join(
        "<tr>" + "".join(f"<td>{c}</td>" for c in (
            r["rank"], r["trial"], cell(r["value"], ".4f"), cell(r["param_count"], ","),
            html.escape(", ".join(f"{k}={v}" for k, v in r["params"].items())), cell(r["epochs"]),
            cell(r["best_epoch"]), cell(r["seconds"], ".1f"), run_link(review, r["run_id"], ui_url))) + "</tr>"
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


def _summary_line(review: Review) -> str:
    counts: dict[str, int] = {}
    for t in review.trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    summary = ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())) or "no trials"
    return (f"{len(review.trials)} trials: {html.escape(summary)}; sampler "
            f"{html.escape(str(review.spec.get('sampler')))}, pruner {html.escape(str(review.spec.get('pruner')))}, "
            f"{html.escape(review.study.direction.name.lower())} {html.escape(review.metric)}.")


def _skipped_html(drawn: list[Drawn]) -> str:
    skipped = "".join(f'<li class="skipped">{html.escape(d.title)}: {html.escape(d.skipped)}</li>'
                      for d in drawn if d.skipped)
    return f"<h2>Skipped</h2><ul>{skipped}</ul>" if skipped else ""


def _index_html(review: Review, drawn: list[Drawn], ui_url: str | None) -> str:
    links = "".join(f'<li><a href="{d.key}.html">{html.escape(d.title)}</a></li>' for d in drawn if d.fig)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>hpsearch plots: {html.escape(review.name)}</title>
<style>{TABLE_CSS}</style></head><body>
<h1>Study {html.escape(review.name)}</h1>
<p>{_summary_line(review)}</p>
<p>Every figure on one page: <a href="{STUDY_PAGE}">{STUDY_PAGE}</a> (self-contained; also in the study's
MLflow run under <code>plots/</code>).</p>
<h2>Figures</h2><ul>{links}</ul>
{_skipped_html(drawn)}
<h2>Top trials</h2>{top_table_html(review, ui_url=ui_url)}
</body></html>
"""


def figures_html(figures: list[tuple[str, Any]]) -> str:
    """Plotly divs with their headings, for a page that loads plotly.js once."""
    # A fixed default height: "100%" of a page that flows has no height to take.
    return "".join(
        f"<h3>{html.escape(title)}</h3>"
        + fig.to_html(full_html=False, include_plotlyjs=False, default_height="520px")
        for title, fig in figures
    )


def study_page_html(review: Review, drawn: list[Drawn], ui_url: str | None) -> str:
    """Every figure on one page with plotly.js inlined once: it opens offline
    from anywhere, MLflow's artifact viewer included."""
    from plotly.offline import get_plotlyjs

    figures = figures_html([(d.title, d.fig) for d in drawn if d.fig is not None])
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>hpsearch plots: {html.escape(review.name)}</title>
<style>{TABLE_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>Study {html.escape(review.name)}</h1>
<p>{_summary_line(review)}</p>
<h2>Top trials</h2>{top_table_html(review, ui_url=ui_url)}
<h2>Figures</h2>{figures}
{_skipped_html(drawn)}
</body></html>
"""


def write_plots(study_name: str, out_dir: str | Path | None, storage: str | None,
                tracking_uri: str | None, say: Callable[[str], None] = print, mlflow_url: str | None = None) -> dict:
    """Write every figure that can be drawn, the index and the one-page
    `study.html`; log `study.html` to the parent run and refresh the parent
    run's summary. Returns {"dir", "written": [paths], "skipped": {key: reason}}."""
    from plotly.offline import get_plotlyjs

    review = load_review(study_name, storage, tracking_uri)
    ui_url = mlflow_ui_url(review, mlflow_url)
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
    (out / "index.html").write_text(_index_html(review, drawn, ui_url), encoding="utf-8")
    written.append(out / "index.html")
    page = out / STUDY_PAGE
    page.write_text(study_page_html(review, drawn, ui_url), encoding="utf-8")
    written.append(page)
    if review.parent_run_id:
        review.tracker.log_file(review.parent_run_id, page, "plots")
        summarize_review(review)
    else:
        say(f"study {study_name} has no MLflow parent run recorded; figures not logged")
    return {"dir": out, "written": written, "skipped": {d.key: d.skipped for d in drawn if d.skipped},
            "parent_run_id": review.parent_run_id}


def summarize_review(review: Review) -> None:
    """The parent run's summary (metrics, description), brought up to date."""
    from hpsearch.search.study.stores import record_study_summary

    experiment = review.study.user_attrs.get(StudyAttr.EXPERIMENT)
    if review.parent_run_id and experiment:
        record_study_summary(review.study, review.tracker, review.parent_run_id, experiment, review.metric,
                             review.study.direction.name.lower())
