"""Chapters 2-5's retraining panels: change a setting, retrain a tiny model, see what changed.

Each panel pairs a run function with a figure function, both usable without a widget: a chapter
calls them in a normal cell for its default run (the book shows that figure), and the panel
below it calls the same two functions when the reader presses Train in a live kernel.

- chapter 2, `race_rungs` / `RacePanel`: two pure-Python rungs train on the same names; the
  losses are the same, the clock is not;
- chapter 3, `precision_run` / `PrecisionPanel`: float64 against float32 at a chosen width;
- chapter 4, `batch_run` / `BatchPanel`: batch size and learning rate of the batched trainer,
  with the validation curve;
- chapter 5, `shakespeare_run` / `ShakespearePanel`: fastops on tiny Shakespeare, then a sample.

Every run uses the library's trainers (`train.loop.train`, `train.batched.train_batched`,
`train.shakespeare.train_char_gpt`); nothing here has a training loop of its own.
"""
from __future__ import annotations

import dataclasses
import html
import random
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from microgpt_lib.batches import EncodedDocs
from microgpt_lib.config import ConfigError, GPTConfig
from microgpt_lib.data import names_corpus, split_docs
from microgpt_lib.notebook.plots import moving_average
from microgpt_lib.params import init_params
from microgpt_lib.rungs import get_rung
from microgpt_lib.rungs.rung4_numpy_kernels.batched_backend import NumpyBackend
from microgpt_lib.train.batched import BatchedHistory, TrainSettings, train_batched
from microgpt_lib.train.loop import TrainingHistory, train
from microgpt_lib.train.shakespeare import CharRun, Recipe, sample_chars, train_char_gpt

PURE_PYTHON = "microgpt_lib.rungs.rung2_python_fast.variants:"
RACE_RUNGS = {  # label: rung, the pure-Python rungs of chapter 2 in ladder order
    "scalar": "scalar",
    "scalar_iterative": PURE_PYTHON + "ScalarIterativeGPT",
    "scalar_gc_paused": PURE_PYTHON + "ScalarGCPausedGPT",
    "scalar_fused": PURE_PYTHON + "ScalarFusedGPT",
    "python_fast": "python_fast",
}


def names_config(n_embd: int, n_head: int, n_layer: int, block_size: int) -> GPTConfig:
    """A GPTConfig for the names data set (ConfigError if the sizes do not fit together)."""
    _, tok = names_corpus()
    return GPTConfig(n_embd, n_head, n_layer, block_size, tok.vocab_size)


def race_rungs(labels: list[str], config: GPTConfig, steps: int,
               seed: int = 0) -> dict[str, TrainingHistory]:
    """Train each rung of `labels` (keys of RACE_RUNGS) from the same weights on the same names."""
    docs, tok = names_corpus()
    return {label: train(get_rung(RACE_RUNGS[label])(config, init_params(config, seed=seed)),
                         docs, tok, steps, progress=False)
            for label in labels}


def plot_race(runs: dict[str, TrainingHistory]) -> plt.Figure:
    """Loss against training step (the same curve) and against seconds (not the same clock)."""
    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for i, (label, h) in enumerate(runs.items()):
        smooth = moving_average(h.losses, max(1, len(h.losses) // 10))
        by_step.plot(smooth, color=f"C{i}", ls="-" if i == 0 else "--", label=label)
        by_time.plot(np.cumsum(h.step_times_ms) / 1e3, smooth, color=f"C{i}", label=label)
    by_step.set(xlabel="training step", ylabel="loss (moving mean)", title="Same losses")
    by_time.set(xlabel="seconds of training", title="Different clocks")
    by_time.set_xscale("log")
    by_time.legend(fontsize=8)
    fig.tight_layout()
    return fig


@dataclass
class PrecisionRun:
    """One width trained in float64 and in float32 from the same weights, on the same names."""

    n_embd: int
    histories: dict[str, TrainingHistory]


def precision_run(n_embd: int, steps: int, lr: float = 1e-2, seed: int = 0) -> PrecisionRun:
    """Train rung numpy_all_positions at width n_embd (4 heads, 1 layer) in both precisions."""
    config = names_config(n_embd, 4, 1, 16)
    docs, tok = names_corpus()
    rung = get_rung("numpy_all_positions")
    return PrecisionRun(n_embd, {
        dtype.__name__: train(rung(config, init_params(config, seed=seed), dtype=dtype), docs,
                              tok, steps, base_lr=lr, progress=False)
        for dtype in (np.float64, np.float32)})


def plot_precision(run: PrecisionRun) -> plt.Figure:
    """The gap between the two runs' losses, and each precision's median ms per step."""
    fig, (gap, speed) = plt.subplots(1, 2, figsize=(9, 3.2))
    h64, h32 = run.histories["float64"], run.histories["float32"]
    gap.semilogy(np.maximum(np.abs(np.array(h64.losses) - np.array(h32.losses)), 1e-12), lw=0.8)
    gap.set(xlabel="training step", ylabel="|float64 - float32| loss",
            title=f"n_embd {run.n_embd}: the gap is rounding")
    medians = [float(np.median(h.step_times_ms)) for h in (h64, h32)]
    speed.barh(["float64", "float32"], medians, color=["C0", "C1"])
    speed.set(xlabel="ms per step (median)", title="The price of a step")
    fig.tight_layout()
    return fig


@dataclass
class BatchRun:
    """The batched trainer's history at one batch size and peak learning rate."""

    batch_size: int
    lr: float
    history: BatchedHistory


def batch_run(batch_size: int, lr: float, seconds: float, seed: int = 0) -> BatchRun:
    """Train e16_L1_b16 with NumpyBackend for `seconds`, warmup then cosine decay."""
    docs, tok = names_corpus()
    config = GPTConfig.preset("e16_L1_b16", vocab_size=tok.vocab_size)
    train_docs, val_docs = split_docs(docs)
    train_enc = EncodedDocs.encode(train_docs, tok, config.block_size)
    val_enc = EncodedDocs.encode(val_docs, tok, config.block_size).head(500)
    # a five-step probe sets the number of steps, so the schedule decays within the budget
    probe = train_batched(NumpyBackend(config, init_params(config, seed=seed)), train_enc, None,
                          TrainSettings(num_steps=5, batch_size=batch_size), progress=False)
    steps = max(10, int(seconds / (probe.seconds[-1] / len(probe.losses))))
    settings = TrainSettings(num_steps=steps, batch_size=batch_size, base_lr=lr, min_lr=lr / 10,
                             warmup=max(1, steps // 20), eval_every=max(1, steps // 10),
                             seed=seed, max_seconds=1.5 * seconds)
    history = train_batched(NumpyBackend(config, init_params(config, seed=seed)), train_enc,
                            val_enc, settings, progress=False)
    return BatchRun(batch_size, lr, history)


def plot_batch_runs(runs: list[BatchRun]) -> plt.Figure:
    """Validation loss against seconds of training, one curve per run."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for run in runs:
        h = run.history
        ax.plot(h.val_seconds, h.val_losses, "o-", ms=3,
                label=f"B={run.batch_size}, lr {run.lr:g}: val {h.val_losses[-1]:.3f}")
    ax.set(xlabel="seconds of training", ylabel="validation loss",
           title="Batch size and learning rate, same time budget")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def shakespeare_run(n_embd: int, n_layer: int, iters: int, num_threads: int = 1) -> CharRun:
    """nanoGPT's Shakespeare recipe at a smaller size, for `iters` iterations, with fastops."""
    recipe = dataclasses.replace(Recipe(), n_embd=n_embd, n_layer=n_layer, max_iters=iters,
                                 lr_decay_iters=iters, warmup_iters=max(1, iters // 20))
    return train_char_gpt(recipe, iters=iters, num_threads=num_threads, progress=False)


def plot_shakespeare(run: CharRun) -> plt.Figure:
    """The training loss per iteration, with the final validation estimate."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ax.plot(run.losses, lw=0.6, alpha=0.5, label="batch loss")
    ax.plot(moving_average(run.losses, max(1, run.iters // 20)), label="moving mean")
    ax.axhline(run.val_loss, color="C1", ls="--", label=f"validation {run.val_loss:.3f}")
    ax.set(xlabel="iteration", ylabel="loss (nats per character)",
           title=f"{run.iters} iterations in {run.train_seconds:.1f} s")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


class RetrainPanel:
    """Controls, a Train button, a status line and a figure; subclasses say what Train runs."""

    def __init__(self, controls: list[widgets.Widget]) -> None:
        self.button = widgets.Button(description="Train", button_style="primary", icon="play")
        self.status = widgets.HTML("Set the controls, then press Train (needs a live kernel).")
        self.plot = widgets.Output()
        self.button.on_click(lambda _: self.train())
        self.result = None
        wrap = widgets.Layout(flex_flow="row wrap")
        self.widget = widgets.VBox([widgets.HBox(controls, layout=wrap),
                                    widgets.HBox([self.button, self.status], layout=wrap),
                                    self.plot])

    def _ipython_display_(self) -> None:
        display(self.widget)

    def run(self):
        """Train with the controls' values; returns what `draw` and `summary` take."""
        raise NotImplementedError

    def draw(self, result) -> plt.Figure:
        """The figure of a result."""
        raise NotImplementedError

    def summary(self, result) -> str:
        """One line of HTML about a result."""
        return "done"

    def train(self):
        """Run, then show the figure and the summary; a setting that cannot work is reported."""
        self.button.disabled = True
        self.status.value = "training..."
        try:
            self.result = self.run()
        except ConfigError as err:
            self.status.value = f"<b style='color:#b00'>Cannot train this:</b> {html.escape(str(err))}"
            return None
        finally:
            self.button.disabled = False
        with self.plot:
            self.plot.clear_output(wait=True)
            self.draw(self.result)
            plt.show()
        self.status.value = self.summary(self.result)
        return self.result


def _dropdown(options, value, description: str) -> widgets.Dropdown:
    return widgets.Dropdown(options=options, value=value, description=description,
                            style={"description_width": "initial"},
                            layout=widgets.Layout(width="200px"))


def _slider(kind, value, low, high, description: str, **extra) -> widgets.Widget:
    return kind(value=value, min=low, max=high, description=description,
                style={"description_width": "initial"}, layout=widgets.Layout(width="300px"),
                **extra)


class RacePanel(RetrainPanel):
    """Chapter 2: race two pure-Python rungs on a small model."""

    def __init__(self) -> None:
        self.first = _dropdown(list(RACE_RUNGS), "scalar", "rung A")
        self.second = _dropdown(list(RACE_RUNGS), "python_fast", "rung B")
        self.n_embd = _dropdown([4, 8, 16], 8, "n_embd")
        self.steps = _slider(widgets.IntSlider, 30, 5, 200, "steps")
        super().__init__([self.first, self.second, self.n_embd, self.steps])

    def run(self) -> dict[str, TrainingHistory]:
        labels = list(dict.fromkeys([self.first.value, self.second.value]))
        return race_rungs(labels, names_config(self.n_embd.value, 2, 1, 8), self.steps.value)

    def draw(self, result) -> plt.Figure:
        return plot_race(result)

    def summary(self, result) -> str:
        return ", ".join(f"{label}: {np.median(h.step_times_ms):.2f} ms/step"
                         for label, h in result.items())


class PrecisionPanel(RetrainPanel):
    """Chapter 3: float64 against float32 at a chosen width."""

    def __init__(self) -> None:
        self.n_embd = _dropdown([16, 32, 64, 128, 256], 64, "n_embd")
        self.steps = _slider(widgets.IntSlider, 100, 10, 1000, "steps", step=10)
        super().__init__([self.n_embd, self.steps])

    def run(self) -> PrecisionRun:
        return precision_run(self.n_embd.value, self.steps.value)

    def draw(self, result) -> plt.Figure:
        return plot_precision(result)

    def summary(self, result) -> str:
        h64, h32 = result.histories["float64"], result.histories["float32"]
        return (f"float32 {np.median(h64.step_times_ms) / np.median(h32.step_times_ms):.2f}x "
                f"the speed of float64; last losses {h64.losses[-1]:.4f} / {h32.losses[-1]:.4f}")


class BatchPanel(RetrainPanel):
    """Chapter 4: batch size and learning rate of the batched trainer, validation curve."""

    def __init__(self) -> None:
        self.batch_size = _dropdown([1, 4, 8, 32, 128], 32, "batch size")
        self.lr = _slider(widgets.FloatLogSlider, 1e-2, -4, -0.5, "peak learning rate", base=10,
                          readout_format=".4f")
        self.seconds = _slider(widgets.FloatSlider, 3.0, 0.5, 30.0, "seconds", step=0.5)
        self.runs: list[BatchRun] = []
        super().__init__([self.batch_size, self.lr, self.seconds])

    def run(self) -> list[BatchRun]:
        self.runs = (self.runs + [batch_run(self.batch_size.value, self.lr.value,
                                            self.seconds.value)])[-4:]
        return self.runs

    def draw(self, result) -> plt.Figure:
        return plot_batch_runs(result)

    def summary(self, result) -> str:
        return (f"{len(result)} run(s) drawn (the last four are kept); latest: "
                f"{result[-1].history.tokens_per_second:,.0f} tokens/s")


class ShakespearePanel(RetrainPanel):
    """Chapter 5: train fastops on tiny Shakespeare for a few seconds, then sample."""

    def __init__(self) -> None:
        self.n_embd = _dropdown([32, 64, 128], 64, "n_embd")
        self.n_layer = _slider(widgets.IntSlider, 2, 1, 4, "n_layer")
        self.iters = _slider(widgets.IntSlider, 300, 50, 2000, "iterations", step=50)
        self.temperature = _slider(widgets.FloatSlider, 0.8, 0.1, 1.5, "temperature", step=0.05)
        self.sample = widgets.HTML()
        super().__init__([self.n_embd, self.n_layer, self.iters, self.temperature])
        self.widget.children += (self.sample,)

    def run(self) -> CharRun:
        return shakespeare_run(self.n_embd.value, self.n_layer.value, self.iters.value)

    def draw(self, result) -> plt.Figure:
        return plot_shakespeare(result)

    def summary(self, result) -> str:
        text = sample_chars(result.model, result.text, 300, self.temperature.value,
                            seed=random.randrange(1 << 30))
        self.sample.value = f"<pre style='white-space:pre-wrap'>{html.escape(text)}</pre>"
        return f"validation loss {result.val_loss:.3f} after {result.iters} iterations"
