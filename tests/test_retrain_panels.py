"""The chapters' retraining panels driven from code: each trains, draws and reports."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from microgpt_lib.notebook import retrain_panels as rp  # noqa: E402


def test_race_gives_the_same_losses_on_two_clocks():
    panel = rp.RacePanel()
    panel.n_embd.value, panel.steps.value = 4, 5
    panel.button.click()
    runs = panel.result
    assert list(runs) == ["scalar", "python_fast"]
    assert np.allclose(runs["scalar"].losses, runs["python_fast"].losses, atol=1e-12)
    assert "ms/step" in panel.status.value and not panel.button.disabled


def test_race_refuses_a_model_that_cannot_be_built():
    with pytest.raises(rp.ConfigError):
        rp.names_config(6, 4, 1, 8)


def test_precision_run_trains_both_dtypes_from_the_same_weights():
    run = rp.precision_run(16, 5)
    h64, h32 = run.histories["float64"], run.histories["float32"]
    assert len(h64.losses) == len(h32.losses) == 5
    assert np.allclose(h64.losses, h32.losses, atol=1e-4)
    rp.plot_precision(run)


def test_batch_panel_keeps_its_runs_and_their_validation_curves():
    panel = rp.BatchPanel()
    panel.batch_size.value, panel.seconds.value = 8, 0.5
    panel.train()
    panel.batch_size.value = 4
    panel.train()
    assert [r.batch_size for r in panel.result] == [8, 4]
    assert all(r.history.val_losses and np.isfinite(r.history.val_losses[-1])
               for r in panel.result)


def test_shakespeare_panel_trains_and_samples():
    pytest.importorskip("fastops")
    panel = rp.ShakespearePanel()
    panel.n_embd.value, panel.n_layer.value, panel.iters.value = 32, 1, 50
    panel.train()
    assert panel.result.iters == 50 and np.isfinite(panel.result.val_loss)
    assert "validation loss" in panel.status.value and len(panel.sample.value) > 100

