"""The shared training loop: schedule, history, and nothing lost on interruption."""
import gc

import pytest

from microgpt_lib import CharTokenizer, GPTConfig, get_rung, init_params
from microgpt_lib.train.loop import karpathy_run, train
from microgpt_lib.train.schedules import linear_decay_lr

DOCS = ["ava", "bob", "cy", "dee"]
TOK = CharTokenizer.from_docs(DOCS)
CFG = GPTConfig(n_embd=4, n_head=1, n_layer=1, block_size=4, vocab_size=TOK.vocab_size)


def test_linear_decay_schedule():
    assert linear_decay_lr(0, 100) == 0.01
    assert abs(linear_decay_lr(50, 100) - 0.005) < 1e-15
    assert linear_decay_lr(99, 100) > 0


def test_history_has_one_loss_and_time_per_step():
    model = get_rung("scalar")(CFG, init_params(CFG))
    history = train(model, DOCS, TOK, 6, progress=False)
    assert len(history.losses) == len(history.step_times_ms) == 6
    assert not history.interrupted
    assert history.mean_last(2) == sum(history.losses[-2:]) / 2


def test_interrupted_run_keeps_its_history_and_weights():
    model = get_rung("scalar")(CFG, init_params(CFG))
    before = model.parameters()

    def stop_at_third(step, loss):
        if step == 2:
            raise KeyboardInterrupt

    history = train(model, DOCS, TOK, 10, progress=False, on_step=stop_at_third)
    assert history.interrupted and len(history.losses) == 3
    assert model.parameters() != before


def test_training_uses_documents_in_order():
    seen = []
    model = get_rung("scalar")(CFG, init_params(CFG))
    original = model.train_step
    model.train_step = lambda tokens, lr: seen.append(TOK.decode(tokens)) or original(tokens, lr)
    train(model, DOCS, TOK, 6, progress=False)
    assert seen == DOCS + DOCS[:2]


def test_karpathy_run_collecting_every_few_steps_changes_no_number():
    plain = karpathy_run(6, n_samples=3, progress=False)
    paused = karpathy_run(6, n_samples=3, progress=False, collect_every=4)
    assert paused.history.losses == plain.history.losses
    assert paused.samples == plain.samples
    assert gc.isenabled()
    with pytest.raises(ValueError):
        karpathy_run(1, progress=False, collect_every=-1)
