"""Mini-batch training (chapter 4): B padded names per step, a validation split, schedules, clipping.

The trainer is backend-agnostic. A backend holds the model on flat buffers and exposes

    config: GPTConfig
    params: FlatParams                      # the weights, one flat buffer with named views
    grads:  FlatParams                      # same layout; forward_backward adds into it (+=)
    forward_backward(batch: Batch) -> float # mean loss over the batch's real positions
    loss(batch: Batch) -> float             # the same loss, forward only (validation)

`NumpyBackend` runs chapter 4's fused kernels; chapter 5's Cython backend plugs in unchanged. The
trainer owns what is the same for every backend: batches, learning-rate schedule, gradient norm
and clipping, Adam (`FlatAdam`, or any object with `step(grads, lr)`), validation and history.
A `Batch` is right-padded with a mask as `layers.py` defines it, so padding is inert.
"""
from __future__ import annotations

import ctypes
import json
import math
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from .config import GPTConfig
from .flat import FlatParams
from .fused_gpt import FlatAdam, check_batch, gpt_backward, gpt_forward
from .params import Params
from .progress import Progress
from .tokenizer import CharTokenizer


# ----------------------------------------------------------------------------------------------
# data: split, encode, pad

def split_docs(docs: Sequence[str], val_fraction: float = 0.1, seed: int = 1337
               ) -> tuple[list[str], list[str]]:
    """A fixed random split (train, val): val_fraction of the docs, chosen with `seed`."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(docs) * val_fraction))
    return [docs[i] for i in order[n_val:]], [docs[i] for i in order[:n_val]]


@dataclass
class Batch:
    """B right-padded sequences: tokens, targets (B, T) int; mask (B, T) float, 1.0 = real."""

    tokens: np.ndarray
    targets: np.ndarray
    mask: np.ndarray

    @property
    def num_tokens(self) -> int:
        """Number of real (predicted) positions."""
        return int(self.mask.sum())


class EncodedDocs:
    """Documents encoded once as [BOS] + ids + [BOS], padded to block_size + 1, for fast batching.

    ids (N, block_size + 1) token ids, zero after each document; lengths (N,) the number of
    positions each document predicts, min(block_size, len - 1), as every rung cuts a long name.
    """

    def __init__(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        self.ids, self.lengths = ids, lengths
        self.block_size = ids.shape[1] - 1
        self._positions = np.arange(self.block_size)

    @classmethod
    def encode(cls, docs: Sequence[str], tokenizer: CharTokenizer, block_size: int
               ) -> "EncodedDocs":
        """Encode and pad every document (raises TokenError for an unknown character)."""
        if not docs:
            raise ValueError("no documents to encode")
        ids = np.zeros((len(docs), block_size + 1), dtype=np.intp)
        lengths = np.zeros(len(docs), dtype=np.intp)
        for i, doc in enumerate(docs):
            tokens = tokenizer.encode_doc(doc)[: block_size + 1]
            ids[i, : len(tokens)] = tokens
            lengths[i] = len(tokens) - 1
        return cls(ids, lengths)

    def head(self, n: int) -> "EncodedDocs":
        """The first n documents (a view), e.g. for cheaper periodic validation."""
        return EncodedDocs(self.ids[:n], self.lengths[:n])

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, index: np.ndarray) -> Batch:
        """The documents at `index` as one Batch, padded to the longest of them."""
        T = int(self.lengths[index].max())
        ids = self.ids[index]
        mask = (self._positions[:T] < self.lengths[index, None]).astype(np.float64)
        return Batch(ids[:, :T].copy(), ids[:, 1 : T + 1] * (mask > 0), mask)

    def batches(self, batch_size: int):
        """Every document once, in order, batch_size at a time (for validation)."""
        for start in range(0, len(self), batch_size):
            yield self.batch(np.arange(start, min(start + batch_size, len(self))))


# ----------------------------------------------------------------------------------------------
# backends

class Backend(Protocol):
    """What the trainer needs from a model implementation (see the module docstring)."""

    config: GPTConfig
    params: FlatParams
    grads: FlatParams

    def forward_backward(self, batch: Batch) -> float: ...

    def loss(self, batch: Batch) -> float: ...


class NumpyBackend:
    """Chapter 4's kernels (`gpt_forward` / `gpt_backward`) on a padded, masked batch."""

    def __init__(self, config: GPTConfig, params: Params, dtype=np.float64) -> None:
        self.config = config
        self.params = FlatParams.from_params(config, params, dtype)
        self.grads = self.params.zeros_like()

    def forward_backward(self, batch: Batch) -> float:
        check_batch(self.config, batch.tokens, batch.targets, batch.mask)
        loss, cache = gpt_forward(self.params, batch.tokens, batch.targets, batch.mask)
        gpt_backward(self.params, self.grads, cache)
        return loss

    def loss(self, batch: Batch) -> float:
        check_batch(self.config, batch.tokens, batch.targets, batch.mask)
        return gpt_forward(self.params, batch.tokens, batch.targets, batch.mask)[0]


# ----------------------------------------------------------------------------------------------
# schedule, validation, training

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


def evaluate(backend: Backend, docs: EncodedDocs, batch_size: int = 256) -> float:
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
    backend: Backend,
    train_docs: EncodedDocs,
    val_docs: EncodedDocs | None,
    settings: TrainSettings,
    optimizer: FlatAdam | None = None,
    progress: bool = True,
) -> BatchedHistory:
    """Train `backend` with mini-batches; Ctrl-C stops after the current step and keeps history.

    The training clock counts forward, backward, clipping and Adam; validation runs off the clock.
    BLAS runs on `settings.blas_threads` threads (default 1): our matrices are small, so threads
    buy little, and on a busy machine their spin-waiting can make steps several times slower.
    `optimizer` defaults to FlatAdam; any object with `step(grads, lr)` will do.
    """
    s = settings
    if s.order not in ("random", "sequential"):
        raise ValueError(f"order must be 'random' or 'sequential', got {s.order!r}")
    if optimizer is None:
        optimizer = FlatAdam(backend.params, s.weight_decay)
    rng = np.random.default_rng(s.seed)
    val_subset = val_docs
    if val_docs is not None and s.eval_docs is not None and s.eval_docs < len(val_docs):
        val_subset = val_docs.head(s.eval_docs)
    history, clock = BatchedHistory(), 0.0
    bar = Progress(s.num_steps, desc=f"train B={s.batch_size}", enabled=progress)

    def validate(step: int) -> None:
        history.val_steps.append(step)
        history.val_losses.append(evaluate(backend, val_subset))
        history.val_seconds.append(clock)

    limits = threadpool_limits(s.blas_threads, user_api="blas")
    try:
        for step in range(s.num_steps):
            if s.order == "random":
                index = rng.integers(0, len(train_docs), s.batch_size)
            else:
                index = np.arange(step * s.batch_size, (step + 1) * s.batch_size) % len(train_docs)
            batch = train_docs.batch(index)
            lr = lr_at(step, s.num_steps, s.base_lr, s.warmup, s.min_lr, s.decay)
            t0 = time.perf_counter()
            backend.grads.data.fill(0.0)
            loss = backend.forward_backward(batch)
            norm = grad_norm(backend.grads)
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
            bar.update(postfix=f"loss {loss:.4f}" + (
                f" val {history.val_losses[-1]:.4f}" if history.val_losses else ""))
            if out_of_time:
                break
    except KeyboardInterrupt:
        history.interrupted = True
        print(f"interrupted after {len(history.losses)} of {s.num_steps} steps; history kept")
    finally:
        limits.restore_original_limits()
        bar.close()
    return history



@dataclass
class Throughput:
    """Training speed at one batch size: median ms per step and real tokens per second."""

    batch_size: int
    median_ms: float
    tokens_per_second: float


def measure_throughput(backend: Backend, docs: EncodedDocs, batch_size: int, steps: int = 20,
                       warmup: int = 3) -> Throughput:
    """Train `warmup + steps` random batches; speed of the last `steps` by the trainer's clock."""
    settings = TrainSettings(num_steps=warmup + steps, batch_size=batch_size, base_lr=1e-3)
    history = train_batched(backend, docs, None, settings, progress=False)
    step_seconds = np.diff(history.seconds)[warmup - 1 :]
    tokens = sum(history.tokens[warmup:])
    return Throughput(batch_size, float(np.median(step_seconds)) * 1e3,
                      tokens / float(step_seconds.sum()))


def keep_freed_memory(megabytes: int = 256) -> bool:
    """Ask glibc's malloc to keep freed blocks up to `megabytes` instead of returning them.

    Large temporaries (over 128 KiB) are by default mapped fresh from the OS and unmapped when
    freed, so every step page-faults them in again; with bigger batches that costs as much as the
    arithmetic. This raises the mmap and trim thresholds for the whole process (Linux with glibc
    only; returns False elsewhere). Preallocated buffers, as in chapter 5, avoid the issue.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    size = megabytes << 20
    return bool(libc.mallopt(m_mmap_threshold, min(size, 32 << 20))
                and libc.mallopt(m_trim_threshold, size))


def fresh_process_throughput(config_name: str, batch_size: int, steps: int = 15,
                             keep_freed: bool = False) -> Throughput:
    """measure_throughput on the training split of names, in a new Python process.

    malloc's behaviour depends on what the process allocated before (glibc adapts its
    thresholds), so comparing `keep_freed=True` and `False` needs fresh processes.
    """
    code = (
        "import json, sys, dataclasses\n"
        "from microgpt_lib.batched import *\n"
        "from microgpt_lib.bench import names_corpus\n"
        "from microgpt_lib.config import GPTConfig\n"
        "from microgpt_lib.params import init_params\n"
        "name, B, steps, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == '1'\n"
        "if keep: keep_freed_memory()\n"
        "docs, tok = names_corpus()\n"
        "config = GPTConfig.preset(name, vocab_size=tok.vocab_size)\n"
        "encoded = EncodedDocs.encode(split_docs(docs)[0], tok, config.block_size)\n"
        "t = measure_throughput(NumpyBackend(config, init_params(config)), encoded, B, steps)\n"
        "print(json.dumps(dataclasses.asdict(t)))\n"
    )
    args = [config_name, str(batch_size), str(steps), "1" if keep_freed else "0"]
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True,
                         text=True)
    return Throughput(**json.loads(out.stdout.strip().splitlines()[-1]))
