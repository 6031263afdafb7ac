"""All parameters in one flat buffer with a named 2-D view per matrix, as llm.c lays them out.

The fused NumPy rung (chapter 4) and the Cython rung (chapter 5) keep weights, gradients and Adam
moments this way: the optimiser is one loop over four flat arrays, and each layer reads its matrix
through a view that shares the buffer's memory.
"""
from __future__ import annotations

import numpy as np

from microgpt_lib.config import GPTConfig
from microgpt_lib.params import Params


class FlatParams:
    """One contiguous (num_params,) array and `views[name]`, a (rows, cols) view into it."""

    def __init__(self, config: GPTConfig, dtype: np.dtype | type = np.float64) -> None:
        self.config = config
        self.shapes = config.param_shapes()
        self.data = np.zeros(config.num_params, dtype=dtype)
        self.offsets: dict[str, int] = {}
        self.views: dict[str, np.ndarray] = {}
        offset = 0
        for name, (rows, cols) in self.shapes.items():
            self.offsets[name] = offset
            self.views[name] = self.data[offset : offset + rows * cols].reshape(rows, cols)
            offset += rows * cols

    @classmethod
    def from_params(cls, config: GPTConfig, params: Params, dtype=np.float64) -> "FlatParams":
        """A flat copy of nested-list parameters (the specification's order)."""
        flat = cls(config, dtype)
        for name, view in flat.views.items():
            view[...] = params[name]
        return flat

    def zeros_like(self) -> "FlatParams":
        """A buffer of the same layout filled with zeros (for gradients and Adam moments)."""
        return FlatParams(self.config, self.data.dtype)

    def to_params(self) -> Params:
        """Back to nested lists of Python floats."""
        return {name: view.tolist() for name, view in self.views.items()}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.views[name]
