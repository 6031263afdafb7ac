"""Checkpoints: a trained model and everything needed to resume it, in one safe file (core).

A checkpoint is one safetensors file. Its tensors are the weights, one per matrix under the
names of `GPTConfig.param_shapes` (so any program that reads safetensors can open it), plus
any training arrays (`"adam.m"`, `"adam.v"`, ...). Its header's metadata holds one JSON text
with the rest: the format name and version, the model config, the tokenizer, the dtype, and
a free-form `state` (step, data position, random generator state, history...). Nothing is
pickled, so loading a checkpoint can never run code.

`save_checkpoint` writes atomically (a run killed mid-write leaves the previous file intact)
and refuses to replace an existing file unless asked. `load_checkpoint` turns every way a file
can be wrong (missing, truncated, not a checkpoint, another model or tokenizer) into one
`CheckpointError` with a one-line message.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from microgpt_lib.config import ConfigError, GPTConfig
from microgpt_lib.files import atomic_write_bytes
from microgpt_lib.flat_params import FlatParams
from microgpt_lib.params import Params
from microgpt_lib.tokenizers import Tokenizer, TokenizerError

FORMAT = "microgpt-checkpoint"
VERSION = 1
META_KEY = "microgpt"


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, not a checkpoint, or made for another model."""


@dataclass
class Checkpoint:
    """Weights (a FlatParams), the config, the tokenizer as JSON text, extra arrays and state."""

    config: GPTConfig
    weights: FlatParams
    tokenizer: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def dtype(self) -> np.dtype:
        return self.weights.data.dtype

    def params(self) -> Params:
        """The weights as nested lists of Python floats, what every rung is built from."""
        return self.weights.to_params()


# ---------------------------------------------------------------------------------------------
# tokenizers as JSON text

def tokenizer_to_json(tokenizer: Tokenizer) -> str:
    """A tokenizer as its own JSON file format (microgpt_lib.tokenizers)."""
    return tokenizer.to_json()


def tokenizer_from_json(text: str) -> Tokenizer:
    """The tokenizer `tokenizer_to_json` wrote; CheckpointError if the text is not one."""
    try:
        return Tokenizer.from_json(text)
    except TokenizerError as err:
        raise CheckpointError(f"the checkpoint's tokenizer cannot be read: {err}") from None


# ---------------------------------------------------------------------------------------------
# writing and reading

def checkpoint_bytes(ckpt: Checkpoint) -> bytes:
    """The checkpoint as the bytes of one safetensors file."""
    tensors = {name: np.ascontiguousarray(view) for name, view in ckpt.weights.views.items()}
    for name, array in ckpt.arrays.items():
        if name in tensors:
            raise ValueError(f"array name {name!r} is already a weight matrix")
        tensors[name] = np.ascontiguousarray(array)
    meta = {"format": FORMAT, "version": VERSION, "config": asdict(ckpt.config),
            "dtype": str(ckpt.dtype), "tokenizer": ckpt.tokenizer, "state": ckpt.state}
    return st_save(tensors, metadata={META_KEY: json.dumps(meta, allow_nan=False)})


def save_checkpoint(path: str | Path, ckpt: Checkpoint, overwrite: bool = False) -> Path:
    """Write `ckpt` to `path` atomically; FileExistsError if it exists and overwrite is False."""
    return atomic_write_bytes(path, checkpoint_bytes(ckpt), overwrite=overwrite)


def load_checkpoint(path: str | Path, config: GPTConfig | None = None,
                    tokenizer: Tokenizer | None = None) -> Checkpoint:
    """Read a checkpoint; with `config` / `tokenizer`, also check it was made for them."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        data = path.read_bytes()
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, UnicodeDecodeError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or another "
                              f"kind of file): {err}") from None
    try:
        meta = json.loads(header.get("__metadata__", {})[META_KEY])
        if meta["format"] != FORMAT:
            raise KeyError("format")
    except (KeyError, TypeError, json.JSONDecodeError):
        raise CheckpointError(f"{path} is a safetensors file but not a microgpt checkpoint") from None
    if meta["version"] != VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {meta['version']}; this "
                              f"code reads version {VERSION}")
    try:
        saved_config = GPTConfig(**meta["config"])
    except (TypeError, ConfigError) as err:
        raise CheckpointError(f"{path} holds a broken model config: {err}") from None
    if config is not None and saved_config != config:
        raise CheckpointError(f"{path} was made for the model {describe(saved_config)}, "
                              f"not {describe(config)}")
    if tokenizer is not None and tokenizer_to_json(tokenizer) != meta["tokenizer"]:
        raise CheckpointError(f"{path} was made with another tokenizer than this run's")
    weights = FlatParams(saved_config, np.dtype(meta["dtype"]))
    for name, view in weights.views.items():
        if name not in tensors or tensors[name].shape != view.shape:
            raise CheckpointError(f"{path} lacks the weight {name} of shape {view.shape}")
        view[...] = tensors.pop(name)
    return Checkpoint(saved_config, weights, meta["tokenizer"], tensors, meta["state"])


def describe(config: GPTConfig) -> str:
    """A config in one short phrase, for error messages."""
    return f"{config.name} (n_head {config.n_head}, vocabulary {config.vocab_size})"
