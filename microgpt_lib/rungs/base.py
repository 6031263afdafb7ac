"""The ladder contract's base class: what every rung offers, and the checks all share.

See `microgpt_lib.rungs` for the contract in words. `softmax_weights` turns a rung's logits into
the sampling weights `Rung.generate` draws from; `BatchedBackend` is the smaller interface the
mini-batch trainer drives (chapter 4's NumPy kernels, chapter 5's fastops).
"""
from __future__ import annotations

import math
import operator
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from microgpt_lib.batches import PaddedBatch
from microgpt_lib.checkpoint import load_checkpoint
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
        if isinstance(tokens, (str, bytes)):  # text is not ids, even "" (no id to reject)
            raise TypeError(_not_token_ids(tokens))
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

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> "Rung":
        """This rung built from the weights and config of a checkpoint file (any rung's, any dtype)."""
        ckpt = load_checkpoint(path)
        return cls(ckpt.config, ckpt.params(), **kwargs)

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

    def feed(self, state: Any, token_ids: Sequence[int], first_pos: int,
             temperature: float) -> Sequence[float]:
        """Feed several tokens from position `first_pos`; the probabilities after the last.

        One `next_token_probs` per token; a rung that can run a prompt in one pass overrides it.
        """
        for pos_id, token_id in enumerate(token_ids, first_pos):
            probs = self.next_token_probs(state, token_id, pos_id, temperature)
        return probs

    def generate(
        self, n: int, temperature: float = 0.5, seed: int | None = None,
        rng: random.Random | None = None, *, prompt: Sequence[int] = (),
        bos_first: bool = True, top_k: int | None = None, stop_at_bos: bool = True,
        max_new_tokens: int | None = None,
    ) -> list[list[int]]:
        """n samples of new token ids, drawn with `rng` (or a fresh one from `seed`).

        Each sample's context starts as [BOS] + prompt (`bos_first`, the default) or the prompt
        alone (a model trained on continuous text never saw BOS). Then, one token at a time:

        - temperature > 0 draws from softmax(logits / temperature) with `rng.choices`;
          temperature 0 takes the most likely token (greedy, ties to the lowest id) and draws
          nothing. A negative, infinite or NaN temperature is a ValueError.
        - top_k keeps the k most likely tokens (ties broken towards the lower id) and draws
          among them; None keeps all.
        - stop_at_bos ends the sample at BOS (BOS not kept); otherwise BOS is an ordinary token.
        - max_new_tokens caps the new tokens. None fills the context once (block_size minus the
          context). More than that slides the window: each further token is predicted from
          the last block_size tokens, positions counted from 0 again, as in training.

        The defaults draw exactly as Karpathy's script: from BOS at position 0, up to
        block_size tokens, stopped at BOS.
        """
        n = _check_count("n", n)
        temperature = check_temperature(temperature)
        prompt = self._check_prompt(prompt, bos_first)
        bos, vocab, block = self.config.vocab_size - 1, self.config.vocab_size, self.config.block_size
        context = [bos, *prompt] if bos_first else prompt
        if max_new_tokens is None:
            max_new_tokens = block - len(context) + 1
            if max_new_tokens < 1:
                raise ValueError(f"the context of {len(context)} tokens fills the block of {block}: "
                                 "pass max_new_tokens to slide the window past it")
        max_new_tokens = _check_count("max_new_tokens", max_new_tokens)
        if top_k is not None and not (isinstance(top_k, int) and 1 <= top_k <= vocab):
            raise ValueError(f"top_k must be an integer in 1..{vocab} or None, got {top_k!r}")
        rng = rng if rng is not None else random.Random(seed)
        token_ids = range(vocab)
        samples = []
        for _ in range(n):
            tokens, sample = list(context), []
            state, start, fed = self.start_sample(), 0, 0  # window tokens[start:start + fed]
            for _ in range(max_new_tokens):
                if fed == block:  # the window is full: restart it on the last block_size tokens
                    state, fed = self.start_sample(), 0
                if fed == 0:
                    start = max(0, len(tokens) - block)
                new = tokens[start + fed :]  # the window's tokens not yet in the state
                probs = self.feed(state, new, fed, temperature or 1.0)
                fed += len(new)
                if top_k is not None:
                    probs = top_k_weights(probs, top_k)
                if temperature == 0:
                    token_id = max(token_ids, key=probs.__getitem__)
                else:
                    token_id = rng.choices(token_ids, weights=probs)[0]
                if stop_at_bos and token_id == bos:
                    break
                tokens.append(token_id)
                sample.append(token_id)
            samples.append(sample)
        return samples

    def _check_prompt(self, prompt: Sequence[int], bos_first: bool) -> list[int]:
        """The prompt as a list of ids in the vocabulary; without BOS first it must not be empty."""
        vocab = self.config.vocab_size
        ids = [operator.index(t) for t in prompt]
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"prompt ids {bad[:5]} are outside the vocabulary 0..{vocab - 1}")
        if not ids and not bos_first:
            raise ValueError("an empty prompt without BOS first leaves nothing to predict from")
        return ids

    def context_probs(self, context: Sequence[int], temperature: float = 1.0) -> list[float]:
        """Next-token probabilities after `context` (at most block_size ids, from position 0)."""
        if not 1 <= len(context) <= self.config.block_size:
            raise ValueError(f"a context holds 1..{self.config.block_size} tokens, "
                             f"got {len(context)}")
        ids = self._check_prompt(context, True)
        return list(self.feed(self.start_sample(), ids, 0, check_temperature(temperature)))

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


def check_temperature(temperature: float) -> float:
    """`temperature` as a float if it is finite and >= 0 (0 means greedy); ValueError otherwise."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a number, got {temperature!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    return value


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def top_k_weights(probs: Sequence[float], k: int) -> list[float]:
    """`probs` with all but the k largest set to 0 (ties go to the lower id)."""
    keep = sorted(range(len(probs)), key=lambda i: -probs[i])[:k]
    out = [0.0] * len(probs)
    for i in keep:
        out[i] = probs[i]
    return out


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
