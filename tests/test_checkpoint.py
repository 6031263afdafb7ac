"""Checkpoint files: round trip, no silent overwrite, and a clear error for every bad file."""
import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from microgpt_lib.checkpoint import (Checkpoint, CheckpointError, load_checkpoint,
                                     save_checkpoint, tokenizer_from_json, tokenizer_to_json)
from microgpt_lib.config import GPTConfig
from microgpt_lib.flat_params import FlatParams
from microgpt_lib.params import init_params
from microgpt_lib.tokenizers import CharTokenizer

CONFIG = GPTConfig(n_embd=8, n_head=2, n_layer=2, block_size=4, vocab_size=6)
TOKENIZER = CharTokenizer("abcde")


def checkpoint(dtype=np.float64, config=CONFIG, tokenizer=TOKENIZER) -> Checkpoint:
    weights = FlatParams.from_params(config, init_params(config, seed=2), dtype)
    arrays = {"adam.m": np.arange(5.0), "adam.v": np.ones(3, dtype=np.float32)}
    state = {"step": 7, "rng": {"state": 2**100, "inc": 3}, "history": [0.5, 0.25]}
    return Checkpoint(config, weights, tokenizer_to_json(tokenizer), arrays, state)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_checkpoint_round_trips_exactly(tmp_path, dtype):
    ckpt = checkpoint(dtype)
    save_checkpoint(tmp_path / "c.safetensors", ckpt)
    back = load_checkpoint(tmp_path / "c.safetensors", CONFIG, TOKENIZER)
    assert back.config == CONFIG and back.dtype == np.dtype(dtype)
    assert np.array_equal(back.weights.data, ckpt.weights.data)
    assert back.state == ckpt.state
    for name, array in ckpt.arrays.items():
        assert back.arrays[name].dtype == array.dtype and np.array_equal(back.arrays[name], array)
    tok = tokenizer_from_json(back.tokenizer)
    assert tok.chars == TOKENIZER.chars and tok.bos == TOKENIZER.bos


def test_a_checkpoint_is_never_overwritten_unless_asked(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, checkpoint())
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        save_checkpoint(path, checkpoint(np.float32))
    assert path.read_bytes() == before
    save_checkpoint(path, checkpoint(np.float32), overwrite=True)
    assert load_checkpoint(path).dtype == np.float32
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary left over


def test_a_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, checkpoint())
    data = path.read_bytes()
    for size in (0, 5, 100, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:size])
        with pytest.raises(CheckpointError, match="not a readable checkpoint"):
            load_checkpoint(path)


def test_other_files_are_not_checkpoints(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(text)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": np.zeros(3)}, plain)
    with pytest.raises(CheckpointError, match="not a microgpt checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_a_checkpoint_of_another_model_or_tokenizer_is_refused(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, checkpoint())
    with pytest.raises(CheckpointError, match="made for the model e8_L2_b4"):
        load_checkpoint(path, CONFIG.with_(n_layer=1))
    with pytest.raises(CheckpointError, match="another tokenizer"):
        load_checkpoint(path, CONFIG, CharTokenizer("abcdx"))


def test_a_checkpoint_missing_a_weight_is_refused(tmp_path):
    ckpt = checkpoint()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, ckpt)
    # rewrite the file without one weight matrix, keeping the metadata
    tensors = load_file(path)
    with safe_open(path, "np") as f:
        meta = f.metadata()
    del tensors["layer1.mlp_fc2"]
    save_file(tensors, path, metadata=meta)
    with pytest.raises(CheckpointError, match="lacks the weight layer1.mlp_fc2"):
        load_checkpoint(path)
    meta = json.loads(meta["microgpt"])
    assert meta["format"] == "microgpt-checkpoint"
