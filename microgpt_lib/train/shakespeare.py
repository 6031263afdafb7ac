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
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from microgpt_lib.batches import CharText, PaddedBatch, char_text, pack, random_windows
from microgpt_lib.config import GPTConfig
from microgpt_lib.params import INIT_STD, init_params
from microgpt_lib.rungs.rung5_cython.model import FastopsModel
from microgpt_lib.train.schedules import nanogpt_lr


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


def estimate_loss(model: FastopsModel, data: np.ndarray, r: Recipe,
                  rng: np.random.Generator) -> float:
    """Mean loss over eval_iters random batches (forward only), as nanoGPT's estimate_loss."""
    windows = (random_windows(data, r.batch_size, r.block_size, rng) for _ in range(r.eval_iters))
    losses = [model.loss(*pack(PaddedBatch.from_windows(x, y)), backward=False)
              for x, y in windows]
    return float(np.mean(losses))


@dataclass
class CharRun:
    """What the capstone produced: losses per iteration, timings, final train/val estimates."""

    losses: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    train_loss: float = float("nan")
    val_loss: float = float("nan")
    iters: int = 0
    model: FastopsModel | None = None
    text: CharText | None = None


def train_char_gpt(r: Recipe = Recipe(), iters: int | None = None, num_threads: int = 2,
                   dtype=np.float32, seed: int = 1337, progress: bool = True) -> CharRun:
    """Train our GPT on tiny Shakespeare with recipe r (optionally only `iters` iterations)."""
    text = char_text("tinyshakespeare")
    config = GPTConfig(r.n_embd, r.n_head, r.n_layer, r.block_size, text.vocab_size)
    model = FastopsModel(config, init_params(config, seed=seed), dtype, num_threads)
    model.params.data *= r.init_std / INIT_STD  # the specification draws N(0, 0.08): rescale
    for name, view in model.params.views.items():
        if name.endswith(("attn_wo", "mlp_fc2")):
            view *= 1 / math.sqrt(2 * r.n_layer)
    rng = np.random.default_rng(seed)
    iters = r.max_iters if iters is None else iters
    run = CharRun(iters=iters, model=model, text=text)
    bar = tqdm(total=iters, desc="shakespeare", disable=not progress)
    start = time.perf_counter()
    for it in range(iters):
        x, y = random_windows(text.train, r.batch_size, r.block_size, rng)
        batch = pack(PaddedBatch.from_windows(x, y))
        lr = nanogpt_lr(it, r.learning_rate, r.min_lr, r.warmup_iters, r.lr_decay_iters)
        loss = model.train_step(*batch, lr, (r.beta1, r.beta2), 1e-8, r.weight_decay,
                                r.grad_clip)
        run.losses.append(loss)
        bar.set_postfix_str(f"loss {loss:.3f}", refresh=False)
        bar.update()
    run.train_seconds = time.perf_counter() - start
    bar.close()
    eval_rng = np.random.default_rng(seed + 1)
    run.train_loss = estimate_loss(model, text.train, r, eval_rng)
    run.val_loss = estimate_loss(model, text.val, r, eval_rng)
    return run


def sample_chars(model: FastopsModel, text: CharText, n_chars: int, temperature: float = 0.8,
                 seed: int = 0) -> str:
    """`n_chars` characters sampled from `model` at `temperature`, starting from a newline."""
    rng = np.random.default_rng(seed)
    ids = [text.chars.index("\n")]
    for _ in range(n_chars):
        logits = model.next_token_logits(ids[-model.config.block_size:]) / temperature
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    return text.decode(ids)
