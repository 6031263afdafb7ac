"""Mini-batch training (chapter 4): B padded names per step, a validation split, schedules, clipping.

The trainer is backend-agnostic. A backend holds the model on flat buffers and exposes

    config: GPTConfig
    params: FlatParams                      # the weights, one flat buffer with named views
    grads:  FlatParams                      # same layout; forward_backward adds into it (+=)
    forward_backward(batch: PaddedBatch) -> float # mean loss over the batch's real positions
    loss(batch: PaddedBatch) -> float             # the same loss, forward only (validation)

(`microgpt_lib.rungs.base.BatchedBackend`). `NumpyBackend` runs chapter 4's kernels; chapter 5's
fastops backend plugs in unchanged. The
trainer owns what is the same for every backend: batches, learning-rate schedule, gradient norm
and clipping, Adam (`FlatAdam`, or any object with `step(grads, lr)`), validation and history.
A `PaddedBatch` is right-padded with a mask as the kernels' `layers.py` defines it, so padding is inert.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from microgpt_lib.batches import EncodedDocs
from microgpt_lib.flat_params import FlatParams
from microgpt_lib.numerics import check_count, check_finite, check_lr, check_nonnegative
from microgpt_lib.optim import FlatAdam
from microgpt_lib.train.stop_requests import stop_requests
from microgpt_lib.rungs.base import BatchedBackend
from microgpt_lib.train.schedules import lr_at

# ----------------------------------------------------------------------------------------------
# validation, training

def evaluate(backend: BatchedBackend, docs: EncodedDocs, batch_size: int = 256) -> float:
    """Mean loss per predicted token over every document in `docs` (forward only)."""
    total, count = 0.0, 0
    for batch in docs.batches(batch_size):
        n = batch.num_tokens
        total += backend.loss(batch) * n
        count += n
    return total / count


@dataclass
class TrainSettings:
    """Everything that shapes a batched run (defaults: a short run of the microgpt model)."""

    num_steps: int = 1000
    batch_size: int = 32
    base_lr: float = 1e-2
    min_lr: float = 0.0
    warmup: int = 0
    decay: str = "cosine"
    grad_clip: float | None = None  # clip the global gradient norm to this value
    weight_decay: float = 0.0       # decoupled weight decay of the default FlatAdam (AdamW)
    eval_every: int = 100           # validation loss every this many steps (and at the end)
    eval_docs: int | None = None    # evaluate on the first eval_docs validation names (None: all)
    order: str = "random"           # "random" batches (with replacement) or "sequential"
    seed: int = 0
    blas_threads: int | None = 1    # BLAS threads while training (None: leave as is)
    max_seconds: float | None = None  # stop early once the training clock passes this budget

    def check(self) -> None:
        """ValueError (or TypeError) for a setting no run can use, before anything is trained."""
        check_count("num_steps", self.num_steps)
        check_count("batch_size", self.batch_size)
        check_lr(self.base_lr)
        check_nonnegative("min_lr", self.min_lr)
        check_count("warmup", self.warmup, minimum=0)
        if self.decay not in ("cosine", "linear"):
            raise ValueError(f"decay must be 'cosine' or 'linear', got {self.decay!r}")
        if self.grad_clip is not None and not check_nonnegative("grad_clip", self.grad_clip) > 0:
            raise ValueError("grad_clip must be > 0 (or None for no clipping)")
        check_nonnegative("weight_decay", self.weight_decay)
        check_count("eval_every", self.eval_every)
        if self.eval_docs is not None:
            check_count("eval_docs", self.eval_docs)
        if self.order not in ("random", "sequential"):
            raise ValueError(f"order must be 'random' or 'sequential', got {self.order!r}")
        if self.blas_threads is not None:
            check_count("blas_threads", self.blas_threads)
        if self.max_seconds is not None:  # 0: one step, then stop
            check_nonnegative("max_seconds", self.max_seconds)


@dataclass
class BatchedHistory:
    """Per step: loss, grad norm (before clipping), lr, tokens and seconds; val loss at evals."""

    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # training clock at the end of each step
    val_steps: list[int] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    val_seconds: list[float] = field(default_factory=list)
    interrupted: bool = False

    @property
    def tokens_per_second(self) -> float:
        """Real (predicted) tokens per second of training clock."""
        return sum(self.tokens) / self.seconds[-1]


def grad_norm(grads: FlatParams) -> float:
    """Global L2 norm of every gradient."""
    return math.sqrt(float(np.vecdot(grads.data, grads.data)))


def train_batched(
    backend: BatchedBackend,
    train_docs: EncodedDocs,
    val_docs: EncodedDocs | None,
    settings: TrainSettings,
    optimizer: FlatAdam | None = None,
    progress: bool = True,
) -> BatchedHistory:
    """Train `backend` with mini-batches; Ctrl-C stops after the current step and keeps history.

    The settings are checked before anything runs; a non-finite loss or gradient norm raises
    TrainingDiverged naming the step, before that step's update.

    The training clock counts forward, backward, clipping and Adam; validation runs off the clock.
    BLAS runs on `settings.blas_threads` threads (default 1): our matrices are small, so threads
    buy little, and on a busy machine their spin-waiting can make steps several times slower.
    `optimizer` defaults to FlatAdam; any object with `step(grads, lr)` will do.
    """
    s = settings
    s.check()
    if optimizer is None:
        optimizer = FlatAdam(backend.params, s.weight_decay)
    rng = np.random.default_rng(s.seed)
    val_subset = val_docs
    if val_docs is not None and s.eval_docs is not None and s.eval_docs < len(val_docs):
        val_subset = val_docs.head(s.eval_docs)
    history, clock = BatchedHistory(), 0.0
    bar = tqdm(total=s.num_steps, desc=f"train B={s.batch_size}", disable=not progress)

    def validate(step: int) -> None:
        history.val_steps.append(step)
        history.val_losses.append(evaluate(backend, val_subset))
        history.val_seconds.append(clock)

    def interrupted() -> None:
        history.interrupted = True
        print(f"interrupted after {len(history.losses)} of {s.num_steps} steps; history kept")

    limits = threadpool_limits(s.blas_threads, user_api="blas")
    try:
        with stop_requests() as stop:
            for step in range(s.num_steps):
                if s.order == "random":
                    index = rng.integers(0, len(train_docs), s.batch_size)
                else:
                    first = step * s.batch_size
                    index = np.arange(first, first + s.batch_size) % len(train_docs)
                batch = train_docs.batch(index)
                lr = lr_at(step, s.num_steps, s.base_lr, s.warmup, s.min_lr, s.decay)
                t0 = time.perf_counter()
                backend.grads.data.fill(0.0)
                loss = backend.forward_backward(batch)
                norm = grad_norm(backend.grads)
                # before the update, so the weights stay those of the last good step
                check_finite("loss", loss, step + 1, lr)
                check_finite("gradient norm", norm, step + 1, lr)
                if s.grad_clip is not None and norm > s.grad_clip:
                    backend.grads.data *= s.grad_clip / norm
                optimizer.step(backend.grads, lr)
                clock += time.perf_counter() - t0
                history.losses.append(loss)
                history.grad_norms.append(norm)
                history.lrs.append(lr)
                history.tokens.append(batch.num_tokens)
                history.seconds.append(clock)
                out_of_time = s.max_seconds is not None and clock > s.max_seconds
                last = step == s.num_steps - 1 or out_of_time
                if val_subset is not None and (step % s.eval_every == 0 or last):
                    validate(step)
                val = f" val {history.val_losses[-1]:.4f}" if history.val_losses else ""
                bar.set_postfix_str(f"loss {loss:.4f}{val}", refresh=False)
                bar.update()
                if out_of_time:
                    break
                if stop.requested:  # Ctrl-C: the step is done, stop here
                    interrupted()
                    break
    except KeyboardInterrupt:  # a second Ctrl-C, or outside the main thread
        interrupted()
    finally:
        limits.restore_original_limits()
        bar.close()
    return history


