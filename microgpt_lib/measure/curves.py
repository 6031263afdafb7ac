"""Validation loss against training wall-clock for any rung or the batched trainer (chapter 4).

Every curve is measured the same way: the clock counts training steps only (the harness's per-step
times for rungs, the trainer's clock for batches), and the validation loss is computed off the
clock by the same fused forward on the same validation names, from the weights reached so far.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate

import numpy as np

from microgpt_lib.batches import EncodedDocs
from microgpt_lib.config import GPTConfig
from microgpt_lib.optim import LEARNING_RATE
from microgpt_lib.params import Params
from microgpt_lib.rungs import get_rung
from microgpt_lib.rungs.rung4_numpy_kernels.batched_backend import NumpyBackend
from microgpt_lib.tokenizers import CharTokenizer
from microgpt_lib.train.batched import BatchedHistory, evaluate
from microgpt_lib.train.loop import train


@dataclass
class ValidationCurve:
    """Validation loss after `steps[i]` training steps, reached at `seconds[i]` of training."""

    label: str
    steps: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    tokens_per_second: float = 0.0


def validation_loss(config: GPTConfig, params: Params, val: EncodedDocs) -> float:
    """Mean loss per token on `val` of the given weights (nested lists), by the fused forward."""
    return evaluate(NumpyBackend(config, params), val)


def rung_curve(
    rung: str, config: GPTConfig, params: Params, train_docs: Sequence[str], val: EncodedDocs,
    tokenizer: CharTokenizer, num_steps: int, num_evals: int = 8, progress: bool = False,
    max_seconds: float | None = None,
) -> ValidationCurve:
    """Train a one-name-per-step rung (Karpathy's schedule) and evaluate it num_evals times.

    With `max_seconds`, training stops once its clock passes the budget (evaluated there too).
    """
    model = get_rung(rung)(config, params)
    eval_steps = set(np.linspace(0, num_steps - 1, num_evals).round().astype(int).tolist())
    curve = ValidationCurve(rung)

    def evaluate_at(step: int) -> None:
        curve.steps.append(step)
        curve.val_losses.append(validation_loss(config, model.parameters(), val))

    history = train(model, train_docs, tokenizer, num_steps, base_lr=LEARNING_RATE,
                    progress=progress, max_seconds=max_seconds,
                    on_step=lambda step, loss: evaluate_at(step) if step in eval_steps else None)
    if curve.steps[-1] != len(history.losses) - 1:  # stopped early: evaluate where it stopped
        evaluate_at(len(history.losses) - 1)
    clock = list(accumulate(t / 1e3 for t in history.step_times_ms))
    curve.seconds = [clock[s] for s in curve.steps]
    tokens = sum(min(config.block_size, len(train_docs[s % len(train_docs)]) + 1)
                 for s in range(len(history.losses)))
    curve.tokens_per_second = tokens / clock[-1]
    return curve


def batched_curve(label: str, history: BatchedHistory) -> ValidationCurve:
    """The validation points the batched trainer recorded, as a curve."""
    return ValidationCurve(label, list(history.val_steps), list(history.val_seconds),
                           list(history.val_losses), history.tokens_per_second)
