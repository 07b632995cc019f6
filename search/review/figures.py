"""Plotly figures of our own (Optuna's come from optuna.visualization)."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


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
    fig.update_layout(title=title, height=420, template="plotly_white")
    return fig


def overlaid_curves(curves: list[dict], best: int | None, metric: str = "val_acc") -> go.Figure:
    """One line per trial: `curves` items hold `number`, `state`, `epochs`,
    `values` and `params`. The best trial is drawn thick and on top; pruned
    trials dashed and failed ones dotted, so a stopped curve reads as stopped."""
    fig = go.Figure()
    dash = {"PRUNED": "dash", "FAIL": "dot"}
    ordered = sorted(curves, key=lambda c: c["number"] == best)  # the best one last: drawn on top
    for c in ordered:
        is_best = c["number"] == best
        params = ", ".join(f"{k}={v}" for k, v in c["params"].items())
        fig.add_trace(go.Scatter(
            x=c["epochs"], y=c["values"], mode="lines+markers" if is_best else "lines",
            name=f"trial {c['number']} ({c['state'].lower()})" + (" best" if is_best else ""),
            line={"dash": dash.get(c["state"], "solid"), "width": 4 if is_best else 1.5,
                  "color": "crimson" if is_best else None},
            opacity=1.0 if is_best else 0.55,
            hovertemplate=f"trial {c['number']} {c['state'].lower()}<br>{params}<br>"
                          f"epoch %{{x}}: {metric} %{{y:.4f}}<extra></extra>",
        ))
    fig.update_layout(title=f"{metric} of every trial (best thick, pruned dashed, failed dotted)",
                      xaxis_title="epoch", yaxis_title=metric, template="plotly_white", height=480)
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
    fig.update_xaxes(type="log" if len({p["param_count"] for p in points}) > 1 else "linear")
    return fig
