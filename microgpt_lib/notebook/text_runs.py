"""Chapter 8's figures and sampling panel: a run's four curves, and a prompt box for trained models."""
from __future__ import annotations

import html

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from microgpt_lib.notebook.plots import moving_average
from microgpt_lib.rungs.base import Rung
from microgpt_lib.scenarios import Scenario
from microgpt_lib.train.text_run import RunHistory
from microgpt_lib.train.text_sampling import sample_text


def plot_run(history: RunHistory, title: str = "", grad_clip: float | None = None):
    """2x2: train and validation loss, gradient norm, learning rate, and how much the validation
    loss fell over each window between two validations (a bar below zero: it rose)."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    steps = np.arange(1, len(history.losses) + 1)
    window = max(1, len(steps) // 20)
    ax = axes[0, 0]
    ax.plot(steps, history.losses, color="C0", alpha=0.25, lw=0.8)
    ax.plot(steps, moving_average(history.losses, window), color="C0",
            label=f"train ({window}-step mean)")
    ax.plot(history.val_steps, history.val_losses, "o-", color="C1", ms=4, label="validation")
    ax.set(xlabel="step", ylabel="loss (nats per token)", title="loss")
    ax.legend()
    ax = axes[0, 1]
    ax.plot(steps, history.grad_norms, color="C2", lw=0.8)
    if grad_clip is not None:
        ax.axhline(grad_clip, color="gray", ls="--", label=f"clip at {grad_clip}")
        ax.legend()
    ax.set(xlabel="step", ylabel="global L2 norm", title="gradient norm (before clipping)",
           yscale="log")
    ax = axes[1, 0]
    ax.plot(steps, history.lrs, color="C3")
    ax.set(xlabel="step", ylabel="learning rate", title="learning rate")
    ax = axes[1, 1]
    if len(history.val_losses) > 1:
        fall = -np.diff(history.val_losses)
        ends = history.val_steps[1:]
        widths = np.diff(history.val_steps) * 0.8
        ax.bar(ends, fall, width=-widths, align="edge",
               color=["C4" if f >= 0 else "C3" for f in fall])
    ax.axhline(0, color="black", lw=0.6)
    ax.set(xlabel="step (end of window)", ylabel="fall in validation loss",
           title="validation improvement per window")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


class SamplePanel:
    """Pick a trained scenario, type a prompt, sample: `sample()` does the same from code."""

    def __init__(self, models: dict[str, tuple[Rung, Scenario, object]]) -> None:
        self.models = models
        style = {"description_width": "100px"}
        self.scenario = widgets.Dropdown(options=list(models), description="scenario",
                                         style=style)
        self.prompt = widgets.Text(value="Alice", description="prompt", style=style)
        self.temperature = widgets.FloatSlider(value=0.8, min=0.0, max=1.5, step=0.05,
                                               description="temperature", style=style)
        self.max_chars = widgets.IntSlider(value=200, min=20, max=1000, step=20,
                                           description="max chars", style=style)
        self.seed = widgets.IntText(value=0, description="seed", style=style)
        self.button = widgets.Button(description="Sample", button_style="primary")
        self.output = widgets.HTML()
        self.button.on_click(lambda _: self.sample())
        self.widget = widgets.VBox([self.scenario, self.prompt, self.temperature,
                                    self.max_chars, self.seed, self.button, self.output])

    def _ipython_display_(self) -> None:
        display(self.widget)

    def sample(self) -> str:
        """One sample with the current settings (errors are shown, not raised)."""
        model, scenario, tokenizer = self.models[self.scenario.value]
        try:
            text = sample_text(model, scenario, tokenizer, self.prompt.value or None,
                               temperature=self.temperature.value,
                               stop_at_bos=scenario.documents == "lines",
                               max_chars=self.max_chars.value, seed=self.seed.value)[0]
        except ValueError as err:
            text = f"error: {err}"
        self.output.value = f"<pre style='white-space: pre-wrap'>{html.escape(text)}</pre>"
        return text
