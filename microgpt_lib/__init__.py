"""microgpt_lib: the shared package of the microgpt course.

One GPT (Karpathy's microgpt, specified in MODEL.md), implemented again and again as rungs of a
ladder, each faster than the last. Every rung follows the contract in `microgpt_lib.rungs` and
starts from the same `init_params`, so the tests can prove that all of them compute the same thing.
"""
from .config import PRESETS, ConfigError, GPTConfig
from .data import DatasetError, load_docs, load_text
from .params import init_params
from .rungs import Rung, available_rungs, get_rung
from .tokenizer import CharTokenizer, TokenError

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
    "load_docs",
    "load_text",
]
