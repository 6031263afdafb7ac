"""Chapter 8's runs: exact resume, gradient accumulation, checkpoints loaded by every rung."""
import math

import numpy as np
import pytest

from microgpt_lib.checkpoint import CheckpointError, load_checkpoint
from microgpt_lib.params import init_params
from microgpt_lib.rungs import load_rung
from microgpt_lib.scenarios import Scenario, prepare
from microgpt_lib.train.text_data import batches_of
from microgpt_lib.train.text_run import RunSettings, TextRun, TextTrainer, make_backend

TEXT = ("Alice was beginning to get very tired of sitting by her sister on the bank, and of "
        "having nothing to do: once or twice she had peeped into the book her sister was "
        "reading, but it had no pictures or conversations in it.\n") * 6
NAMES = "\n".join(["emma", "olivia", "ava", "isabella", "sophia", "mia", "charlotte", "amelia",
                   "harper", "evelyn", "abigail", "emily", "ella", "elizabeth", "camila"] * 3)


def scenario(documents: str, **model) -> Scenario:
    sizes = dict(n_embd=8, n_head=2, n_layer=1, block_size=12) | model
    return Scenario(name=f"tiny_{documents}", description="", dataset=None, path=None,
                    documents=documents, val_fraction=0.2, chunk_chars=10, trailing_bos=True,
                    tokenizer="chars", vocab_size=None, model=sizes)


DATA = {kind: prepare(scenario(kind), NAMES if kind == "lines" else TEXT)
        for kind in ("lines", "chunks", "continuous")}
SETTINGS = dict(steps=12, batch_size=4, learning_rate=0.02, warmup=2, grad_clip=1.0,
                eval_every=5)


@pytest.mark.parametrize("backend", ["numpy", "cython"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["lines", "continuous"])
def test_resumed_run_ends_with_the_same_weights_bit_for_bit(tmp_path, backend, dtype, kind):
    settings = RunSettings(**SETTINGS, grad_accum=2)
    whole = TextRun.start(DATA[kind], tmp_path / "whole", settings, backend, dtype)
    assert whole.train(progress=False) == "done"

    first = TextRun.start(DATA[kind], tmp_path / "cut", settings, backend, dtype)
    assert first.train(until=7, progress=False) == "paused"  # stopped, state saved at step 7
    del first  # the process is gone: only the folder remains
    second = TextRun.resume(DATA[kind], tmp_path / "cut")
    assert second.trainer.step == 7
    assert second.train(progress=False) == "done"

    assert np.array_equal(second.backend.params.data, whole.backend.params.data)
    assert second.trainer.history.losses == whole.trainer.history.losses
    assert second.trainer.history.val_losses == whole.trainer.history.val_losses
    final = load_checkpoint(tmp_path / "cut" / "last.safetensors")
    assert final.dtype == np.dtype(dtype) and final.state["step"] == settings.steps
    assert np.array_equal(final.weights.data, whole.backend.params.data)


def test_a_new_run_never_replaces_a_saved_one(tmp_path):
    settings = RunSettings(**SETTINGS)
    TextRun.start(DATA["lines"], tmp_path, settings, "numpy", "float64").train(progress=False)
    before = (tmp_path / "last.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="already holds"):
        TextRun.start(DATA["lines"], tmp_path, settings, "numpy", "float64")
    assert (tmp_path / "last.safetensors").read_bytes() == before
    assert (tmp_path / "best.safetensors").is_file()
    TextRun.start(DATA["lines"], tmp_path, settings, "numpy", "float64", overwrite=True)


def test_resume_refuses_changed_settings_and_another_scenario(tmp_path):
    settings = RunSettings(**SETTINGS)
    TextRun.start(DATA["lines"], tmp_path, settings, "numpy", "float64").train(
        until=5, progress=False)
    with pytest.raises(CheckpointError, match="steps = 12, not 99"):
        TextRun.resume(DATA["lines"], tmp_path, steps=99)
    with pytest.raises(CheckpointError, match="made for the model"):
        TextRun.resume(DATA["chunks"], tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        TextRun.resume(DATA["lines"], tmp_path / "elsewhere")


@pytest.mark.parametrize("backend", ["numpy", "cython"])
@pytest.mark.parametrize("dtype, tol", [("float32", 2e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("kind", ["lines", "continuous"])
def test_gradient_accumulation_equals_the_larger_batch(backend, dtype, tol, kind):
    data = DATA[kind]
    params = init_params(data.config, seed=1)
    grads = {}
    for accum in (1, 4):
        model = make_backend(backend, data.config, params, dtype)
        trainer = TextTrainer(model, batches_of(data), RunSettings(batch_size=8, grad_accum=accum))
        parts = batches_of(data).draw(np.random.default_rng(5), 8, accum)
        loss, tokens = trainer.accumulate_gradient(parts)
        grads[accum] = (loss, tokens, model.grads.data.astype(np.float64))
    (loss1, n1, g1), (loss4, n4, g4) = grads[1], grads[4]
    assert n1 == n4 and math.isclose(loss1, loss4, rel_tol=tol)
    assert np.max(np.abs(g1 - g4)) <= tol * np.max(np.abs(g1))


def test_accumulated_runs_follow_the_large_batch_run(tmp_path):
    runs = {}
    for accum in (1, 2, 4):
        settings = RunSettings(**SETTINGS, grad_accum=accum)
        run = TextRun.start(DATA["continuous"], tmp_path / str(accum), settings, "numpy",
                            "float64")
        run.train(progress=False)
        runs[accum] = run.backend.params.data
    assert np.allclose(runs[1], runs[2], rtol=0, atol=1e-10)
    assert np.allclose(runs[1], runs[4], rtol=0, atol=1e-10)


@pytest.mark.parametrize("rung", ["scalar", "python_fast", "numpy", "numpy_all_positions",
                                  "numpy_kernels", "cython"])
def test_every_rung_loads_a_checkpoint_trained_by_fastops(tmp_path, rung):
    data = DATA["chunks"]
    run = TextRun.start(data, tmp_path, RunSettings(**SETTINGS), "cython", "float64")
    run.train(progress=False)
    path = tmp_path / "last.safetensors"
    model = load_rung(rung, path)
    context = [data.tokenizer.bos, *data.tokenizer.encode("Alice was")]
    expected = run.backend.model.next_token_logits(context)
    expected = np.exp(expected - expected.max())
    expected /= expected.sum()
    assert np.max(np.abs(np.array(model.context_probs(context)) - expected)) < 1e-10


def test_bits_per_byte_are_recorded_at_each_validation(tmp_path):
    run = TextRun.start(DATA["continuous"], tmp_path, RunSettings(**SETTINGS), "numpy", "float64")
    run.train(progress=False)
    h = run.trainer.history
    assert h.val_steps == [0, 5, 10, 12]
    # plain ASCII: one byte per character, so bits per byte is the loss in bits
    assert np.allclose(h.val_bits_per_byte, np.array(h.val_losses) / math.log(2))


def test_a_killed_run_resumes_from_its_last_validation_checkpoint(tmp_path):
    settings = RunSettings(**SETTINGS)
    whole = TextRun.start(DATA["chunks"], tmp_path / "whole", settings, "cython", "float32")
    whole.train(progress=False)
    killed = TextRun.start(DATA["chunks"], tmp_path / "killed", settings, "cython", "float32")
    # the trainer alone saves only at validations (step 5); "killed" at step 8, unsaved
    killed.trainer.run(until=8, progress=False,
                       on_validate=lambda _, improved: killed.save(improved))
    assert killed.trainer.step == 8
    resumed = TextRun.resume(DATA["chunks"], tmp_path / "killed")
    assert resumed.trainer.step == 5
    resumed.train(progress=False)
    assert np.array_equal(resumed.backend.params.data, whole.backend.params.data)
