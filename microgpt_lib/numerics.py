"""Numerical safety (core): hyper-parameters checked where they enter, and the divergence error.

Every optimiser, trainer and rung of the ladder checks its learning rate, betas, eps, weight
decay and clipping threshold with the functions below, so a wrong value is a `ValueError` (or a
`TypeError` for something that is not a number) before any state changes. A run whose loss or
gradient stops being finite raises `TrainingDiverged`, naming the step and what to try, instead of
training on NaN.
"""
from __future__ import annotations

import math
import numbers


class TrainingDiverged(FloatingPointError):
    """A training step produced a non-finite loss or gradient (the run has diverged).

    `step` is the step that diverged (counting from 1) and `problem` says what went wrong. The
    model may hold non-finite weights afterwards: start again from saved weights or a fresh model.
    """

    def __init__(self, problem: str, step: int, lr: float | None = None) -> None:
        hint = "try a smaller learning rate" + (f" than {lr:g}" if lr is not None else "")
        super().__init__(f"training diverged at step {step}: {problem}; {hint}, "
                         "or clip the gradient norm")
        self.problem, self.step, self.lr = problem, step, lr


def check_finite(what: str, value: float, step: int, lr: float | None = None) -> float:
    """`value` if it is finite, else TrainingDiverged naming `what` (e.g. "loss") and the step."""
    if not math.isfinite(value):
        raise TrainingDiverged(f"the {what} is {value}", step, lr)
    return value


def real_number(name: str, value: object) -> float:
    """`value` as a float; TypeError for a bool, a string or anything else that is not a number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def check_lr(lr: object) -> float:
    """A learning rate: a finite number >= 0 (0 leaves the weights unchanged)."""
    if lr.__class__ is not float:  # the fast path: a plain float needs no conversion
        lr = real_number("lr", lr)
    if not 0.0 <= lr < math.inf:
        raise ValueError(f"the learning rate must be finite and >= 0, got {lr}")
    return lr


def check_nonnegative(name: str, value: object) -> float:
    """A finite number >= 0 (weight decay, a clipping threshold, a minimum learning rate)."""
    value = real_number(name, value)
    if not 0.0 <= value < math.inf:
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return value


def check_betas(betas: tuple[float, float]) -> tuple[float, float]:
    """Adam's (beta1, beta2), each in [0, 1): at 1 a moment never moves and its bias correction
    divides by zero."""
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    checked = tuple(real_number(f"beta{i + 1}", b) for i, b in enumerate(betas))
    for i, b in enumerate(checked):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"beta{i + 1} must be in [0, 1), got {b}")
    return checked


def check_eps(eps: object) -> float:
    """Adam's eps: finite and > 0 (it keeps the update's denominator away from zero)."""
    eps = real_number("eps", eps)
    if not 0.0 < eps < math.inf:
        raise ValueError(f"eps must be finite and > 0, got {eps}")
    return eps


def check_count(name: str, value: object, minimum: int = 1) -> int:
    """An integer >= minimum (a number of steps, a batch size); TypeError for 2.5 or True."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)
