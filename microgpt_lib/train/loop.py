"""Training loops shared by every rung: one document per step, Karpathy's schedule, a loss history.

`train` never loses work: on Ctrl-C (KeyboardInterrupt) it stops after the current step and returns
the history so far, with the model holding the weights it reached.
"""
from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from microgpt_lib.config import GPTConfig
from microgpt_lib.data import load_docs
from microgpt_lib.gc_pause import gc_paused
from microgpt_lib.numerics import check_count, check_lr, check_nonnegative
from microgpt_lib.optim import LEARNING_RATE
from microgpt_lib.params import init_params
from microgpt_lib.rungs import get_rung
from microgpt_lib.rungs.base import Rung
from microgpt_lib.tokenizers import CharTokenizer
from microgpt_lib.train.schedules import linear_decay_lr


@dataclass
class TrainingHistory:
    """What a run produced: the loss and wall time of every step, and whether it was cut short."""

    losses: list[float] = field(default_factory=list)
    step_times_ms: list[float] = field(default_factory=list)
    interrupted: bool = False

    def mean_last(self, k: int = 50) -> float:
        """Mean loss over the last k steps (smoother than the final step's loss)."""
        tail = self.losses[-k:]
        return sum(tail) / len(tail)


def train(
    model: Rung,
    docs: Sequence[str],
    tokenizer: CharTokenizer,
    num_steps: int,
    *,
    base_lr: float = LEARNING_RATE,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    max_seconds: float | None = None,
) -> TrainingHistory:
    """Train on docs[s % len(docs)] at step s with lr decaying linearly from base_lr to 0.

    With `max_seconds`, stop early once the steps' own times add up to more than that budget.
    Bad settings raise before the first step; a diverging step raises TrainingDiverged (from
    the rung), naming the step.
    """
    check_count("num_steps", num_steps)
    check_lr(base_lr)
    if max_seconds is not None:
        check_nonnegative("max_seconds", max_seconds)
    if not docs:
        raise ValueError("no documents to train on")
    history = TrainingHistory()
    bar = tqdm(total=num_steps, desc=f"train {model.name}", disable=not progress)
    elapsed_ms = 0.0
    try:
        for step in range(num_steps):
            tokens = tokenizer.encode_doc(docs[step % len(docs)])
            t0 = time.perf_counter()
            loss = model.train_step(tokens, linear_decay_lr(step, num_steps, base_lr))
            history.step_times_ms.append((time.perf_counter() - t0) * 1e3)
            history.losses.append(loss)
            bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
            bar.update()
            if on_step is not None:
                on_step(step, loss)
            elapsed_ms += history.step_times_ms[-1]
            if max_seconds is not None and elapsed_ms > max_seconds * 1e3:
                break
    except KeyboardInterrupt:
        history.interrupted = True
        print(f"interrupted after {len(history.losses)} of {num_steps} steps; history kept")
    finally:
        bar.close()
    return history


@dataclass
class KarpathyRun:
    """A run in Karpathy's exact RNG order: history, the 20 samples, and the tokenizer."""

    history: TrainingHistory
    samples: list[str]
    tokenizer: CharTokenizer
    model: Rung


def karpathy_run(
    num_steps: int = 1000, rung: str = "scalar", n_samples: int = 20, progress: bool = True,
    collect_every: int = 0,
) -> KarpathyRun:
    """Karpathy's microgpt run: seed 42, shuffle names, init, train, sample at temperature 0.5.

    One generator serves the shuffle, the initialisation and the sampling, in that order, as in
    his script (the book's page "The model, exactly"); with the scalar rung and 1000 steps this
    reproduces his printed figures. collect_every=k > 0 pauses automatic garbage collection and
    collects once every k steps instead: the same garbage is freed (each step's graph) and no
    number changes, but most of the collector's work is skipped (chapter 2), so the run is faster.
    """
    check_count("collect_every", collect_every, minimum=0)
    rng = random.Random(42)
    docs = load_docs("names")
    rng.shuffle(docs)
    tokenizer = CharTokenizer.from_docs(docs)
    config = GPTConfig.preset("e16_L1_b16", vocab_size=tokenizer.vocab_size)
    model = get_rung(rung)(config, init_params(config, rng=rng))

    def collect(step: int, loss: float) -> None:
        if (step + 1) % collect_every == 0:
            gc.collect()

    with gc_paused() if collect_every else nullcontext():
        history = train(model, docs, tokenizer, num_steps, progress=progress,
                        on_step=collect if collect_every else None)
    samples = [tokenizer.decode(s) for s in model.generate(n_samples, temperature=0.5, rng=rng)]
    return KarpathyRun(history, samples, tokenizer, model)
