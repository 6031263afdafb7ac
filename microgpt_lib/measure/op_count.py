"""Count arithmetic exactly: a number that tallies every operation done with it (chapter 6).

NumPy runs object arrays element by element through Python's operators, so a NumPy kernel given
arrays of `CountedFloat` performs, on tiny sizes, exactly the additions, multiplications,
comparisons and functions (exp, log, sqrt) it does on floats, and each one is tallied. This is
the measured count the chapter's FLOP formulas are checked against.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import numpy as np


class CountedFloat:
    """A float whose arithmetic is tallied in CountedFloat.tally (one operation each)."""

    __slots__ = ("value",)
    tally: Counter | None = None

    def __init__(self, value: float) -> None:
        self.value = float(value)

    @staticmethod
    def _count(kind: str) -> None:
        if CountedFloat.tally is not None:
            CountedFloat.tally[kind] += 1

    def _binary(self, other, kind: str, op: Callable[[float, float], float]) -> CountedFloat:
        CountedFloat._count(kind)
        return CountedFloat(op(self.value, _value(other)))

    def __add__(self, other):
        return self._binary(other, "add", lambda a, b: a + b)

    def __radd__(self, other):
        return self._binary(other, "add", lambda a, b: b + a)

    def __sub__(self, other):
        return self._binary(other, "add", lambda a, b: a - b)

    def __rsub__(self, other):
        return self._binary(other, "add", lambda a, b: b - a)

    def __mul__(self, other):
        return self._binary(other, "mul", lambda a, b: a * b)

    def __rmul__(self, other):
        return self._binary(other, "mul", lambda a, b: b * a)

    def __truediv__(self, other):
        return self._binary(other, "div", lambda a, b: a / b)

    def __rtruediv__(self, other):
        return self._binary(other, "div", lambda a, b: b / a)

    def __pow__(self, other):
        return self._binary(other, "func", lambda a, b: a**b)

    def __neg__(self):
        CountedFloat._count("add")
        return CountedFloat(-self.value)

    def _compare(self, other, op) -> bool:
        CountedFloat._count("compare")
        return op(self.value, _value(other))

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __float__(self) -> float:
        return self.value

    def conjugate(self) -> CountedFloat:  # NumPy's vecdot conjugates its first operand: free
        return self

    def exp(self) -> CountedFloat:
        CountedFloat._count("func")
        return CountedFloat(math.exp(self.value))

    def log(self) -> CountedFloat:
        CountedFloat._count("func")
        return CountedFloat(math.log(self.value))

    def sqrt(self) -> CountedFloat:
        CountedFloat._count("func")
        return CountedFloat(math.sqrt(self.value))


def _value(x) -> float:
    return x.value if isinstance(x, CountedFloat) else float(x)


def counted_array(a: np.ndarray) -> np.ndarray:
    """An object array of CountedFloat with a's values and shape."""
    out = np.empty(a.shape, dtype=object)
    out.reshape(-1)[:] = [CountedFloat(v) for v in np.asarray(a, dtype=float).reshape(-1)]
    return out


def count_ops(fn: Callable, *args) -> tuple[Counter, object]:
    """Run fn(*args) with every float ndarray argument counted; returns (tally by kind, result).

    Integer arrays (token ids, targets) are passed unchanged. Kinds: add (also subtract and
    negate), mul, div, compare (max, relu), func (exp, log, sqrt, power).
    """
    tally: Counter = Counter()
    converted = [counted_array(a) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
                 for a in args]
    CountedFloat.tally = tally
    try:
        result = fn(*converted)
    finally:
        CountedFloat.tally = None
    return tally, result
