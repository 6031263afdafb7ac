"""The capstone's training loop on id arrays: thread choice and nothing lost on Ctrl-C."""
import signal

import numpy as np
import pytest

from microgpt_lib.rungs.rung5_cython.model import FastopsModel
from microgpt_lib.train import shakespeare
from microgpt_lib.train.shakespeare import Recipe, train_gpt_on_ids

IDS = np.tile(np.arange(10), 50)
TINY = Recipe(n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=2, max_iters=10,
              warmup_iters=2, lr_decay_iters=10, eval_iters=2)


def test_busy_cores_leave_the_run_one_thread(monkeypatch, capsys):
    monkeypatch.setattr(shakespeare, "available_cores", lambda: 2)
    monkeypatch.setattr(shakespeare, "busy_cores", lambda: 1.0)
    run = train_gpt_on_ids(IDS, IDS, 10, TINY, iters=2, progress=False)
    assert run.num_threads == 1 == run.model.num_threads
    assert "training on 1 thread" in capsys.readouterr().out


def test_free_cores_give_the_run_two_threads(monkeypatch, capsys):
    monkeypatch.setattr(shakespeare, "available_cores", lambda: 2)
    monkeypatch.setattr(shakespeare, "busy_cores", lambda: 0.05)
    run = train_gpt_on_ids(IDS, IDS, 10, TINY, iters=2, progress=False)
    assert run.num_threads == 2 and capsys.readouterr().out == ""


def test_an_explicit_thread_count_is_kept(monkeypatch):
    monkeypatch.setattr(shakespeare, "busy_cores", lambda: 2.0)
    assert train_gpt_on_ids(IDS, IDS, 10, TINY, iters=1, num_threads=2,
                            progress=False).num_threads == 2


@pytest.mark.parametrize("how", ["first Ctrl-C", "second Ctrl-C"])
def test_ctrl_c_keeps_the_iterations_done(monkeypatch, capsys, how):
    real, calls = FastopsModel.train_step, {"n": 0}

    def interrupted_at_third(self, *args):
        calls["n"] += 1
        if calls["n"] == 3 and how == "second Ctrl-C":
            raise KeyboardInterrupt  # what a second Ctrl-C raises mid-iteration
        loss = real(self, *args)
        if calls["n"] == 3:
            signal.raise_signal(signal.SIGINT)  # the first Ctrl-C: a request to stop
        return loss

    monkeypatch.setattr(FastopsModel, "train_step", interrupted_at_third)
    run = train_gpt_on_ids(IDS, IDS, 10, TINY, num_threads=1, progress=False)
    done = 3 if how == "first Ctrl-C" else 2
    assert run.interrupted and run.iters == len(run.losses) == len(run.learning_rates) == done
    assert np.isfinite(run.val_loss) and run.train_seconds > 0
    assert f"interrupted after {done} of 10 iterations" in capsys.readouterr().out

    monkeypatch.setattr(FastopsModel, "train_step", real)
    whole = train_gpt_on_ids(IDS, IDS, 10, TINY, iters=done, num_threads=1, progress=False)
    assert whole.losses == run.losses and not whole.interrupted
