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
