"""The ladder contract's base class: what every rung offers, and the checks all share.

See `microgpt_lib.rungs` for the contract in words. `softmax_weights` turns a rung's logits into
the sampling weights `Rung.generate` draws from; `BatchedBackend` is the smaller interface the
mini-batch trainer drives (chapter 4's NumPy kernels, chapter 5's fastops).
"""
from __future__ import annotations

import operator
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from microgpt_lib.batches import PaddedBatch
from microgpt_lib.config import GPTConfig
from microgpt_lib.flat_params import FlatParams
from microgpt_lib.numerics import TrainingDiverged, check_finite, check_lr
from microgpt_lib.params import Params, check_params


class Rung(ABC):
    """Base class of every rung: the public methods, which check their input the same way for all.

    `loss_and_grads`, `step` and `train_step` are defined here, once: they check the document and
    the learning rate (a rejected call changes nothing), make every gradient that of the latest
    document only, and stop a diverging run with `TrainingDiverged`. A rung implements the hooks
    they call: `zero_grads`, `forward_backward`, `gradients` and `adam_step` (and may replace
    `forward_backward_step` by a fused version).

    A model is not safe to share between threads: a step changes its weights, gradients and
    scratch buffers in place. Give each thread its own model.
    """

    name: str = ""

    def __init__(self, config: GPTConfig, params: Params) -> None:
        check_params(config, params)
        self.config = config
        self.steps_done = 0  # Adam updates so far (named by TrainingDiverged)
        self.grads_pending = False  # gradients left by loss_and_grads, not yet used by step

    def check_tokens(self, tokens: Sequence[int]) -> list[int]:
        """The document as a list of ints; TypeError for ids that are not integers (1.9, True,
        "a") or a document that is not a sequence, ValueError for fewer than 2 tokens or ids
        outside the vocabulary. (Cheap: every training step of every rung runs it.)"""
        try:
            ids = list(map(operator.index, tokens))  # TypeError for 1.9, "a", None, numpy bools
        except TypeError:
            raise TypeError(_not_token_ids(tokens)) from None
        if bool in map(type, tokens):  # True is an int to Python, never a token id
            raise TypeError("token ids must be integers, got a bool")
        if len(ids) < 2:
            raise ValueError(f"a document needs at least 2 tokens to predict one, got {len(ids)}")
        vocab = self.config.vocab_size
        if min(ids) < 0 or max(ids) >= vocab:
            bad = [t for t in ids if not 0 <= t < vocab]
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary 0..{vocab - 1}")
        return ids

    def loss_and_grads(self, tokens: Sequence[int]) -> tuple[float, dict[str, Any]]:
        """Mean cross-entropy over the document's positions and the gradient of every matrix.

        The gradients stay in the model for a following `step`; a non-finite loss raises
        TrainingDiverged.
        """
        ids = self.check_tokens(tokens)
        self.zero_grads()
        self.grads_pending = True
        loss = self._computed_loss(self.forward_backward, ids)
        return check_finite("loss", loss, self.steps_done + 1), self.gradients()

    def step(self, lr: float) -> None:
        """One Adam update with the gradients of the last loss_and_grads (then cleared)."""
        lr = check_lr(lr)
        self.adam_step(lr)
        self.grads_pending = False
        self.steps_done += 1

    def train_step(self, tokens: Sequence[int], lr: float) -> float:
        """One document's loss, its gradient (only its own) and one Adam update; returns the loss.

        TrainingDiverged if the loss is not finite (the update has been applied by then).
        """
        ids = self.check_tokens(tokens)
        lr = check_lr(lr)
        if self.grads_pending:  # left by loss_and_grads: this step uses this document's only
            self.zero_grads()
        self.grads_pending = True
        loss = self._computed_loss(self.forward_backward_step, ids, lr, lr=lr)
        self.grads_pending = False
        self.steps_done += 1
        return check_finite("loss", loss, self.steps_done, lr)

    def _computed_loss(self, compute: Callable[..., float], *args: Any,
                       lr: float | None = None) -> float:
        """compute(*args), with a failure of pure-Python math (the log of 0, an overflowing
        exp: the input is checked already, so only the weights can cause it) as TrainingDiverged."""
        try:
            return compute(*args)
        except (ArithmeticError, ValueError) as err:
            if isinstance(err, ValueError) and str(err) != "math domain error":
                raise
            raise TrainingDiverged(f"computing the loss failed ({err})", self.steps_done + 1,
                                   lr) from err

    # --- what a rung implements ---------------------------------------------------------------

    @abstractmethod
    def zero_grads(self) -> None:
        """Set every gradient to zero."""

    @abstractmethod
    def forward_backward(self, ids: list[int]) -> float:
        """The mean loss of one checked document; adds its gradient into the (zeroed) gradients."""

    @abstractmethod
    def gradients(self) -> dict[str, Any]:
        """A copy of the gradient of every matrix, keyed like the parameters."""

    @abstractmethod
    def adam_step(self, lr: float) -> None:
        """One Adam update with the current gradients (lr checked), then the gradients are zeroed."""

    def forward_backward_step(self, ids: list[int], lr: float) -> float:
        """forward_backward then adam_step; a rung may fuse them (returns the loss)."""
        loss = self.forward_backward(ids)
        self.adam_step(lr)
        return loss

    @abstractmethod
    def start_sample(self) -> Any:
        """Fresh state for one sample (a KV cache, or the tokens so far)."""

    @abstractmethod
    def next_token_probs(
        self, state: Any, token_id: int, pos_id: int, temperature: float
    ) -> Sequence[float]:
        """softmax(logits / temperature) for the token after `token_id` at position `pos_id`."""

    def generate(
        self, n: int, temperature: float = 0.5, seed: int | None = None,
        rng: random.Random | None = None,
    ) -> list[list[int]]:
        """n samples of token ids (BOS excluded), drawn with `rng` (or a fresh one from `seed`)."""
        rng = rng if rng is not None else random.Random(seed)
        bos, token_ids = self.config.vocab_size - 1, range(self.config.vocab_size)
        samples = []
        for _ in range(n):
            state, token_id, sample = self.start_sample(), bos, []
            for pos_id in range(self.config.block_size):
                probs = self.next_token_probs(state, token_id, pos_id, temperature)
                token_id = rng.choices(token_ids, weights=probs)[0]
                if token_id == bos:
                    break
                sample.append(token_id)
            samples.append(sample)
        return samples

    @abstractmethod
    def parameters(self) -> Params:
        """The current weights as nested lists of floats."""


def _not_token_ids(tokens: object) -> str:
    """Why `tokens` is not a sequence of token ids (for the TypeError of check_tokens)."""
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Iterable):
        return f"a document is a sequence of token ids, got {type(tokens).__name__}"
    for t in tokens:
        try:
            operator.index(t)
        except TypeError:
            return f"token ids must be integers, got {type(t).__name__} {t!r}"
    return "token ids must be integers"


def softmax_weights(logits: np.ndarray, temperature: float) -> list[float]:
    """softmax(logits / temperature) as Python floats, the weights `random.choices` takes."""
    scaled = logits / temperature
    probs = np.exp(scaled - scaled.max())
    return (probs / probs.sum()).tolist()


class BatchedBackend(Protocol):
    """What the trainer needs from a model implementation (see microgpt_lib.train.batched)."""

    config: GPTConfig
    params: FlatParams
    grads: FlatParams

    def forward_backward(self, batch: PaddedBatch) -> float: ...

    def loss(self, batch: PaddedBatch) -> float: ...
