"""Figures the chapters share: loss curves and a picture of a small computation graph."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt

from microgpt_lib.rungs.rung1_scalar.value import Value, topological_order


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Mean of the last `window` values at each point (shorter at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_losses(curves: dict[str, Sequence[float]], window: int = 50, ax=None, title: str = ""):
    """Per-step losses (faint) with their moving average (solid), one colour per curve."""
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    for i, (label, losses) in enumerate(curves.items()):
        colour = f"C{i}"
        ax.plot(losses, color=colour, alpha=0.25, linewidth=0.8)
        ax.plot(moving_average(losses, window), color=colour, label=f"{label} ({window}-step mean)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def draw_graph(root: Value, names: dict[Value, str] | None = None, ax=None):
    """Draw the graph behind `root`: leaves on the left, each box shows op, data and grad.

    Meant for graphs of a few dozen nodes; a node's column is its longest path from a leaf.
    """
    names = names or {}
    order = topological_order(root)
    depth: dict[Value, int] = {}
    for node in order:
        depth[node] = 1 + max((depth[c] for c in node._children), default=-1)
    columns: dict[int, list[Value]] = {}
    for node in order:
        columns.setdefault(depth[node], []).append(node)
    pos = {node: (d, -row + (len(col) - 1) / 2)
           for d, col in columns.items() for row, node in enumerate(col)}
    height = max(len(col) for col in columns.values())
    ax = ax or plt.subplots(figsize=(2.4 * len(columns), 1.1 * height + 0.8))[1]
    for node in order:
        for child in node._children:
            ax.annotate("", xy=pos[node], xytext=pos[child],
                        arrowprops=dict(arrowstyle="->", color="0.5", shrinkA=28, shrinkB=28))
    for node in order:
        label = names.get(node) or node._op or "leaf"
        text = f"{label}\ndata {node.data:.4g}\ngrad {node.grad:.4g}"
        colour = "#dbe9f6" if not node._children else "#fde9c9"
        ax.text(*pos[node], text, ha="center", va="center", fontsize=8, family="monospace",
                bbox=dict(boxstyle="round", facecolor=colour, edgecolor="0.4"))
    ax.set_xlim(-0.6, len(columns) - 0.4)
    ax.set_ylim(-height / 2 - 0.2, height / 2 + 0.2)
    ax.axis("off")
    return ax
