"""Chapter 7's experiment helpers: parameter and FLOP counts, held-out nats, tokenizer specs."""
import numpy as np
import pytest

from microgpt_lib.config import GPTConfig
from microgpt_lib.notebook.tokenizer_widgets import merge_replay_table, token_spans
from microgpt_lib.tokenizers import CharacterTokenizer, train_bpe
from microgpt_lib.train.shakespeare import Recipe, nanogpt_model, train_gpt_on_ids
from microgpt_lib.train.tokenizer_experiment import (
    Budget, TextSplit, heldout_nats, make_tokenizer, parameter_counts, run_tokenizer,
)

CONFIG = GPTConfig(16, 2, 1, 8, 40)


def test_parameter_count_matches_the_model():
    model = nanogpt_model(CONFIG, Recipe(n_layer=1, n_head=2, n_embd=16, block_size=8))
    total, embedding = parameter_counts(CONFIG)
    assert total == model.params.data.size
    assert embedding == model.params.views["wte"].size + model.params.views["lm_head"].size


def test_heldout_nats_is_the_sum_over_windows():
    model = nanogpt_model(CONFIG, Recipe(n_layer=1, n_head=2, n_embd=16, block_size=8))
    ids = np.random.default_rng(0).integers(0, 40, 53)
    expected = 0.0
    for start in range(0, 52, 8):
        end = min(start + 8, 52)
        x, y = ids[start:end].astype(np.int64), ids[start + 1:end + 1].astype(np.int64)
        expected += model.loss(x, y, np.array([0, len(x)]), backward=False) * len(x)
    assert heldout_nats(model, ids, windows_per_call=3) == pytest.approx(expected, rel=1e-5)


def test_training_on_ids_records_curves_and_learns():
    ids = np.tile(np.arange(10), 300)  # a sequence a model can learn quickly
    r = Recipe(n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=4, max_iters=60,
               warmup_iters=5, lr_decay_iters=60, eval_iters=2, learning_rate=1e-2)
    run = train_gpt_on_ids(ids, ids, 10, r, num_threads=1, progress=False, eval_every=20)
    assert run.eval_at == [0, 20, 40, 59] and len(run.grad_norms) == 4
    assert len(run.losses) == len(run.learning_rates) == 60
    assert run.val_loss < run.eval_val[0] / 2


def test_unknown_tokenizer_spec():
    for spec in ("bpe", "chars-3", "sentencepiece-512"):
        with pytest.raises(ValueError, match="use 'chars'"):
            make_tokenizer(spec, "some text")


def test_a_tiny_run_reports_consistent_figures():
    text = "To be, or not to be, that is the question. " * 60
    split = TextSplit(text[:2000], text[2000:])
    r = run_tokenizer("bpe-300", split, Budget(n_embd=16, n_layer=1, flops=2e7, eval_points=2),
                      sample_chars=30, progress=False)
    tok = make_tokenizer("bpe-300", split.train)
    first = tok.encode(split.heldout)[0]  # every held-out token but the first is predicted
    assert r.heldout_bytes == len(split.heldout.encode()) - len(tok.token_bytes[first])
    assert r.bits_per_byte == pytest.approx(r.heldout_nats / np.log(2) / r.heldout_bytes)
    assert len(r.sample) == 30 and r.iters >= 1


def test_views_escape_the_text():
    tok = CharacterTokenizer.train("<b>&")
    assert "&lt;" in token_spans(tok, "<b>") and "<b>" not in token_spans(tok, "<b>")
    bpe = train_bpe("aaab" * 50, 260)
    assert "<table>" in merge_replay_table(bpe, "aaab", [0, 1, 3]).data
