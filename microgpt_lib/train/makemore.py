"""makemore's default transformer size on names, trained with chapter 4's batched trainer.

makemore (github.com/karpathy/makemore) reports "test logprob of ~1.92" on names.txt for its
default transformer: 4 layers, 4 heads, n_embd 64, block 16, batch 32, AdamW at 5e-4, trained
until stopped. Our GPT of that size (preset e64_L4_b16, about 201K parameters) differs in
details: no biases, RMSNorm without gains, ReLU, no final norm, the specification's Adam betas.

CLI for a long run outside the book: `python -m microgpt_lib.train.makemore --steps 30000
--weight-decay 0.1` writes a JSON record named after the settings into `runs/` in the working
folder (never over an existing file unless given `--overwrite`; Ctrl-C saves the steps so far,
marked partial). The chapter reads the records kept in chapters/records/: to add one, pass
`--json chapters/records/<name>.json`.
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np

from microgpt_lib.batches import EncodedDocs
from microgpt_lib.command_line import INTERRUPTED, Parser, count, fail, nonnegative, output_path
from microgpt_lib.config import GPTConfig
from microgpt_lib.data import REPO_ROOT, names_corpus, split_docs
from microgpt_lib.files import atomic_write_json
from microgpt_lib.machine import environment
from microgpt_lib.numerics import TrainingDiverged
from microgpt_lib.params import init_params
from microgpt_lib.rungs.base import BatchedBackend
from microgpt_lib.rungs.rung4_numpy_kernels.batched_backend import NumpyBackend
from microgpt_lib.train.batched import BatchedHistory, TrainSettings, evaluate, train_batched

MAKEMORE_PRESET = "e64_L4_b16"
MAKEMORE_TEST_LOSS = 1.92  # makemore README, default transformer on names.txt
# Records of long runs, kept with the chapter that reads them (tracked, unlike artifacts/).
RECORDS_DIR = REPO_ROOT / "chapters" / "records"
RUNS_DIR = Path("runs")  # where the CLI writes by default: in the working folder, not tracked
PROG = "python -m microgpt_lib.train.makemore"


def makemore_settings(num_steps: int, eval_every: int = 250, max_seconds: float | None = None,
                      base_lr: float = 3e-3, weight_decay: float = 0.1) -> TrainSettings:
    """Batch 32 like makemore; warmup, cosine decay to a tenth, clipping at 1, weight decay 0.1.

    The peak learning rate was picked from 1e-3, 3e-3 and 1e-2 by 1500-step runs (3e-3 best);
    weight decay 0.1 beat none over 10,000 steps (records in chapters/records/).
    """
    return TrainSettings(num_steps=num_steps, batch_size=32, base_lr=base_lr, min_lr=base_lr / 10,
                         warmup=min(100, num_steps // 10), decay="cosine", grad_clip=1.0,
                         weight_decay=weight_decay, eval_every=eval_every, eval_docs=1000, seed=0,
                         max_seconds=max_seconds)


def makemore_run(num_steps: int, dtype=np.float32, progress: bool = True, eval_every: int = 250,
                 max_seconds: float | None = None, base_lr: float = 3e-3, weight_decay: float = 0.1,
                 backend: str = "numpy") -> tuple[BatchedBackend, BatchedHistory, float | None]:
    """Train the makemore-sized GPT; returns the backend, history and loss on the whole val split
    (None if Ctrl-C stopped the run).

    backend: "numpy" (chapter 4) or "cython" (chapter 5's fastops, same trainer and optimiser).
    Periodic validation uses the first 1000 validation names (makemore's test set size); the
    final figure uses all of them.
    """
    docs, tok = names_corpus()
    train_docs, val_docs = split_docs(docs)
    config = GPTConfig.preset(MAKEMORE_PRESET, vocab_size=tok.vocab_size)
    params = init_params(config, seed=0)
    if backend == "numpy":
        model = NumpyBackend(config, params, dtype=dtype)
    elif backend == "cython":
        from microgpt_lib.rungs.rung5_cython.batched_backend import (
            CythonBackend,  # needs the compiled fastops
        )
        model = CythonBackend(config, params, dtype=dtype)
    else:
        raise ValueError(f"backend must be 'numpy' or 'cython', got {backend!r}")
    train_enc = EncodedDocs.encode(train_docs, tok, config.block_size)
    val_enc = EncodedDocs.encode(val_docs, tok, config.block_size)
    settings = makemore_settings(num_steps, eval_every, max_seconds, base_lr, weight_decay)
    history = train_batched(model, train_enc, val_enc, settings, progress=progress)
    if history.interrupted:  # Ctrl-C: return at once, without the final validation
        return model, history, None
    try:
        return model, history, evaluate(model, val_enc)
    except KeyboardInterrupt:  # during the final validation: keep the run, without that figure
        history.interrupted = True
        return model, history, None


def main(argv: list[str] | None = None) -> None:
    """Run makemore_run for --steps and save the curve and the final validation loss as JSON.

    Exit codes: 0 done, 1 the run diverged (nothing saved), 2 a bad flag or output path (checked
    before training), 130 Ctrl-C (what the run has is saved, marked partial).
    """
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=count, default=20000)
    parser.add_argument("--lr", type=nonnegative, default=3e-3)
    parser.add_argument("--weight-decay", type=nonnegative, default=0.1)
    parser.add_argument("--backend", choices=("numpy", "cython"), default="numpy",
                        help="cython: fastops (make build first), about 3x faster")
    parser.add_argument("--json", default=None, help=f"default: {RUNS_DIR}/<run name>.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = parser.parse_args(argv)
    backend = "" if args.backend == "numpy" else f" --backend {args.backend}"
    name = (f"ch4_makemore_{args.steps}steps_lr{args.lr:g}_wd{args.weight_decay:g}"
            f"{backend.replace(' --backend ', '_')}.json")
    try:
        path = output_path(args.json or RUNS_DIR / name, args.overwrite)
    except ValueError as err:
        parser.error(str(err))
    try:
        _, history, final = makemore_run(args.steps, eval_every=1000, base_lr=args.lr,
                                         weight_decay=args.weight_decay, backend=args.backend)
    except TrainingDiverged as err:
        fail(PROG, f"{err}. Nothing was saved.", 1)
    except ImportError as err:  # the cython backend without a compiled fastops
        fail(PROG, str(err), 1)
    except KeyboardInterrupt:
        fail(PROG, "interrupted before training started; nothing was saved", INTERRUPTED)
    command = (f"{PROG} --steps {args.steps} --lr {args.lr:g} "
               f"--weight-decay {args.weight_decay:g}{backend}")
    payload = {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "steps": len(history.losses), "interrupted": history.interrupted,
        "partial": history.interrupted,
        "settings": makemore_settings(args.steps, base_lr=args.lr,
                                      weight_decay=args.weight_decay).__dict__,
        "train_seconds": history.seconds[-1] if history.seconds else 0.0,
        "final_val_loss": final,
        "val_steps": history.val_steps, "val_losses": history.val_losses,
        "environment": environment(),
    }
    try:
        atomic_write_json(path, payload, overwrite=args.overwrite)
    except (OSError, ValueError) as err:
        fail(PROG, f"could not save the record to {path}: {err}", 1)
    final_text = "no final validation" if final is None else f"val loss {final:.4f}"
    print(f"{len(history.losses)} steps, {payload['train_seconds']:.0f} s, {final_text}; "
          f"saved {path}" + (" (partial: interrupted)" if history.interrupted else ""))
    if history.interrupted:
        raise SystemExit(INTERRUPTED)


def long_run_records() -> list[dict]:
    """Every complete long-run record kept for the chapter, sorted by final validation loss."""
    records = [json.loads(p.read_text()) for p in sorted(RECORDS_DIR.glob("ch4_makemore_*.json"))]
    complete = [r for r in records if not r.get("partial") and r["final_val_loss"] is not None]
    return sorted(complete, key=lambda r: r["final_val_loss"])


if __name__ == "__main__":
    main()
