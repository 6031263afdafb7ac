"""The ladder contract: the small interface every implementation (rung) of the GPT follows.

A rung is a class built as `Rung(config, params)` from the shared `init_params` output, and it
offers exactly this:

- `loss_and_grads(tokens) -> (loss, grads)`: mean next-token cross-entropy over one document
  (`[BOS] + ids + [BOS]`, predicting `min(block_size, len(tokens) - 1)` positions) and the gradient
  of that loss for every weight matrix, keyed like `params` and of the same (rows, cols) shape
  (nested lists for pure-Python rungs, NumPy arrays for the others).
- `step(lr)`: one Adam update (the specification's betas and eps) with the gradients of the last
  `loss_and_grads`; the bias correction counts the calls to `step`.
- `train_step(tokens, lr) -> loss`: both of the above; rungs override it when they can skip
  handing the gradients back (this is what the benchmark harness times).
- `generate(n, temperature, seed=None, rng=None) -> list of token lists`: n samples, each started
  from BOS at position 0 and stopped at BOS or after block_size tokens; draws use `rng.choices`
  (a `random.Random`), made from `seed` when no `rng` is given. The loop is written once, here;
  a rung supplies `start_sample()` (fresh per-sample state, e.g. an empty KV cache) and
  `next_token_probs(state, token_id, pos_id, temperature)`.
- `parameters() -> params`: the current weights as nested lists of floats.

The first three are written once, in `Rung` (`rungs/base.py`), so every rung answers bad input
the same way: TypeError for token ids that are not integers (1.9, True, "a"), ValueError for a
document of fewer than 2 tokens, ids outside the vocabulary or a learning rate that is negative
or not finite; a rejected call changes neither the weights nor the optimiser's state. A step
always uses the gradient of its own document only, and a loss that is not finite raises
`microgpt_lib.numerics.TrainingDiverged`. A rung implements the hooks these call
(`zero_grads`, `forward_backward`, `gradients`, `adam_step`, optionally a fused
`forward_backward_step`). A model is not safe to share between threads.

Two rungs started from the same parameters compute the same losses and gradients (to float
rounding), and that is what the tests check. Rungs are registered by name below and imported
lazily, so asking for one never imports another's dependencies.

The package holds one folder per chapter of the ladder, in order: `rung1_scalar` (the `Value`
engine and the reference GPT), `rung2_python_fast` (vector nodes, and the intermediate variants
chapter 2 times), `rung3_numpy` (the `Tensor` engine, `numpy` and `numpy_all_positions`),
`rung4_numpy_kernels` (hand-derived forward/backward layers) and `rung5_cython` (fastops).
"""
from __future__ import annotations

import importlib

from microgpt_lib.rungs.base import Rung

# name -> "module:Class", imported on first use by get_rung.
_REGISTRY: dict[str, str] = {
    "scalar": "microgpt_lib.rungs.rung1_scalar.gpt:ScalarGPT",
    "python_fast": "microgpt_lib.rungs.rung2_python_fast.gpt:PythonFastGPT",
    "numpy": "microgpt_lib.rungs.rung3_numpy.gpt:NumpyGPT",
    "numpy_all_positions": "microgpt_lib.rungs.rung3_numpy.all_positions:NumpyAllPositionsGPT",
    "numpy_kernels": "microgpt_lib.rungs.rung4_numpy_kernels.gpt:NumpyKernelsGPT",
    "cython": "microgpt_lib.rungs.rung5_cython.gpt:CythonGPT",
}


def available_rungs() -> list[str]:
    """Names of all registered rungs, bottom of the ladder first."""
    return list(_REGISTRY)


def get_rung(name: str) -> type[Rung]:
    """The rung class registered as `name`, or at a "module:Class" path (the intermediate
    variants chapter 2 times); ValueError listing the known names otherwise."""
    if ":" not in name and name not in _REGISTRY:
        raise ValueError(f"unknown rung {name!r}; known rungs: {', '.join(_REGISTRY)}")
    module_name, class_name = _REGISTRY.get(name, name).split(":")
    return getattr(importlib.import_module(module_name), class_name)
