"""The chapter 1 training panel: retrain a tiny GPT from a notebook, with live loss and samples.

Every control maps to one argument of the training run, the Train button runs it (progress bar,
loss curve redrawn as it trains), and the samples appear at the end. `TrainingPanel.train()` is
the same run without a click, so the panel can be driven from code and tests.
"""
from __future__ import annotations

import html
import random

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

from microgpt_lib.config import ConfigError, GPTConfig
from microgpt_lib.data import load_docs
from microgpt_lib.notebook.plots import plot_losses
from microgpt_lib.params import init_params
from microgpt_lib.rungs import available_rungs, get_rung
from microgpt_lib.tokenizers import CharTokenizer
from microgpt_lib.train.loop import TrainingHistory, train


class TrainingPanel:
    """Sliders for sizes, steps, learning rate, temperature and seed; a Train button; the results."""

    def __init__(self, rung: str = "scalar", redraw_every: int = 10) -> None:
        self.redraw_every = redraw_every
        # Controls fit a phone-wide column (360 px at most) and wrap below each other there.
        style = {"description_width": "100px"}
        self.rung = widgets.Dropdown(options=available_rungs(), value=rung, description="rung",
                                     style=style)
        self.n_embd = widgets.Dropdown(options=[4, 8, 16, 32], value=8, description="n_embd", style=style)
        self.n_head = widgets.Dropdown(options=[1, 2, 4], value=2, description="n_head", style=style)
        self.n_layer = widgets.IntSlider(value=1, min=1, max=3, description="n_layer", style=style)
        self.block_size = widgets.IntSlider(value=8, min=2, max=16, description="block_size",
                                            style=style)
        self.steps = widgets.IntSlider(value=100, min=10, max=1000, step=10, description="steps",
                                       style=style)
        self.lr = widgets.FloatLogSlider(value=0.01, base=10, min=-4, max=-0.5, description="learning rate",
                                         readout_format=".4f", style=style)
        self.temperature = widgets.FloatSlider(value=0.5, min=0.1, max=1.5, step=0.05,
                                               description="temperature", style=style)
        self.seed = widgets.IntText(value=0, description="seed", style=style)
        self.button = widgets.Button(description="Train", button_style="primary", icon="play")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="progress")
        self.status = widgets.HTML("Set the sizes, then press Train.")
        self.plot = widgets.Output()
        self.samples_html = widgets.HTML()
        self.button.on_click(lambda _: self.train())
        self.history: TrainingHistory | None = None
        self.samples: list[str] = []
        fields = [self.rung, self.n_embd, self.n_head, self.n_layer, self.block_size, self.steps,
                  self.lr, self.temperature, self.seed]
        for field in fields + [self.progress]:
            field.layout = widgets.Layout(width="360px", max_width="100%")
        controls = widgets.VBox(fields, layout=widgets.Layout(max_width="100%"))
        run = widgets.VBox([self.button, self.progress, self.status, self.samples_html],
                           layout=widgets.Layout(width="360px", max_width="100%"))
        row = widgets.HBox([controls, run], layout=widgets.Layout(flex_flow="row wrap"))
        self.widget = widgets.VBox([row, self.plot], layout=widgets.Layout(max_width="100%"))

    def _ipython_display_(self) -> None:
        display(self.widget)

    def config(self, vocab_size: int) -> GPTConfig:
        """The GPTConfig the controls describe (ConfigError if it cannot be built)."""
        return GPTConfig(self.n_embd.value, self.n_head.value, self.n_layer.value,
                         self.block_size.value, vocab_size)

    def _redraw(self, losses: list[float]) -> None:
        with self.plot:
            self.plot.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(6.4, 3))
            plot_losses({self.rung.value: losses}, window=max(1, len(losses) // 10), ax=ax)
            plt.show()

    def train(self) -> TrainingHistory | None:
        """Train with the current settings; updates progress, loss curve, status and samples."""
        docs = load_docs("names")
        random.Random(self.seed.value).shuffle(docs)
        tokenizer = CharTokenizer.from_docs(docs)
        try:
            config = self.config(tokenizer.vocab_size)
        except ConfigError as err:
            self.status.value = f"<b style='color:#b00'>Cannot build this model:</b> {html.escape(str(err))}"
            return None
        model = get_rung(self.rung.value)(config, init_params(config, seed=self.seed.value))
        self.progress.max, self.progress.value = self.steps.value, 0
        self.button.disabled = True
        self.status.value = f"training {config.num_params:,} parameters..."
        losses: list[float] = []

        def on_step(step: int, loss: float) -> None:
            losses.append(loss)
            self.progress.value = step + 1
            if (step + 1) % self.redraw_every == 0 or step + 1 == self.steps.value:
                self._redraw(losses)

        try:
            self.history = train(model, docs, tokenizer, self.steps.value, base_lr=self.lr.value,
                                 progress=False, on_step=on_step)
        finally:
            self.button.disabled = False
        ms = sorted(self.history.step_times_ms)[len(self.history.step_times_ms) // 2]
        self.samples = [tokenizer.decode(s) for s in
                        model.generate(10, temperature=self.temperature.value, seed=self.seed.value)]
        self.status.value = (f"{len(self.history.losses)} steps, final loss "
                             f"{self.history.losses[-1]:.3f}, median {ms:.1f} ms/step")
        self.samples_html.value = "<b>samples:</b> " + ", ".join(html.escape(s) for s in self.samples)
        return self.history
