"""Learning-rate schedules: Karpathy's linear decay, warm-up then cosine, and nanoGPT's recipe.

Each is a pure function of the step, so a resumed run gets the same rates as an uninterrupted one.
"""
from __future__ import annotations

import math

from microgpt_lib.optim import LEARNING_RATE


def linear_decay_lr(step: int, num_steps: int, base_lr: float = LEARNING_RATE) -> float:
    """Karpathy's schedule: base_lr at step 0, falling linearly towards 0 at num_steps."""
    return lr_at(step, num_steps, base_lr, decay="linear")


def lr_at(step: int, num_steps: int, base_lr: float, warmup: int = 0, min_lr: float = 0.0,
          decay: str = "cosine") -> float:
    """Linear warmup over `warmup` steps, then cosine or linear decay from base_lr to min_lr."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, num_steps - warmup)
    if decay == "cosine":
        return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))
    if decay == "linear":
        return min_lr + (base_lr - min_lr) * (1 - progress)
    raise ValueError(f"decay must be 'cosine' or 'linear', got {decay!r}")


def nanogpt_lr(it: int, learning_rate: float, min_lr: float, warmup_iters: int,
               lr_decay_iters: int) -> float:
    """nanoGPT's get_lr: linear warm-up, then cosine decay from learning_rate to min_lr."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)
