"""Adam, as the model specification fixes it for every rung: constants, array updates, FlatAdam.

Core of the ladder: the NumPy rungs update per matrix (`adam_update_numpy*`), the kernel rungs and
the batched trainer over one flat buffer (`FlatAdam`); the learning-rate schedules that feed them
live in `microgpt_lib.train.schedules`.
"""
from __future__ import annotations

import numpy as np

from microgpt_lib.flat_params import FlatParams
from microgpt_lib.numerics import check_lr, check_nonnegative

LEARNING_RATE = 0.01
BETA1 = 0.85
BETA2 = 0.99
EPS = 1e-8


def adam_update_numpy(params, grads, m, v, t: int, lr: float) -> None:
    """In place on NumPy arrays of one shape: Adam moments, bias-corrected update, grads reset.

    The reference for `fastops.adamw_update` (without weight decay) and the optimiser of the NumPy rungs; t counts from 1.
    """
    m *= BETA1
    m += (1 - BETA1) * grads
    v *= BETA2
    v += (1 - BETA2) * grads * grads
    m_hat = m / (1 - BETA1**t)
    v_hat = v / (1 - BETA2**t)
    params -= lr * m_hat / (v_hat**0.5 + EPS)
    grads[...] = 0


def adam_update_numpy_preallocated(params, grads, m, v, t: int, lr: float, work) -> None:
    """adam_update_numpy with no temporaries: it writes into `work`, two arrays shaped like params.

    At n_embd 256 (800k weights) allocating the temporaries cost more than the arithmetic.
    """
    a, b = work
    a[...] = grads
    a *= 1 - BETA1
    m *= BETA1
    m += a
    a[...] = grads
    a *= grads
    a *= 1 - BETA2
    v *= BETA2
    v += a
    a[...] = v
    a /= 1 - BETA2**t  # v_hat
    a **= 0.5
    a += EPS
    b[...] = m
    b /= 1 - BETA1**t  # m_hat
    b /= a
    b *= lr
    params -= b
    grads[...] = 0


class FlatAdam:
    """Adam over flat buffers (the specification's constants), in place, through one preallocated scratch.

    Not safe to share between threads (it updates its moments and scratch in place).

    It stores the moments scaled, m' = m / (1 - beta1) and v' = v / (1 - beta2), which turns
    `m = beta1 m + (1 - beta1) g` into `m' = beta1 m' + g`: one pass fewer per moment.
    """

    def __init__(self, params: FlatParams, weight_decay: float = 0.0) -> None:
        self.params = params
        # decoupled (AdamW): p -= lr * weight_decay * p
        self.weight_decay = check_nonnegative("weight_decay", weight_decay)
        self.m = np.zeros_like(params.data)  # m / (1 - beta1)
        self.v = np.zeros_like(params.data)  # v / (1 - beta2)
        self.scratch = np.empty_like(params.data)
        self.t = 0

    def step(self, grads: FlatParams, lr: float) -> None:
        """m, v <- moments of grads; p -= lr * m_hat / (sqrt(v_hat) + eps); grads <- 0.

        With c1 = 1 - beta1^t, c2 = 1 - beta2^t and a = sqrt((1 - beta2) / c2):
        m_hat = (1 - beta1) m' / c1 and sqrt(v_hat) = a sqrt(v'), so the update is
        p -= (lr (1 - beta1) / (c1 a)) * m' / (sqrt(v') + eps / a): five passes.
        A bad lr or gradient buffer is rejected before anything changes.
        """
        lr = check_lr(lr)
        if grads.data.shape != self.m.shape or grads.data.dtype != self.m.dtype:
            raise ValueError(f"grads must match the parameters ({self.m.shape} {self.m.dtype}), "
                             f"got {grads.data.shape} {grads.data.dtype}")
        self.t += 1
        g, m, v, s = grads.data, self.m, self.v, self.scratch
        m *= BETA1
        m += g
        v *= BETA2
        np.multiply(g, g, out=s)
        v += s
        a = ((1 - BETA2) / (1 - BETA2**self.t)) ** 0.5
        np.sqrt(v, out=s)
        s += EPS / a
        np.divide(m, s, out=s)
        s *= lr * (1 - BETA1) / ((1 - BETA1**self.t) * a)
        if self.weight_decay:
            self.params.data *= 1 - lr * self.weight_decay
        self.params.data -= s
        g.fill(0.0)
