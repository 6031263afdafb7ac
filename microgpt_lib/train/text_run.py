"""Training on a text of one's own: resumable runs with gradient accumulation and checkpoints.

The trainer of chapter 8. It drives any batched backend (chapter 4's NumPy kernels or chapter
5's fastops) on a scenario's data, documents or a continuous text, and everything it needs to
continue lives in a checkpoint: weights, Adam's moments and step count, the step reached, the
random generator that picks the batches (the data position), and the history. Because every
step is a function of that state alone (the learning rate is a function of the step), a run
stopped at step k and resumed ends with the same weights, bit for bit, as a run never stopped.

Stopping: Ctrl-C (SIGINT) or SIGTERM asks the run to stop after the current step, where the
state is whole, so it can be saved; a second Ctrl-C stops at once. A run killed outright
resumes from its last saved checkpoint (saved at every validation).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from microgpt_lib.batches import PaddedBatch
from microgpt_lib.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from microgpt_lib.checkpoint import tokenizer_to_json
from microgpt_lib.config import GPTConfig
from microgpt_lib.flat_params import FlatParams
from microgpt_lib.optim import FlatAdam
from microgpt_lib.params import Params, init_params
from microgpt_lib.rungs.base import BatchedBackend
from microgpt_lib.scenarios import ScenarioData
from microgpt_lib.train.text_data import DocumentBatches, WindowBatches, batches_of
from microgpt_lib.train.batched import grad_norm
from microgpt_lib.train.schedules import lr_at
from microgpt_lib.train.stop_requests import stop_requests

BACKENDS = ("numpy", "cython")
DTYPES = ("float32", "float64")


@dataclass
class RunSettings:
    """A scenario's [train] table: the recipe of one run (defaults: a short run)."""

    steps: int = 1000
    batch_size: int = 32          # rows per optimiser step (split across grad_accum micro-batches)
    grad_accum: int = 1           # micro-batches per step; the gradient is that of all the rows
    learning_rate: float = 0.01
    min_lr: float = 0.0
    warmup: int = 0
    decay: str = "cosine"
    grad_clip: float | None = None  # clip the global gradient norm to this value
    weight_decay: float = 0.0     # decoupled (AdamW)
    eval_every: int = 100         # validation (and a checkpoint) every this many steps, and at the end
    seed: int = 0                 # the batches' random generator
    init_seed: int = 0            # the weights' initialisation

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of grad_accum "
                             f"{self.grad_accum}: each micro-batch needs the same number of rows")
        if self.decay not in ("cosine", "linear"):
            raise ValueError(f"decay must be 'cosine' or 'linear', got {self.decay!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate!r}")

    @classmethod
    def from_table(cls, table: dict[str, Any], **overrides: Any) -> "RunSettings":
        """Settings from a scenario's [train] table, then `overrides` (None values ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = set(table) - known
        if unknown:
            raise ValueError(f"unknown [train] settings {sorted(unknown)}; known: {sorted(known)}")
        values = {**table, **{k: v for k, v in overrides.items() if v is not None}}
        try:
            return cls(**values)
        except TypeError as err:
            raise ValueError(f"bad [train] settings: {err}") from None


@dataclass
class RunHistory:
    """Per step: loss, gradient norm (before clipping), learning rate, tokens, seconds; and
    per validation: the step, the loss per token and bits per byte of the held-out text."""

    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    val_bits_per_byte: list[float] = field(default_factory=list)


def make_backend(name: str, config: GPTConfig, params: Params, dtype: str) -> BatchedBackend:
    """A batched backend by name: "numpy" (chapter 4's kernels) or "cython" (fastops, 1 thread)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if name == "numpy":
        from microgpt_lib.rungs.rung4_numpy_kernels.batched_backend import NumpyBackend
        return NumpyBackend(config, params, np.dtype(dtype))
    if name == "cython":
        from microgpt_lib.rungs.rung5_cython.batched_backend import CythonBackend
        return CythonBackend(config, params, np.dtype(dtype))
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


# ---------------------------------------------------------------------------------------------
# the trainer

class TextTrainer:
    """One run: a backend, its batches, Adam, the batch generator and the history, resumable."""

    def __init__(self, backend: BatchedBackend, batches: DocumentBatches | WindowBatches,
                 settings: RunSettings, token_bytes: np.ndarray | None = None) -> None:
        self.backend, self.batches, self.settings = backend, batches, settings
        self.token_bytes = token_bytes
        self.optimizer = FlatAdam(backend.params, settings.weight_decay)
        self.rng = np.random.default_rng(settings.seed)
        self.step = 0
        self.batches_drawn = 0
        self.history = RunHistory()
        self.best_val = math.inf
        self._accum = backend.params.zeros_like() if settings.grad_accum > 1 else None

    def train_step(self) -> float:
        """One optimiser step on batch_size rows (in grad_accum micro-batches); the loss."""
        s, backend = self.settings, self.backend
        parts = self.batches.draw(self.rng, s.batch_size, s.grad_accum)
        self.batches_drawn += 1
        lr = lr_at(self.step, s.steps, s.learning_rate, s.warmup, s.min_lr, s.decay)
        t0 = time.perf_counter()
        loss, tokens = self.accumulate_gradient(parts)
        norm = grad_norm(backend.grads)
        if s.grad_clip is not None and norm > s.grad_clip:
            backend.grads.data *= s.grad_clip / norm
        self.optimizer.step(backend.grads, lr)
        elapsed = time.perf_counter() - t0
        h = self.history
        h.losses.append(loss)
        h.grad_norms.append(norm)
        h.lrs.append(lr)
        h.tokens.append(tokens)
        h.seconds.append((h.seconds[-1] if h.seconds else 0.0) + elapsed)
        self.step += 1
        return loss

    def accumulate_gradient(self, parts: list[PaddedBatch]) -> tuple[float, int]:
        """backend.grads <- the gradient of the mean loss over all the parts' tokens.

        Each micro-batch's gradient is that of its own mean, so it is weighted by its share of
        the tokens: the result is the gradient of the one large batch (to float rounding).
        """
        grads = self.backend.grads
        counts = [p.num_tokens for p in parts]
        total = sum(counts)
        if len(parts) == 1:
            grads.data.fill(0.0)
            return self.backend.forward_backward(parts[0]), total
        accum, loss = self._accum, 0.0
        accum.data.fill(0.0)
        for part, count in zip(parts, counts):
            grads.data.fill(0.0)
            loss += self.backend.forward_backward(part) * (count / total)
            grads.data *= count / total
            accum.data += grads.data
        grads.data[...] = accum.data
        return loss, total

    def validate(self) -> float:
        """Validation loss per token, recorded with bits per byte; updates best_val."""
        nats, count, nbytes = 0.0, 0, 0
        for batch in self.batches.validation():
            n = batch.num_tokens
            nats += self.backend.loss(batch) * n
            count += n
            if self.token_bytes is not None:
                nbytes += int(self.token_bytes[batch.targets[batch.mask > 0]].sum())
        loss = nats / count
        h = self.history
        h.val_steps.append(self.step)
        h.val_losses.append(loss)
        h.val_bits_per_byte.append(nats / math.log(2) / nbytes if nbytes else math.nan)
        self.best_val = min(self.best_val, loss)
        return loss

    def run(self, until: int | None = None, progress: bool = True,
            on_validate: Callable[["TextTrainer", bool], None] | None = None,
            max_seconds: float | None = None) -> str:
        """Train to step `until` (default: the end); validate before the first step, every
        eval_every steps and at the end, calling on_validate(trainer, improved) after each
        but the first (to save checkpoints). Returns "done",
        "paused" (reached `until` or max_seconds) or "interrupted" (Ctrl-C or SIGTERM)."""
        s = self.settings
        until = s.steps if until is None else min(until, s.steps)
        bar = tqdm(total=s.steps, initial=self.step, desc="train", unit="step",
                   disable=not progress, dynamic_ncols=True)
        started, outcome = time.perf_counter(), "paused"
        limits = threadpool_limits(1, user_api="blas")
        try:
            if self.step == 0 and not self.history.val_steps:
                self.validate()  # where the untrained model starts
            with stop_requests() as stop:
                while self.step < until:
                    loss = self.train_step()
                    last = self.step == s.steps
                    if self.step % s.eval_every == 0 or last:
                        before = self.best_val
                        self.validate()
                        if on_validate is not None:
                            on_validate(self, self.best_val < before)
                    h = self.history
                    rate = sum(h.tokens) / max(h.seconds[-1], 1e-9)
                    val = f"{h.val_losses[-1]:.3f}" if h.val_losses else "-"
                    bar.set_postfix_str(f"loss {loss:.3f} val {val} {rate:,.0f} tok/s",
                                        refresh=False)
                    bar.update()
                    if stop.requested:
                        outcome = "interrupted"
                        break
                    if max_seconds is not None and time.perf_counter() - started > max_seconds:
                        break
                else:
                    outcome = "done" if self.step == s.steps else "paused"
        finally:
            limits.restore_original_limits()
            bar.close()
        return outcome

    # ----- state -----

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The arrays (Adam's moments) and the JSON state that, with the weights, resume the run."""
        arrays = {"adam.m": self.optimizer.m, "adam.v": self.optimizer.v}
        state = {"step": self.step, "adam_t": self.optimizer.t,
                 "batches_drawn": self.batches_drawn,
                 "rng": self.rng.bit_generator.state, "best_val": _finite(self.best_val),
                 "settings": asdict(self.settings), "history": asdict(self.history)}
        return arrays, state

    def restore(self, weights: FlatParams, arrays: dict[str, np.ndarray],
                state: dict[str, Any]) -> None:
        """Put the trainer back where `state()` was taken (weights copied into the backend)."""
        if weights.data.dtype != self.backend.params.data.dtype:
            raise CheckpointError(f"the checkpoint holds {weights.data.dtype} weights; resume "
                                  f"it in {weights.data.dtype}")
        try:
            self.backend.params.data[...] = weights.data
            self.optimizer.m[...] = arrays["adam.m"]
            self.optimizer.v[...] = arrays["adam.v"]
            self.optimizer.t = state["adam_t"]
            self.step, self.batches_drawn = state["step"], state["batches_drawn"]
            self.rng.bit_generator.state = state["rng"]
            self.best_val = math.inf if state["best_val"] is None else state["best_val"]
            self.history = RunHistory(**state["history"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"the checkpoint lacks training state ({err!r}); it can be "
                                  "sampled from but not resumed") from None


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


# ---------------------------------------------------------------------------------------------
# a run of a scenario, with its folder of checkpoints

class TextRun:
    """A scenario's run: its data, backend and trainer, and the folder of its checkpoints,
    `last.safetensors` (every validation and on stop) and `best.safetensors` (lowest
    validation loss). A new run never replaces an existing folder's checkpoints unless asked."""

    def __init__(self, data: ScenarioData, folder: str | Path, settings: RunSettings,
                 backend: str = "cython", dtype: str = "float32") -> None:
        self.data, self.folder, self.settings = data, Path(folder), settings
        self.backend_name, self.dtype = backend, dtype
        params = init_params(data.config, seed=settings.init_seed)
        self.backend = make_backend(backend, data.config, params, dtype)
        self.trainer = TextTrainer(self.backend, batches_of(data), settings, data.token_bytes)

    @property
    def last_path(self) -> Path:
        return self.folder / "last.safetensors"

    @property
    def best_path(self) -> Path:
        return self.folder / "best.safetensors"

    @classmethod
    def start(cls, data: ScenarioData, folder: str | Path, settings: RunSettings,
              backend: str = "cython", dtype: str = "float32", overwrite: bool = False
              ) -> "TextRun":
        """A new run; FileExistsError if the folder already holds a checkpoint and not overwrite."""
        run = cls(data, folder, settings, backend, dtype)
        if not overwrite and (run.last_path.exists() or run.best_path.exists()):
            raise FileExistsError(f"{run.folder} already holds a run's checkpoints; resume it, "
                                  "or allow overwriting it")
        for path in (run.last_path, run.best_path):
            path.unlink(missing_ok=True)
        return run

    @classmethod
    def resume(cls, data: ScenarioData, folder: str | Path, backend: str | None = None,
               **overrides: Any) -> "TextRun":
        """The run saved in `folder`'s last checkpoint, ready to continue exactly.

        Its settings and dtype are the saved ones; an override that changes them is a
        CheckpointError, since the run would no longer be the same run."""
        path = Path(folder) / "last.safetensors"
        ckpt = load_checkpoint(path, data.config, data.tokenizer)
        saved = ckpt.state.get("settings")
        if saved is None:
            raise CheckpointError(f"{path} holds no training state: it cannot be resumed")
        for name, value in overrides.items():
            if value is not None and saved.get(name, value) != value:
                raise CheckpointError(f"{path} was trained with {name} = {saved.get(name)}, "
                                      f"not {value}; resume it unchanged")
        run = cls(data, folder, RunSettings(**saved), backend or ckpt.state["backend"],
                  str(ckpt.dtype))
        run.trainer.restore(ckpt.weights, ckpt.arrays, ckpt.state)
        return run

    def checkpoint(self) -> Checkpoint:
        """The run's state now, as a checkpoint."""
        arrays, state = self.trainer.state()
        state.update(backend=self.backend_name, scenario=self.data.scenario.name)
        weights = FlatParams(self.data.config, self.backend.params.data.dtype)
        weights.data[...] = self.backend.params.data
        return Checkpoint(self.data.config, weights, tokenizer_to_json(self.data.tokenizer),
                          arrays, state)

    def save(self, best: bool = False) -> None:
        """Write last.safetensors (and best.safetensors), each atomically."""
        ckpt = self.checkpoint()
        save_checkpoint(self.last_path, ckpt, overwrite=True)
        if best:
            save_checkpoint(self.best_path, ckpt, overwrite=True)

    def train(self, until: int | None = None, progress: bool = True,
              max_seconds: float | None = None) -> str:
        """Train (see TextTrainer.run), saving at every validation and when stopped."""
        outcome = self.trainer.run(until, progress, lambda _, improved: self.save(improved),
                                   max_seconds)
        if outcome != "done":
            self.save()
        return outcome
