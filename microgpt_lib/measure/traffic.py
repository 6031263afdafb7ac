"""Count what NumPy code does to memory: array passes, temporaries allocated, bytes moved (chapter 4).

`count_traffic(fn, *arrays)` runs fn on views of the arrays that report every NumPy operation
(each ufunc call, reduction, matmul and array function such as concatenate) to a counter: one
pass per operation; a temporary for every result NumPy had to allocate (no `out=`, not in place);
bytes read (operands) and written (results). Plain indexing and reshapes that copy are not seen:
the counts are a lower bound on traffic, the same for every version compared.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from microgpt_lib.flat_params import FlatParams


@dataclass
class Traffic:
    """Totals of one run: operations (passes over arrays), temporaries, bytes allocated and moved."""

    passes: int = 0
    temporaries: int = 0
    bytes_allocated: int = 0
    bytes_read: int = 0
    bytes_written: int = 0

    @property
    def bytes_moved(self) -> int:
        return self.bytes_read + self.bytes_written


class _Counted(np.ndarray):
    """An ndarray whose NumPy operations are tallied in `_Counted.traffic`."""

    traffic: Traffic | None = None

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        args = [_plain(a) for a in inputs]
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        results = result if isinstance(result, tuple) else (result,)
        _tally(args, results, allocated=out is None)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        plain_args = [[_plain(a) for a in x] if isinstance(x, (list, tuple)) else _plain(x)
                      for x in args]
        result = func(*plain_args, **{k: _plain(v) for k, v in kwargs.items()})
        operands = [a for x in plain_args for a in (x if isinstance(x, list) else [x])]
        _tally(operands, result if isinstance(result, tuple) else (result,), allocated=True)
        return _wrap(result)


def _plain(a):
    return a.view(np.ndarray) if isinstance(a, _Counted) else a


def _wrap(result):
    if isinstance(result, tuple):
        return tuple(_wrap(r) for r in result)
    return result.view(_Counted) if isinstance(result, np.ndarray) else result


def _tally(operands, results, allocated: bool) -> None:
    t = _Counted.traffic
    if t is None:
        return
    written = sum(r.nbytes for r in results if isinstance(r, np.ndarray))
    t.passes += 1
    t.bytes_read += sum(a.nbytes for a in operands if isinstance(a, np.ndarray))
    t.bytes_written += written
    if allocated:
        t.temporaries += sum(isinstance(r, np.ndarray) for r in results)
        t.bytes_allocated += written


def counted(a: np.ndarray) -> np.ndarray:
    """A view of `a` whose operations are counted (shares memory: in-place writes reach `a`)."""
    return a.view(_Counted)


def count_traffic(fn: Callable, *args) -> tuple[Traffic, object]:
    """Run fn(*args) with every ndarray argument counted; returns (traffic, fn's result)."""
    traffic = Traffic()
    _Counted.traffic = traffic
    try:
        result = fn(*[counted(a) if isinstance(a, np.ndarray) else a for a in args])
    finally:
        _Counted.traffic = None
    return traffic, result


def counted_flat(flat: FlatParams) -> FlatParams:
    """A FlatParams sharing `flat`'s memory whose buffer and views count their operations."""
    out = copy.copy(flat)
    out.data = counted(flat.data)
    out.views = {name: out.data[o : o + view.size].reshape(view.shape)
                 for (name, view), o in zip(flat.views.items(), flat.offsets.values())}
    return out
