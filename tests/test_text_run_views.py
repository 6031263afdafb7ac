"""Chapter 8's views: the run figure and the sampling panel (driven from code, as a reader's click)."""
import matplotlib

matplotlib.use("Agg")

from microgpt_lib.notebook.text_runs import SamplePanel, plot_run  # noqa: E402
from microgpt_lib.params import init_params  # noqa: E402
from microgpt_lib.rungs import get_rung  # noqa: E402
from microgpt_lib.scenarios import Scenario, prepare  # noqa: E402
from microgpt_lib.train.text_run import RunSettings, TextRun  # noqa: E402

SCENARIO = Scenario(name="tiny", description="", dataset=None, path=None,
                    documents="continuous", val_fraction=0.2, chunk_chars=0, trailing_bos=True,
                    tokenizer="chars", vocab_size=None,
                    model=dict(n_embd=8, n_head=2, n_layer=1, block_size=8))
DATA = prepare(SCENARIO, "Alice and the Queen and the Hatter and the Cat. " * 10)


def test_plot_run_draws_the_four_panels(tmp_path):
    run = TextRun.start(DATA, tmp_path, RunSettings(steps=8, batch_size=4, eval_every=2,
                                                    grad_clip=1.0), "numpy", "float64")
    run.train(progress=False)
    fig = plot_run(run.trainer.history, "tiny", 1.0)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "gradient norm (before clipping)", "learning rate",
                      "validation improvement per window"]
    assert len(fig.axes[3].patches) == len(run.trainer.history.val_losses) - 1


def test_sample_panel_continues_the_prompt_and_shows_errors():
    model = get_rung("numpy")(DATA.config, init_params(DATA.config))
    panel = SamplePanel({"tiny": (model, SCENARIO, DATA.tokenizer)})
    panel.prompt.value, panel.max_chars.value = "the", 40
    text = panel.sample()
    assert text.startswith("the") and len(text) <= 40 and "<pre" in panel.output.value
    panel.prompt.value = "Z?"
    assert panel.sample().startswith("error: ") and "not in the vocabulary" in panel.output.value
    panel.prompt.value = ""
    assert "give a prompt" in panel.sample()
