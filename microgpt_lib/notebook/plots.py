"""Figures the chapters share: loss curves, a small computation graph, the GPT's block diagram and
one attention head at work.

Sizes and fonts are chosen for the book's text column: figures at most 6.4 inches wide, text at
10 points or more.
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

from microgpt_lib.config import GPTConfig
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
    ax = ax or plt.subplots(figsize=(6.4, 3.4))[1]
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
    ax = ax or plt.subplots(figsize=(1.6 * len(columns), 1.0 * height + 0.8))[1]
    for node in order:
        for child in node._children:
            ax.annotate("", xy=pos[node], xytext=pos[child],
                        arrowprops=dict(arrowstyle="->", color="0.5", shrinkA=30, shrinkB=30))
    for node in order:
        label = names.get(node) or node._op or "leaf"
        text = f"{label}\ndata {node.data:.4g}\ngrad {node.grad:.4g}"
        colour = "#dbe9f6" if not node._children else "#fde9c9"
        ax.text(*pos[node], text, ha="center", va="center", fontsize=10, family="monospace",
                bbox=dict(boxstyle="round", facecolor=colour, edgecolor="0.4"))
    ax.set_xlim(-0.6, len(columns) - 0.4)
    ax.set_ylim(-height / 2 - 0.2, height / 2 + 0.2)
    ax.axis("off")
    return ax


def _box(ax, x: float, y: float, text: str, colour: str, width: float = 5.4, height: float = 0.8):
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                boxstyle="round,pad=0.02,rounding_size=0.15",
                                facecolor=colour, edgecolor="0.35"))
    ax.text(x, y, text, ha="center", va="center", fontsize=10.5)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color="0.3", lw=1.2))


def _plus(ax, x: float, y: float) -> None:
    ax.add_patch(plt.Circle((x, y), 0.28, facecolor="white", edgecolor="0.3", zorder=3))
    ax.text(x, y - 0.02, "+", ha="center", va="center", fontsize=13, zorder=4)


def draw_architecture(config: GPTConfig, ax=None):
    """The GPT of one position as a block diagram, bottom (token in) to top (probabilities out).

    Every box is labelled with the sizes of `config`; the grey line on the left is the residual
    stream's shortcut: each block reads the stream through an RMSNorm and adds its output back.
    """
    c, v, b, hid = config.n_embd, config.vocab_size, config.block_size, 4 * config.n_embd
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 7.6))
        fig.subplots_adjust(left=0, right=1, bottom=0, top=1)
    x, skip, gap = 5.6, 1.3, 0.38
    embed, norm, attn, mlp, out = "#dbe9f6", "#eeeeee", "#fde9c9", "#e3f1dc", "#f4dcef"
    _box(ax, 3.3, 0.5, f"token $x_t$ (of {v})", "white", width=3.6)
    _box(ax, 7.9, 0.5, f"position $t$ (< {b})", "white", width=3.4)
    _box(ax, 3.3, 1.7, f"wte[$x_t$]  ({v}x{c})", embed, width=3.6)
    _box(ax, 7.9, 1.7, f"wpe[$t$]  ({b}x{c})", embed, width=3.4)
    _arrow(ax, (3.3, 0.9), (3.3, 1.3))
    _arrow(ax, (7.9, 0.9), (7.9, 1.3))
    _plus(ax, x, 2.8)
    _arrow(ax, (3.3, 2.1), (x - 0.25, 2.7))
    _arrow(ax, (7.9, 2.1), (x + 0.25, 2.7))
    _box(ax, x, 3.75, f"rmsnorm: {c} numbers", norm)
    _arrow(ax, (x, 3.08), (x, 3.35))
    blocks = [  # each block's boxes, bottom to top; its output joins the stream at a +
        [("rmsnorm", norm, 0.8),
         (f"attention: {config.n_head} heads of {config.head_dim}\nq.k over the KV cache,"
          "\nsoftmax, sum of weighted v", attn, 1.4),
         (f"attn_wo  ({c}x{c})", attn, 0.8)],
        [("rmsnorm", norm, 0.8),
         (f"mlp_fc1 ({hid}x{c}), relu,\nmlp_fc2 ({c}x{hid})", mlp, 1.1)],
    ]
    y = 4.15  # top of the stream so far
    layer_bottom = y + 0.25
    for boxes in blocks:
        branch = y + 0.3  # the residual leaves the stream here
        y = branch + 0.3
        for text, colour, height in boxes:
            _arrow(ax, (x, y - gap if y > branch + 0.3 else branch), (x, y + 0.0))
            _box(ax, x, y + height / 2, text, colour, height=height)
            y += height + gap
        y_plus = y + 0.05
        _arrow(ax, (x, y - gap), (x, y_plus - 0.28))
        _plus(ax, x, y_plus)
        ax.plot([x, skip, skip], [branch, branch, y_plus], color="0.55", lw=2.5)
        _arrow(ax, (skip, y_plus), (x - 0.28, y_plus))
        y = y_plus + 0.28
    ax.add_patch(FancyBboxPatch((0.5, layer_bottom), 9.3, y + 0.35 - layer_bottom,
                                boxstyle="round,pad=0.05", facecolor="none", edgecolor="0.5",
                                linestyle="--"))
    ax.text(9.6, y, f"one layer (x{config.n_layer})", ha="right", va="center",
            fontsize=10, style="italic", color="0.3")
    ax.text(skip - 0.3, (layer_bottom + y) / 2, "residual stream", rotation=90, ha="center",
            va="center", fontsize=10, color="0.35")
    y += 0.7
    _arrow(ax, (x, y - 0.7), (x, y))
    _box(ax, x, y + 0.4, f"lm_head  ({v}x{c})", out)
    _arrow(ax, (x, y + 0.8), (x, y + 1.15))
    _box(ax, x, y + 1.7, f"{v} logits -> softmax\n-> p(next token)", out, height=1.1)
    ax.set_xlim(0, 10)
    ax.set_ylim(0, y + 2.35)
    ax.axis("off")
    return ax


def draw_attention(labels: Sequence[str], scores, weights, outputs):
    """One attention head on a few positions: masked scores, softmax weights, and the outputs.

    `scores` and `weights` are (positions x positions) with row t = the query at position t; entries
    above the diagonal are the future, shown masked. `outputs` is (positions x head width).
    """
    n = len(labels)
    fig, axes = plt.subplots(1, 3, figsize=(6.4, 2.9), width_ratios=[n, n, len(outputs[0])])
    panels = [("scores q.k / sqrt(d)", scores, "RdBu_r"), ("weights (softmax)", weights, "Blues"),
              ("output = sum of a.v", outputs, "PuOr_r")]
    for ax, (title, grid, cmap) in zip(axes, panels):
        cols = len(grid[0])
        shown = [[grid[r][k] if title == panels[2][0] or k <= r else float("nan")
                  for k in range(cols)] for r in range(n)]
        finite = [abs(val) for row in shown for val in row if val == val]
        lim = max(finite) or 1.0
        low = 0.0 if cmap == "Blues" else -lim
        ax.imshow(shown, cmap=cmap, vmin=low, vmax=lim)
        for r in range(n):
            for k in range(cols):
                masked = shown[r][k] != shown[r][k]
                dark = not masked and abs(shown[r][k]) > 0.6 * lim
                ax.text(k, r, "masked" if masked else f"{shown[r][k]:.2f}", ha="center",
                        va="center", fontsize=10, zorder=3,
                        color="0.45" if masked else ("white" if dark else "black"))
                if masked:
                    ax.add_patch(plt.Rectangle((k - 0.5, r - 0.5), 1, 1, color="0.9"))
        ax.set_title(title, fontsize=10)
        ax.set_yticks(range(n), labels if ax is axes[0] else [""] * n, fontsize=10)
        ax.set_xticks(range(cols), labels if cols == n and title != panels[2][0]
                      else [f"dim {k}" for k in range(cols)], fontsize=10)
    axes[0].set_ylabel("query at", fontsize=10)
    axes[0].set_xlabel("key at", fontsize=10)
    axes[1].set_xlabel("key at", fontsize=10)
    fig.tight_layout()
    return axes
