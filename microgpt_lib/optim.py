"""Adam and its learning-rate schedule, as MODEL.md fixes them for every rung."""
from __future__ import annotations

LEARNING_RATE = 0.01
BETA1 = 0.85
BETA2 = 0.99
EPS = 1e-8


def linear_decay_lr(step: int, num_steps: int, base_lr: float = LEARNING_RATE) -> float:
    """Karpathy's schedule: base_lr at step 0, falling linearly towards 0 at num_steps."""
    return base_lr * (1 - step / num_steps)


def adam_update_numpy(params, grads, m, v, t: int, lr: float) -> None:
    """In place on NumPy arrays of one shape: Adam moments, bias-corrected update, grads reset.

    The reference for `fastops.adam_update` and the optimiser of the NumPy rungs; t counts from 1.
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
