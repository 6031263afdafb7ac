"""microgpt_lib: the shared package of the microgpt course, in layers that import one way.

One GPT (Karpathy's microgpt, specified in the book's page "The model, exactly"), built again and
again as rungs of a ladder, each faster than the last. Every rung follows the contract in
`microgpt_lib.rungs` and starts from the same `init_params`, so the tests can prove that all of
them compute the same thing.

    core      config, params, flat_params, data, tokenizers, batches, optim, gc_pause, machine,
              cpu_load, settings, files, checkpoint, scenarios: what every layer above shares
    rungs/    the ladder, one folder per chapter: rung1_scalar ... rung5_cython
    train/    training loops (one document per step, mini-batches), schedules, recipes
    measure/  benchmark harness, throughput, gradient checks, profiling, floors, traffic, ...
    notebook/ what only the chapters use: show_source, plots, widgets
    cli       the `microgpt` command (train, sample, scenarios, bench)

A module imports only from its own layer and the layers listed above it (tests/test_layering.py).
"""
from microgpt_lib.config import PRESETS, ConfigError, GPTConfig
from microgpt_lib.data import DatasetError, load_docs, load_text
from microgpt_lib.params import init_params
from microgpt_lib.rungs import available_rungs, get_rung, load_rung
from microgpt_lib.rungs.base import Rung
from microgpt_lib.tokenizers import CharTokenizer, TokenError

__all__ = [
    "PRESETS",
    "CharTokenizer",
    "ConfigError",
    "DatasetError",
    "GPTConfig",
    "Rung",
    "TokenError",
    "available_rungs",
    "get_rung",
    "init_params",
    "load_rung",
    "load_docs",
    "load_text",
]
