"""The training panel driven from code: set values, click Train, get a model and samples."""
from microgpt_lib.notebook.widgets import TrainingPanel


def test_panel_trains_when_clicked_and_shows_samples():
    panel = TrainingPanel()
    panel.n_embd.value, panel.n_head.value, panel.n_layer.value = 8, 2, 1
    panel.block_size.value, panel.steps.value, panel.seed.value = 6, 20, 3
    panel.button.click()
    assert panel.history is not None and len(panel.history.losses) == 20
    assert panel.progress.value == panel.progress.max == 20
    assert len(panel.samples) == 10 and all(s.isalpha() or s == "" for s in panel.samples)
    assert "final loss" in panel.status.value
    assert not panel.button.disabled


def test_panel_refuses_a_config_that_cannot_work():
    panel = TrainingPanel()
    panel.n_embd.value, panel.n_head.value = 4, 1
    panel.n_head.options = [1, 3]
    panel.n_head.value = 3
    panel.button.click()
    assert panel.history is None
    assert "divisible by n_head" in panel.status.value


def test_same_seed_gives_the_same_run():
    runs = []
    for _ in range(2):
        panel = TrainingPanel()
        panel.n_embd.value, panel.steps.value, panel.seed.value = 4, 10, 7
        panel.train()
        runs.append((panel.history.losses, panel.samples))
    assert runs[0] == runs[1]
