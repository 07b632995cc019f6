"""`hpsearch report`: one self-contained HTML page about a study, to put
beside a project report. plotly.js is inlined once in the page head and every
figure is a plotly div after it, so the page opens offline, from anywhere,
as a single file.

Everything on it is read back from the two stores: the spec and trials from
Optuna, the best trial's per-epoch history and test accuracy from MLflow.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable
from pathlib import Path

from hpsearch.search.errors import UserError
from hpsearch.search.keys import StudyAttr, Tag, TrialAttr
from hpsearch.search.paths import nearest_existing
from hpsearch.search.review.model import Review, load_review
from hpsearch.search.review.plots import (
    TABLE_CSS,
    figures_html,
    mlflow_ui_url,
    run_link,
    study_figures,
    summarize_review,
    top_table_html,
)

DEFAULT_REPORTS_DIR = Path("mlruns/reports")
CURVE_KEYS = ("train_loss", "val_loss", "train_acc", "val_acc")


def run_history(review: Review, run_id: str) -> list[dict]:
    """Per-epoch records of one run, from its MLflow metric history."""
    by_epoch: dict[int, dict] = {}
    for key in CURVE_KEYS:
        for m in review.tracker.client.get_metric_history(run_id, key):
            by_epoch.setdefault(m.step, {"epoch": m.step})[key] = m.value
    # An epoch missing a metric (a kill between two logs) is left out rather than drawn as zero.
    return [r for _, r in sorted(by_epoch.items()) if all(k in r for k in CURVE_KEYS)]


def _esc(v) -> str:
    return html.escape(str(v))


def _kv_table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _duration(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def summary_rows(review: Review) -> list[tuple[str, str]]:
    spec, trials = review.spec, review.trials
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    compute = sum(t.duration.total_seconds() for t in trials if t.duration)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    space = "".join(f"<li><code>{_esc(k)}</code>: {_esc(v)}</li>" for k, v in (spec.get("space") or {}).items())
    size = (f"{spec['grid_size']} grid cells" if spec.get("sampler") == "grid" and spec.get("grid_size")
            else f"{spec.get('n_trials')} trials" if spec.get("n_trials") else "-")
    rows = [
        ("study file", _esc(spec.get("path", "-"))),
        ("objective", _esc(f"{review.study.direction.name.lower()} {review.metric} (validation hold-out)")),
        ("sampler", _esc(spec.get("sampler", "-"))),
        ("pruner", _esc(spec.get("pruner", "-"))),
        ("planned size", _esc(size)),
        ("parameter budget", _esc(f"{spec['budget']:,}" if spec.get("budget") else "-")),
        ("search space", f"<ul>{space}</ul>" if space else "(nothing searched)"),
        ("trials by state", _esc(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none")),
        ("compute spent", _esc(f"{_duration(compute)} (sum of trial durations, {compute:,.0f} s)")),
    ]
    if starts and ends:
        rows.append(("wall clock", _esc(f"{min(starts):%Y-%m-%d %H:%M} to {max(ends):%Y-%m-%d %H:%M}")))
    return rows


def best_section(review: Review, ui_url: str | None = None) -> tuple[str, list]:
    """The best trial's numbers and its learning-curve figure (or none)."""
    from hpsearch.search.review.figures import learning_curves

    best = review.best()
    if best is None:
        return "<p>No completed trial: nothing to report yet.</p>", []
    run_id = best.user_attrs.get(TrialAttr.MLFLOW_RUN_ID)
    run = review.tracker.client.get_run(run_id) if run_id else None
    metrics, tags = (run.data.metrics, run.data.tags) if run else ({}, {})
    leaky = tags.get(Tag.LEAKY) == "true"
    if "test_acc" in metrics and (leaky or tags.get(Tag.PROMOTED) == "true"):
        test = f"{metrics['test_acc']:.4f} " + (
            "(<strong>LEAKY</strong>: measured by <code>hpsearch promote --select-on-test</code>, which chose "
            "a trial by this figure, so it is optimistic)" if leaky
            else "(measured once by <code>hpsearch promote</code>)")
        if "test_acc_tta" in metrics:
            test += f"; with flip TTA {metrics['test_acc_tta']:.4f}"
    else:
        test = "not measured: the test split is read only by <code>hpsearch promote</code>"
    promotions = (review.study.user_attrs.get(StudyAttr.PROMOTED) or {}).get(str(best.number), [])
    registered = ", ".join(f"{p['model']} v{p['version']}" for p in promotions) or "not registered"
    params = "".join(f"<li><code>{_esc(k)}</code> = {_esc(v)}</li>" for k, v in best.params.items())
    config = best.user_attrs.get(TrialAttr.CONFIG) or {}
    config_rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in config.items())
    count = best.user_attrs.get(TrialAttr.PARAM_COUNT)
    rows = [
        ("trial", f"{best.number} (MLflow run {run_link(review, run_id, ui_url)})"),
        ("searched values", f"<ul>{params}</ul>" if params else "(none)"),
        ("parameter count", _esc(f"{count:,}" if count is not None else "-")),
        ("validation accuracy", _esc(f"{best.user_attrs.get('best_val_acc', best.value):.4f} at epoch "
                                     f"{best.user_attrs.get('best_epoch', '-')} of {best.user_attrs.get('epochs_run', '-')}")),
        ("test accuracy", test),
        ("registered model", _esc(registered)),
    ]
    body = _kv_table(rows)
    if config_rows:
        body += f"<details><summary>full training configuration</summary><table>{config_rows}</table></details>"
    history = run_history(review, run_id) if run_id else []
    figs = [("Learning curves of the best trial",
             learning_curves(history, f"trial {best.number}: loss and accuracy per epoch"))] if history else []
    return body, figs


def _check_out(path: Path) -> None:
    """The report's folder, or the nearest existing folder above it, must be a folder."""
    if path.is_dir():
        raise UserError(f"--out {path}: is a folder; give a file path such as {path / 'report.html'}")
    probe = nearest_existing(path.parent)
    if not probe.is_dir():
        raise UserError(f"--out {path}: cannot be written ({probe} is a file); give a file path in a writable folder")


def write_report(study_name: str, out: str | Path | None, storage: str | None, tracking_uri: str | None,
                 say: Callable[[str], None] = print, mlflow_url: str | None = None) -> Path:
    from plotly.offline import get_plotlyjs

    path = Path(out) if out else DEFAULT_REPORTS_DIR / f"{study_name}.html"
    _check_out(path)  # bad input: one line before any work
    review = load_review(study_name, storage, tracking_uri)
    ui_url = mlflow_ui_url(review, mlflow_url)
    best_html, best_figs = best_section(review, ui_url)
    drawn = study_figures(review)
    figures = best_figs + [(d.title, d.fig) for d in drawn if d.fig is not None]
    for d in drawn:
        if d.skipped:
            say(f"skipped {d.key}: {d.skipped}")
    divs = figures_html(figures)
    skipped = "".join(f"<li class='skipped'>{_esc(d.title)}: {_esc(d.skipped)}</li>" for d in drawn if d.skipped)
    now = dt.datetime.now().astimezone()
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Study {_esc(review.name)}: hpsearch report</title>
<style>{TABLE_CSS}
details {{ margin: 0.5em 0 1em; }}
</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>Study {_esc(review.name)}</h1>
<p>Report written {now:%Y-%m-%d %H:%M %Z} by hpsearch from the Optuna study and its MLflow runs.</p>
<h2>Summary</h2>{_kv_table(summary_rows(review))}
<h2>Best configuration</h2>{best_html}
<h2>Top trials</h2>{top_table_html(review, 10, ui_url)}
<h2>Figures</h2>{divs}
{f'<p>Not drawn:</p><ul>{skipped}</ul>' if skipped else ''}
</body></html>
"""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as e:  # a parent that is a file, a folder without write access, a full disk
        raise UserError(f"--out {path}: cannot be written ({e.strerror or type(e).__name__}); "
                        f"give a file path in a writable folder") from None
    if review.parent_run_id:
        review.tracker.log_file(review.parent_run_id, path, "report")
        summarize_review(review)
    return path
