"""Chapter 5's capstone: nanoGPT's CPU recipe for tiny Shakespeare, trained with fastops.

nanoGPT's README trains a baby GPT on a CPU with: characters, 4 layers, 4 heads, n_embd 128,
block 64, batch 12, 2000 iterations, lr 1e-3 with 100 warm-up steps and cosine decay to 1e-4,
AdamW (betas 0.9, 0.99, weight decay 0.1 on the matrices), gradient clipping at 1.0, no dropout,
validation loss estimated on 20 random batches. `train_char_gpt` runs that recipe on our GPT
(the course's architecture: every weight is a matrix, so all of them are decayed, as nanoGPT
decays its matrices).
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from microgpt_lib.batches import CharText, PaddedBatch, char_text, pack, random_windows
from microgpt_lib.config import GPTConfig
from microgpt_lib.cpu_load import available_cores, busy_cores, threads_to_use
from microgpt_lib.numerics import check_count, check_finite, check_lr, check_nonnegative
from microgpt_lib.params import INIT_STD, init_params
from microgpt_lib.rungs.rung5_cython.model import FastopsModel, check_adamw
from microgpt_lib.train.schedules import nanogpt_lr
from microgpt_lib.train.stop_requests import stop_requests


@dataclass(frozen=True)
class Recipe:
    """nanoGPT's shakespeare_char settings with the README's CPU overrides."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    batch_size: int = 12
    max_iters: int = 2000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int = 2000
    beta1: float = 0.9
    beta2: float = 0.99
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_iters: int = 20
    init_std: float = 0.02  # nanoGPT's init; residual projections get init_std / sqrt(2 n_layer)

    def check(self) -> None:
        """ValueError (or TypeError) for a setting no run can use, before anything is loaded."""
        for name in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "eval_iters"):
            check_count(name, getattr(self, name))
        check_count("max_iters", self.max_iters, minimum=0)
        check_count("warmup_iters", self.warmup_iters, minimum=0)
        if not self.warmup_iters < self.lr_decay_iters:
            raise ValueError(f"lr_decay_iters ({self.lr_decay_iters}) must be greater than "
                             f"warmup_iters ({self.warmup_iters})")
        check_lr(self.learning_rate)
        check_lr(self.min_lr)
        check_adamw((self.beta1, self.beta2), 1e-8, self.weight_decay, self.grad_clip)
        if not check_nonnegative("init_std", self.init_std) > 0:
            raise ValueError("init_std must be > 0")


def estimate_loss(model: FastopsModel, data: np.ndarray, r: Recipe,
                  rng: np.random.Generator) -> float:
    """Mean loss over eval_iters random batches (forward only), as nanoGPT's estimate_loss."""
    windows = (random_windows(data, r.batch_size, r.block_size, rng) for _ in range(r.eval_iters))
    losses = [model.loss(*pack(PaddedBatch.from_windows(x, y)), backward=False)
              for x, y in windows]
    return float(np.mean(losses))


@dataclass
class IdsRun:
    """What a run on id arrays produced: per-iteration losses and learning rates, gradient norms
    and train/val estimates every `eval_every` iterations, timings, final train/val estimates."""

    losses: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    eval_at: list[int] = field(default_factory=list)
    eval_train: list[float] = field(default_factory=list)
    eval_val: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    train_loss: float = float("nan")
    val_loss: float = float("nan")
    iters: int = 0
    tokens_per_iter: int = 0
    num_threads: int = 0
    interrupted: bool = False
    model: FastopsModel | None = None


@dataclass
class CharRun(IdsRun):
    """The capstone's run: an IdsRun on tiny Shakespeare's characters."""

    text: CharText | None = None


def nanogpt_model(config: GPTConfig, r: Recipe, seed: int = 1337, dtype=np.float32,
                  num_threads: int = 2) -> FastopsModel:
    """A fastops GPT initialised as nanoGPT does: N(0, init_std), residual projections scaled
    by 1 / sqrt(2 n_layer)."""
    model = FastopsModel(config, init_params(config, seed=seed), dtype, num_threads)
    model.params.data *= r.init_std / INIT_STD  # the specification draws N(0, 0.08): rescale
    for name, view in model.params.views.items():
        if name.endswith(("attn_wo", "mlp_fc2")):
            view *= 1 / math.sqrt(2 * r.n_layer)
    return model


def default_threads(wanted: int = 2) -> int:
    """`wanted` threads where that many cores are free now, fewer (with a note) where other
    programs keep cores busy: there two threads wait on each other and run slower than one."""
    cores, busy = available_cores(), busy_cores()
    threads = threads_to_use(wanted, busy, cores)
    if threads < min(wanted, cores):
        print(f"other programs keep {busy:.1f} of {cores} cores busy: training on {threads} "
              f"thread{'s' if threads > 1 else ''} (pass num_threads={wanted} to insist)")
    return threads


def train_gpt_on_ids(train: np.ndarray, val: np.ndarray, vocab_size: int, r: Recipe = Recipe(),
                     iters: int | None = None, num_threads: int | None = None, dtype=np.float32,
                     seed: int = 1337, progress: bool = True, eval_every: int = 0,
                     desc: str = "train", run: IdsRun | None = None) -> IdsRun:
    """Train our GPT with recipe r on random windows of the id array `train` (any vocabulary);
    every `eval_every` iterations (if > 0) estimate train/val loss and note the gradient norm.

    The recipe is checked first; a non-finite loss raises TrainingDiverged. `num_threads=None`
    takes two threads where two cores are free (`default_threads`). Ctrl-C stops after the
    current iteration: the run keeps what it trained and is marked `interrupted`.
    """
    r.check()
    if iters is not None:
        check_count("iters", iters, minimum=0)
    config = GPTConfig(r.n_embd, r.n_head, r.n_layer, r.block_size, vocab_size)
    if num_threads is None:
        num_threads = default_threads()
    model = nanogpt_model(config, r, seed, dtype, num_threads)
    rng = np.random.default_rng(seed)
    probe_rng = np.random.default_rng(seed + 2)  # its own stream: evaluating changes no batch
    iters = r.max_iters if iters is None else iters
    run = IdsRun() if run is None else run
    run.model, run.tokens_per_iter = model, r.batch_size * r.block_size
    run.num_threads = num_threads
    bar = tqdm(total=iters, desc=desc, disable=not progress)
    start = time.perf_counter()
    try:
        with stop_requests() as stop:
            for it in range(iters):
                x, y = random_windows(train, r.batch_size, r.block_size, rng)
                batch = pack(PaddedBatch.from_windows(x, y))
                lr = nanogpt_lr(it, r.learning_rate, r.min_lr, r.warmup_iters, r.lr_decay_iters)
                loss = model.train_step(*batch, lr, (r.beta1, r.beta2), 1e-8, r.weight_decay,
                                        r.grad_clip)
                run.losses.append(check_finite("loss", loss, it + 1, lr))
                run.learning_rates.append(lr)
                if eval_every and (it % eval_every == 0 or it == iters - 1):
                    norm = np.linalg.norm(model.grads.data.astype(np.float64))
                    run.grad_norms.append(float(norm))
                    run.eval_at.append(it)
                    run.eval_train.append(estimate_loss(model, train, r, probe_rng))
                    run.eval_val.append(estimate_loss(model, val, r, probe_rng))
                bar.set_postfix_str(f"loss {loss:.3f}", refresh=False)
                bar.update()
                if stop.requested:  # Ctrl-C: the iteration is done, stop here
                    run.interrupted = True
                    break
    except KeyboardInterrupt:  # a second Ctrl-C, or outside the main thread
        run.interrupted = True
    finally:
        run.train_seconds = time.perf_counter() - start
        run.iters = len(run.losses)
        bar.close()
    if run.interrupted:
        print(f"interrupted after {run.iters} of {iters} iterations; the run so far is kept")
    eval_rng = np.random.default_rng(seed + 1)
    run.train_loss = estimate_loss(model, train, r, eval_rng)
    run.val_loss = estimate_loss(model, val, r, eval_rng)
    return run


def train_char_gpt(r: Recipe = Recipe(), iters: int | None = None, num_threads: int | None = None,
                   dtype=np.float32, seed: int = 1337, progress: bool = True) -> CharRun:
    """Train our GPT on tiny Shakespeare with recipe r (optionally only `iters` iterations).

    The recipe is checked before the text is loaded; a non-finite loss raises TrainingDiverged.
    """
    r.check()
    if iters is not None:
        check_count("iters", iters, minimum=0)
    text = char_text("tinyshakespeare")
    run = CharRun(text=text)
    train_gpt_on_ids(text.train, text.val, text.vocab_size, r, iters, num_threads, dtype, seed,
                     progress, desc="shakespeare", run=run)
    return run


def sample_tokens(model: FastopsModel, ids: list[int], temperature: float,
                  rng: np.random.Generator) -> Iterator[int]:
    """Tokens drawn one by one after `ids` (extended in place), each from
    softmax(logits / temperature) given the last block_size tokens: a sliding window."""
    while True:
        logits = model.next_token_logits(ids[-model.config.block_size:]).astype(np.float64)
        p = np.exp((logits - logits.max()) / temperature)
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
        yield ids[-1]


def sample_chars(model: FastopsModel, text: CharText, n_chars: int, temperature: float = 0.8,
                 seed: int = 0) -> str:
    """`n_chars` characters sampled from `model` at `temperature`, starting from a newline."""
    ids = [text.chars.index("\n")]
    tokens = sample_tokens(model, ids, temperature, np.random.default_rng(seed))
    for _ in range(n_chars):
        next(tokens)
    return text.decode(ids)
