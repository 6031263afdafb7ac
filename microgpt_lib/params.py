"""The one parameter initialisation every rung starts from (the specification's order), as nested lists."""
from __future__ import annotations

import random

import numpy as np

from microgpt_lib.config import GPTConfig

Matrix = list[list[float]]
Params = dict[str, Matrix]

INIT_STD = 0.08


def init_params(config: GPTConfig, seed: int = 0, rng: random.Random | None = None) -> Params:
    """Draw every weight from N(0, 0.08), matrix by matrix and row by row, in the specification's order.

    Pass `rng` instead of `seed` to continue an existing random stream: Karpathy's script shuffles the
    documents first and then draws the weights from the same generator, and reproducing his run
    exactly needs that order.
    """
    rng = random.Random(seed) if rng is None else rng
    return {
        name: [[rng.gauss(0, INIT_STD) for _ in range(cols)] for _ in range(rows)]
        for name, (rows, cols) in config.param_shapes().items()
    }


def copy_params(params: Params) -> Params:
    """A deep copy of a parameter dictionary (rows are fresh lists)."""
    return {name: [list(row) for row in matrix] for name, matrix in params.items()}


def check_params(config: GPTConfig, params: Params) -> None:
    """Raise ValueError if `params` does not hold exactly the matrices `config` needs, each of
    its shape and of finite numbers (a NaN weight would otherwise surface as a diverged run)."""
    shapes = config.param_shapes()
    if set(params) != set(shapes):
        missing = sorted(set(shapes) - set(params))
        extra = sorted(set(params) - set(shapes))
        raise ValueError(f"parameters do not match the config: missing {missing}, unexpected {extra}")
    for name, (rows, cols) in shapes.items():
        try:
            values = np.asarray(params[name])
        except (TypeError, ValueError):  # rows of different lengths
            values = np.empty(0, dtype=object)
        if values.dtype.kind not in "iuf" or values.ndim != 2:
            raise ValueError(f"{name} is not a {rows} x {cols} matrix of numbers")
        if values.shape != (rows, cols):
            raise ValueError(f"{name} has shape {values.shape}, the config needs {(rows, cols)}")
        if not np.isfinite(values).all():
            raise ValueError(f"{name} holds weights that are not finite (nan or infinity)")
