"""The `microgpt` command: train a scenario, sample from it, and run the benchmark (top layer).

    microgpt scenarios                                   list the scenarios
    microgpt train --scenario alice_chunks               train (Ctrl-C saves and says how to resume)
    microgpt train --scenario alice_chunks --resume      continue exactly where it stopped
    microgpt sample --scenario names -i Geo -n 10        samples that continue a prompt
    microgpt sample --scenario alice_continuous --chain --max-chars 500 --no-stop-at-bos
    microgpt bench --rungs numpy cython                  the benchmark harness (chapter 2 on)

Runs are written to runs/<scenario>/ under the current folder (`--runs-dir` to change it):
last.safetensors (saved at every validation and when stopped) and best.safetensors (lowest
validation loss). Any error in the input (a scenario, a checkpoint, a prompt) is one line on
stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from microgpt_lib.checkpoint import CheckpointError, load_checkpoint
from microgpt_lib.command_line import (INTERRUPTED, USAGE_ERROR, Parser, count, count_or_zero,
                                       nonnegative, positive)
from microgpt_lib.rungs import available_rungs, get_rung
from microgpt_lib.scenarios import ScenarioError, available_scenarios, load_scenario, prepare
from microgpt_lib.tokenizers import TokenError
from microgpt_lib.train.text_run import BACKENDS, DTYPES, RunSettings, TextRun
from microgpt_lib.train.text_sampling import sample_text



class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit code 2."""


def run_folder(args: argparse.Namespace) -> Path:
    return Path(args.runs_dir) / load_scenario(args.scenario).name


def resume_command(args: argparse.Namespace) -> str:
    """The command that continues this run exactly."""
    words = ["microgpt", "train", "--scenario", args.scenario, "--resume"]
    if args.runs_dir != "runs":
        words += ["--runs-dir", args.runs_dir]
    return shlex.join(words)


def cmd_train(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    data = prepare(scenario)
    folder = run_folder(args)
    overrides = dict(steps=args.steps, grad_accum=args.grad_accum, batch_size=args.batch_size)
    if args.resume:
        run = TextRun.resume(data, folder, args.backend, **overrides)
        if args.dtype not in (None, run.dtype):
            raise UsageError(f"the run in {folder} trains in {run.dtype}; resume it in "
                             f"{run.dtype} (leave out --dtype)")
        print(f"resuming {scenario.name} at step {run.trainer.step} of {run.settings.steps} "
              f"({run.backend_name}, {run.dtype})")
    else:
        try:
            settings = RunSettings.from_table(scenario.train, **overrides)
        except ValueError as err:
            raise UsageError(f"scenario {scenario.name!r}: {err}") from None
        try:
            run = TextRun.start(data, folder, settings, args.backend or "cython",
                                args.dtype or "float32",
                                overwrite=args.overwrite)
        except FileExistsError as err:
            raise UsageError(f"{err} (--resume or --overwrite)") from None
        print(f"training {scenario.name}: {data.config.name}, {data.config.num_params:,} "
              f"weights, vocabulary {data.config.vocab_size}, {settings.steps} steps of "
              f"{settings.batch_size} rows ({run.backend_name}, {run.dtype})")
    outcome = run.train(progress=not args.no_progress, max_seconds=args.max_seconds)
    h = run.trainer.history
    if h.val_losses:
        print(f"step {run.trainer.step}: validation loss {h.val_losses[-1]:.4f}, "
              f"{h.val_bits_per_byte[-1]:.3f} bits per byte")
    print(f"saved {run.last_path}" + (f" and {run.best_path}" if run.best_path.exists() else ""))
    if outcome != "done":
        print(f"stopped at step {run.trainer.step} of {run.settings.steps}; resume with:\n  "
              f"{resume_command(args)}")
    return INTERRUPTED if outcome == "interrupted" else 0


def cmd_sample(args: argparse.Namespace) -> None:
    scenario = load_scenario(args.scenario)
    defaults = scenario.sample
    folder = run_folder(args)
    path = Path(args.checkpoint) if args.checkpoint not in ("last", "best") else (
        folder / f"{args.checkpoint}.safetensors")
    if not path.is_file():
        raise UsageError(f"no checkpoint at {path}; train first: microgpt train --scenario "
                         f"{args.scenario}")
    data = prepare(scenario)
    ckpt = load_checkpoint(path, data.config, data.tokenizer)  # made for this scenario?
    if args.chain and args.max_chars is None and "max_chars" not in defaults:
        raise UsageError("--chain needs --max-chars, the length of each sample")
    model = get_rung(args.rung)(ckpt.config, ckpt.params())
    samples = sample_text(
        model, scenario, data.tokenizer,
        args.prompt if args.prompt is not None else defaults.get("prompt"),
        num_samples=pick(args.num_samples, defaults, "num_samples", 10),
        temperature=pick(args.temperature, defaults, "temperature", 0.8),
        top_k=pick(args.top_k, defaults, "top_k", None),
        stop_at_bos=pick(args.stop_at_bos, defaults, "stop_at_bos", True),
        max_tokens=args.max_tokens,
        max_chars=pick(args.max_chars, defaults, "max_chars", None) if args.chain else None,
        seed=args.seed)
    prose = scenario.documents != "lines"
    for i, sample in enumerate(samples):
        if prose and i:
            print("-" * 40)
        print(sample)


def pick(value: Any, defaults: dict[str, Any], key: str, fallback: Any) -> Any:
    """A command-line value, else the scenario's [sample] default, else the fallback."""
    return value if value is not None else defaults.get(key, fallback)


def cmd_scenarios(args: argparse.Namespace) -> None:
    for name in available_scenarios():
        print(f"{name:20} {load_scenario(name).description}")


def parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per task."""
    top = Parser(
        prog="microgpt", description="Train the course's GPT on a text, and sample from it.",
        epilog="Each subcommand has its own --help, e.g. `microgpt train --help`.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def scenario_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--scenario", "-s", required=True, metavar="NAME",
                       help="a scenario name (see `microgpt scenarios`) or a path to a .toml file")
        p.add_argument("--runs-dir", default="runs", metavar="DIR",
                       help="folder of the runs; each scenario's run is DIR/<scenario>/ "
                            "(default: runs)")

    p = sub.add_parser("scenarios", help="list the scenarios")
    p.set_defaults(func=cmd_scenarios)

    p = sub.add_parser("train", help="train a scenario (Ctrl-C saves a checkpoint)",
                       description="Train a scenario's model. Checkpoints go to "
                                   "runs/<scenario>/last.safetensors and best.safetensors.")
    scenario_options(p)
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="cython (fastops, default) or numpy (chapter 4's kernels)")
    p.add_argument("--dtype", choices=DTYPES, default=None, help="default: float32")
    p.add_argument("--steps", type=count, metavar="N", help="optimiser steps (default: the scenario's)")
    p.add_argument("--batch-size", type=count, metavar="N", help="rows per step (default: the scenario's)")
    p.add_argument("--grad-accum", type=count, metavar="N",
                   help="split each step's rows into N micro-batches (same gradient, less memory)")
    p.add_argument("--resume", action="store_true",
                   help="continue the saved run exactly (its settings, backend and dtype)")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh even if the run's folder holds checkpoints")
    p.add_argument("--max-seconds", type=positive, metavar="S",
                   help="stop (and save) after this much training")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="sample text from a trained scenario",
                       description="Sample from a scenario's trained model; defaults come from "
                                   "the scenario's [sample] table.")
    scenario_options(p)
    p.add_argument("-i", "--prompt", metavar="TEXT", help="text the samples continue")
    p.add_argument("-n", "--num-samples", type=count, metavar="N", help="number of samples")
    p.add_argument("-t", "--temperature", type=nonnegative, metavar="T",
                   help="> 0 divides the logits before the softmax (lower: safer); 0: greedy")
    p.add_argument("--top-k", type=count, metavar="K", help="draw only among the k most likely tokens")
    p.add_argument("--no-stop-at-bos", dest="stop_at_bos", action="store_false", default=None,
                   help="do not end a sample at BOS (for continuous text)")
    p.add_argument("--max-tokens", type=count_or_zero, metavar="N",
                   help="new tokens per sample (default: fill the context once)")
    p.add_argument("--chain", action="store_true",
                   help="continue past the context by sliding it over the last block_size "
                        "tokens, up to --max-chars")
    p.add_argument("--max-chars", type=count, metavar="N",
                   help="length of a chained sample, prompt included")
    p.add_argument("--checkpoint", default="best", metavar="{best,last,PATH}",
                   help="best (default), last, or a path to a checkpoint file")
    p.add_argument("--rung", default="cython", choices=available_rungs(), metavar="RUNG",
                   help="the rung that samples: any rung loads any checkpoint "
                        f"({', '.join(available_rungs())}; default cython, the fastest)")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="random seed (default: random)")
    p.set_defaults(func=cmd_sample)

    # `microgpt bench ...` hands its arguments to the benchmark's own parser (see main)
    sub.add_parser("bench", help="time the rungs (see `microgpt bench -h`)", add_help=False)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `microgpt` command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from microgpt_lib.measure.bench import main as bench_main
        bench_main(argv[1:])
        return 0
    args = parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (UsageError, ScenarioError, CheckpointError, TokenError, ValueError) as err:
        # ValueError: the library's checks of sampling options (temperature, top-k, ...)
        print(f"microgpt: error: {err}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
