"""Chapter 7's experiment: the same GPT on tiny Shakespeare with different tokenizers.

Every model sees the same split of the text (first 90% of the characters train, last 10% are
held out), each tokenizer is trained on the training part only, and every model gets the same
training budget in floating-point operations, with a context of about the same number of bytes.
They are compared on bits per byte of the whole held-out text: the total loss in nats of every
held-out token, over ln 2 times the number of UTF-8 bytes those tokens hold. Loss per token is
not comparable across tokenizers: a token of 4 bytes is harder to guess than a token of 1.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from microgpt_lib.config import GPTConfig
from microgpt_lib.data import load_text
from microgpt_lib.rungs.rung5_cython.model import FastopsModel
from microgpt_lib.tokenizers import GPT2_SPLIT, CharacterTokenizer, Tokenizer, WordTokenizer
from microgpt_lib.tokenizers import train_bpe
from microgpt_lib.train.shakespeare import IdsRun, Recipe, sample_tokens, train_gpt_on_ids


@dataclass(frozen=True)
class TextSplit:
    """A text cut in two by characters: the first part trains, the second is held out."""

    train: str
    heldout: str


def text_split(name: str = "tinyshakespeare", train_fraction: float = 0.9) -> TextSplit:
    """The dataset cut as nanoGPT cuts tiny Shakespeare: first 90% of the characters train."""
    text = load_text(name)
    cut = int(len(text) * train_fraction)
    return TextSplit(text[:cut], text[cut:])


def make_tokenizer(spec: str, text: str) -> Tokenizer:
    """The tokenizer `spec` trained on `text`: "chars", "words-N" or "bpe-N" (N ids in all;
    BPE splits with GPT-2's pattern first)."""
    kind, _, size = spec.partition("-")
    if kind == "chars" and not size:
        return CharacterTokenizer.train(text)
    if kind == "words" and size.isdigit():
        return WordTokenizer.train(text, int(size))
    if kind == "bpe" and size.isdigit():
        return train_bpe(text, int(size), GPT2_SPLIT)
    raise ValueError(f"tokenizer {spec!r}: use 'chars', 'words-N' or 'bpe-N'")


@dataclass(frozen=True)
class Budget:
    """The shared settings: model shape, context in bytes, batch, and training FLOPs per model."""

    n_embd: int = 64
    n_head: int = 4
    n_layer: int = 2
    context_bytes: int = 128
    batch_size: int = 12
    flops: float = 3e11
    learning_rate: float = 2e-3
    min_lr: float = 2e-4
    eval_points: int = 10
    eval_iters: int = 4


def flops_per_token(config: GPTConfig) -> float:
    """Training FLOPs per token (forward + backward = 3 x forward): 6 per weight of the matrices
    and the output layer (the embedding lookup is free), plus attention's scores and weighted
    sums over on average half the context."""
    d, n_layer = config.n_embd, config.n_layer
    matrices = n_layer * 12 * d * d + config.vocab_size * d
    return 6 * matrices + 6 * n_layer * config.block_size * d


def parameter_counts(config: GPTConfig) -> tuple[int, int]:
    """(all parameters, those of the token embedding and the output layer: 2 x vocab x n_embd)."""
    d = config.n_embd
    embedding = 2 * config.vocab_size * d
    return embedding + config.block_size * d + config.n_layer * 12 * d * d, embedding


def heldout_nats(model: FastopsModel, ids: np.ndarray, windows_per_call: int = 32) -> float:
    """Total loss in nats of ids[1:], each predicted from the tokens before it in its window
    (consecutive windows of block_size tokens; the first token of each sees no context)."""
    t = model.config.block_size
    n_pred = len(ids) - 1
    starts = np.arange(0, n_pred, t)
    total = 0.0
    for chunk in range(0, len(starts), windows_per_call):
        pieces = [(s, min(s + t, n_pred)) for s in starts[chunk:chunk + windows_per_call]]
        tokens = np.concatenate([ids[a:b] for a, b in pieces]).astype(np.int64)
        targets = np.concatenate([ids[a + 1:b + 1] for a, b in pieces]).astype(np.int64)
        cu = np.concatenate([[0], np.cumsum([b - a for a, b in pieces])]).astype(np.int64)
        total += model.loss(tokens, targets, cu, backward=False) * len(tokens)
    return total


def sample_text(model: FastopsModel, tok: Tokenizer, n_chars: int, prompt: str = "\n",
                temperature: float = 0.8, seed: int = 0) -> str:
    """n_chars characters generated after `prompt` (tokens drawn at `temperature`)."""
    ids = tok.encode(prompt)
    start = len(ids)
    tokens = sample_tokens(model, ids, temperature, np.random.default_rng(seed))
    text = ""
    while len(text) < n_chars:
        next(tokens)
        text = tok.decode(ids[start:], errors="replace")
    return text[:n_chars]


@dataclass
class TokenizerRun:
    """One row of the experiment: the tokenizer, the model's sizes, speed, and its score."""

    spec: str
    vocab_size: int
    bytes_per_token: float
    block_size: int
    params: int
    embedding_params: int
    iters: int
    tokens_seen: int
    train_seconds: float
    heldout_tokens: int
    heldout_bytes: int
    heldout_nats: float
    tokenizer_seconds: float
    sample: str = ""
    run: IdsRun = field(default_factory=IdsRun, repr=False)

    @property
    def bits_per_byte(self) -> float:
        return self.heldout_nats / math.log(2) / self.heldout_bytes

    @property
    def loss_per_token(self) -> float:
        return self.heldout_nats / self.heldout_tokens

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_seen / self.train_seconds

    @property
    def bytes_per_second(self) -> float:
        return self.tokens_per_second * self.bytes_per_token

    @property
    def embedding_share(self) -> float:
        return self.embedding_params / self.params


def run_tokenizer(spec: str, split: TextSplit, budget: Budget = Budget(),
                  heldout_chars: int | None = None, sample_chars: int = 300,
                  num_threads: int = 1, seed: int = 1337, progress: bool = True) -> TokenizerRun:
    """Train tokenizer `spec` on the training text, then the GPT on its ids within `budget`;
    score it on the held-out text (its first heldout_chars characters, or all of it)."""
    start = time.perf_counter()
    tok = make_tokenizer(spec, split.train)
    train_ids = np.asarray(tok.encode(split.train), dtype=np.int64)
    heldout = split.heldout if heldout_chars is None else split.heldout[:heldout_chars]
    heldout_ids = np.asarray(tok.encode(heldout), dtype=np.int64)
    tokenizer_seconds = time.perf_counter() - start
    bytes_per_token = len(split.train.encode("utf-8")) / len(train_ids)
    block = max(8, round(budget.context_bytes / bytes_per_token))
    config = GPTConfig(budget.n_embd, budget.n_head, budget.n_layer, block, tok.vocab_size)
    iters = max(1, int(budget.flops / (flops_per_token(config) * budget.batch_size * block)))
    recipe = Recipe(n_layer=budget.n_layer, n_head=budget.n_head, n_embd=budget.n_embd,
                    block_size=block, batch_size=budget.batch_size, max_iters=iters,
                    learning_rate=budget.learning_rate, min_lr=budget.min_lr,
                    warmup_iters=max(1, iters // 20), lr_decay_iters=max(2, iters),
                    eval_iters=budget.eval_iters)
    with threadpool_limits(1):
        run = train_gpt_on_ids(train_ids, heldout_ids, tok.vocab_size, recipe,
                               num_threads=num_threads, seed=seed, progress=progress,
                               eval_every=max(1, iters // budget.eval_points), desc=spec)
        nats = heldout_nats(run.model, heldout_ids)
        sample = sample_text(run.model, tok, sample_chars, seed=seed) if sample_chars else ""
    params, embedding = parameter_counts(config)
    return TokenizerRun(
        spec=spec, vocab_size=tok.vocab_size, bytes_per_token=bytes_per_token, block_size=block,
        params=params, embedding_params=embedding, iters=iters,
        tokens_seen=iters * budget.batch_size * block, train_seconds=run.train_seconds,
        heldout_tokens=len(heldout_ids) - 1,
        heldout_bytes=len(tok.decode_bytes(heldout_ids[1:].tolist())), heldout_nats=nats,
        tokenizer_seconds=tokenizer_seconds, sample=sample, run=run)
