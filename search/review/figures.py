"""Figures of our own (Optuna's come from optuna.visualization): plotly for
the pages `hpsearch plots` and `hpsearch report` write, and one matplotlib
image per trial for its MLflow run (a PNG, which MLflow's artifact viewer
shows with no script and no network, at ~40 kB a trial)."""

from __future__ import annotations

from collections.abc import Iterable

import plotly.graph_objects as go
from plotly.subplots import make_subplots

MAX_TICKS = 10


def integer_step(values: Iterable[float], max_ticks: int = MAX_TICKS) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that puts at most `max_ticks`
    ticks over the span of `values` (integers: epochs, trial numbers)."""
    values = list(values)
    span = (max(values) - min(values)) if values else 0
    step = 1
    for scale in (10**k for k in range(0, 12)):
        for m in (1, 2, 5):
            step = m * scale
            if span / step <= max_ticks:
                return step
    return step


def integer_axis(fig: go.Figure, values: Iterable[float], axis: str = "x", **where) -> go.Figure:
    """Ticks on whole numbers only (no 1.5 between epoch 1 and 2)."""
    values = list(values)
    if not values:
        return fig
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    update(tickmode="linear", tick0=0, dtick=integer_step(values), tickformat="d", **where)
    return fig


def count_axis(fig: go.Figure, counts: Iterable[int], axis: str = "x") -> go.Figure:
    """An axis of parameter counts written in full (78,042, not 78.0415k); a
    single count gets a single tick."""
    counts = sorted(set(counts))
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    if len(counts) == 1:
        update(type="linear", tickmode="array", tickvals=counts, ticktext=[f"{counts[0]:,}"])
    else:
        update(type="log", tickformat=",d")
    return fig


def learning_curves(history: list[dict], title: str = "") -> go.Figure:
    """Loss and accuracy per epoch, train and validation, side by side."""
    epochs = [r["epoch"] for r in history]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for key, name, col, dash in (
        ("train_loss", "train loss", 1, "dot"),
        ("val_loss", "val loss", 1, "solid"),
        ("train_acc", "train acc", 2, "dot"),
        ("val_acc", "val acc", 2, "solid"),
    ):
        fig.add_trace(
            go.Scatter(x=epochs, y=[r[key] for r in history], name=name, mode="lines+markers",
                       line={"dash": dash}),
            row=1, col=col,
        )
    fig.update_xaxes(title_text="epoch")
    integer_axis(fig, epochs)
    fig.update_layout(title=title, height=420, template="plotly_white")
    return fig


def learning_curves_image(history: list[dict], title: str = ""):
    """The same curves as `learning_curves`, as a matplotlib figure (for a
    PNG in the trial's MLflow run). One epoch draws as markers, not nothing."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display needed; a no-op when a backend is already chosen
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, panel, keys in ((axes[0], "loss", ("train_loss", "val_loss")),
                            (axes[1], "accuracy", ("train_acc", "val_acc"))):
        for key in keys:
            train = key.startswith("train")
            ax.plot(epochs, [r[key] for r in history], marker="o", markersize=4,
                    linestyle=":" if train else "-", label=key.replace("_", " "))
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def overlaid_curves(curves: list[dict], best: int | None, metric: str = "val_acc") -> go.Figure:
    """One line per trial: `curves` items hold `number`, `state`, `epochs`,
    `values` and `params`. The best trial is drawn thick and on top; pruned
    trials dashed and failed ones dotted, so a stopped curve reads as stopped.
    Every trace carries markers: a trial pruned after one epoch is one point,
    which a line alone would not draw."""
    fig = go.Figure()
    dash = {"PRUNED": "dash", "FAIL": "dot"}
    ordered = sorted(curves, key=lambda c: c["number"] == best)  # the best one last: drawn on top
    for c in ordered:
        is_best = c["number"] == best
        params = ", ".join(f"{k}={v}" for k, v in c["params"].items())
        fig.add_trace(go.Scatter(
            x=c["epochs"], y=c["values"], mode="lines+markers",
            marker={"size": 8 if is_best else 6},
            name=f"trial {c['number']} ({c['state'].lower()})" + (" best" if is_best else ""),
            line={"dash": dash.get(c["state"], "solid"), "width": 4 if is_best else 1.5,
                  "color": "crimson" if is_best else None},
            opacity=1.0 if is_best else 0.55,
            hovertemplate=f"trial {c['number']} {c['state'].lower()}<br>{params}<br>"
                          f"epoch %{{x}}: {metric} %{{y:.4f}}<extra></extra>",
        ))
    fig.update_layout(title=f"{metric} of every trial (best thick, pruned dashed, failed dotted)",
                      xaxis_title="epoch", yaxis_title=metric, template="plotly_white", height=480)
    integer_axis(fig, [e for c in curves for e in c["epochs"]])
    return fig


def accuracy_vs_params(points: list[dict], front: list[int], metric: str = "best val_acc") -> go.Figure:
    """Accuracy against trainable parameters; `front` (trial numbers) is the
    Pareto front: no other trial is at least as accurate with fewer parameters."""
    fig = go.Figure()
    on_front = set(front)
    rest = [p for p in points if p["number"] not in on_front]
    best = sorted((p for p in points if p["number"] in on_front), key=lambda p: p["param_count"])

    def hover(p):
        params = ", ".join(f"{k}={v}" for k, v in p["params"].items())
        return f"trial {p['number']}<br>{p['param_count']:,} parameters<br>{metric} {p['accuracy']:.4f}<br>{params}"

    fig.add_trace(go.Scatter(
        x=[p["param_count"] for p in rest], y=[p["accuracy"] for p in rest], mode="markers",
        name="trials", marker={"size": 8, "color": "steelblue", "opacity": 0.6},
        text=[hover(p) for p in rest], hovertemplate="%{text}<extra></extra>",
    ))
    fig.add_trace(go.Scatter(
        x=[p["param_count"] for p in best], y=[p["accuracy"] for p in best], mode="lines+markers",
        name="Pareto front", line={"shape": "hv", "color": "crimson"},
        marker={"size": 11, "symbol": "star", "color": "crimson"},
        text=[hover(p) for p in best], hovertemplate="%{text}<extra></extra>",
    ))
    fig.update_layout(title=f"{metric} against parameter count (Pareto front marked)",
                      xaxis_title="trainable parameters", yaxis_title=metric,
                      template="plotly_white", height=480)
    count_axis(fig, [p["param_count"] for p in points])
    return fig
