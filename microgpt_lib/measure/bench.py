"""The benchmark harness: time rungs side by side in one run, and measure their memory separately.

Timing: each rung trains from the shared initialisation on names (one document per step); after
`warmup` untimed steps, every step is timed with perf_counter and we report the median and the
mean (GC pauses and other stalls show up as a mean above the median). Inference is timed per
sample the same way. Memory is measured in a second, separate pass in a fresh subprocess, never
while timing: tracemalloc slows Python code 2-3x and would distort the ratios. That pass reports
the tracemalloc peak of a few training steps and the process's peak RSS (`peak_rss_kib`).

A rung is named as in the registry ("python_fast") or, for the intermediate variants a chapter
times, as "module:Class" ("microgpt_lib.rungs.rung2_python_fast.variants:ScalarFusedGPT").

CLI: `python -m microgpt_lib.measure.bench --rungs scalar python_fast --configs e16_L1_b16 --json out.json`
(add `--interleaved` to alternate the rungs step by step, see `time_interleaved`). A bad flag is
a one-line error (exit code 2); the --json path is checked before timing starts and an existing
file is replaced only with `--overwrite`; Ctrl-C saves what was measured, marked partial (exit 130).
Its `run` and `compare OLD NEW` commands save results and detect regressions
(`microgpt_lib.measure.regression`).
"""
from __future__ import annotations

import gc
import json
import random
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from microgpt_lib.command_line import (
    INTERRUPTED,
    Parser,
    count,
    count_or_zero,
    fail,
    output_path,
    positive,
)
from microgpt_lib.config import GPTConfig
from microgpt_lib.data import names_corpus
from microgpt_lib.files import atomic_write_json
from microgpt_lib.machine import environment
from microgpt_lib.numerics import check_count
from microgpt_lib.params import init_params
from microgpt_lib.rungs import get_rung
from microgpt_lib.rungs.rung1_scalar.value import topological_order

PROG = "python -m microgpt_lib.measure.bench"


@dataclass
class Measurement:
    """Per-step (or per-sample) wall times of one rung on one config, with summary statistics."""

    rung: str
    config: str
    kind: str  # "train" (ms per training step) or "infer" (ms per generated sample)
    times_ms: list[float]
    memory: dict[str, float] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times_ms)

    def summary(self) -> dict:
        """JSON-ready: the raw times and their median, mean, min and max."""
        return {**asdict(self), "median_ms": self.median, "mean_ms": self.mean,
                "min_ms": min(self.times_ms), "max_ms": max(self.times_ms)}


def rung_label(rung: str) -> str:
    """The short name a rung's results are filed under (its class's `name`)."""
    return get_rung(rung).name or rung


def build_model(rung: str, config_name: str, seed: int = 0, options: dict | None = None):
    """A fresh model of `rung` on the preset `config_name`, from the shared initialisation.

    `options` are passed on to the rung's constructor (e.g. {"dtype": numpy.float32}).
    """
    docs, tok = names_corpus()
    config = GPTConfig.preset(config_name, vocab_size=tok.vocab_size)
    model = get_rung(rung)(config, init_params(config, seed=seed), **(options or {}))
    return model, docs, tok


def time_training(
    rung: str, config_name: str, steps: int = 50, warmup: int = 5, max_seconds: float = 60.0,
    min_steps: int = 3, lr: float = 0.01, options: dict | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """ms per training step after `warmup` steps; stops early once `max_seconds` are spent.

    `clock` times each step: wall time by default; `time.process_time` counts only this process's
    CPU time, which other jobs on a shared machine cannot inflate (the budget stays wall time).
    """
    check_count("steps", steps)
    check_count("warmup", warmup, minimum=0)
    model, docs, tok = build_model(rung, config_name, options=options)
    encoded = [tok.encode_doc(d) for d in docs[: warmup + steps]]
    for tokens in encoded[:warmup]:
        model.train_step(tokens, lr)
    times, start = [], time.perf_counter()
    for tokens in encoded[warmup:]:
        t0 = clock()
        model.train_step(tokens, lr)
        times.append((clock() - t0) * 1e3)
        if len(times) >= min_steps and time.perf_counter() - start > max_seconds:
            break
    return Measurement(rung_label(rung), config_name, "train", times)


def time_inference(
    rung: str, config_name: str, samples: int = 50, warmup: int = 3, max_seconds: float = 30.0,
    min_samples: int = 3, temperature: float = 0.5,
) -> Measurement:
    """ms per generated sample (BOS to BOS or block_size tokens) after `warmup` samples."""
    check_count("samples", samples)
    check_count("warmup", warmup, minimum=0)
    model, _, _ = build_model(rung, config_name)
    rng = random.Random(1)
    model.generate(warmup, temperature, rng=rng)
    times, start = [], time.perf_counter()
    for _ in range(samples):
        t0 = time.perf_counter()
        model.generate(1, temperature, rng=rng)
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= min_samples and time.perf_counter() - start > max_seconds:
            break
    return Measurement(rung_label(rung), config_name, "infer", times)


def time_interleaved(
    rungs: list[str], config_name: str, kind: str = "train", rounds: int = 20,
    repeats: dict[str, int] | None = None, warmup: int = 2, max_seconds: float = 60.0,
    lr: float = 0.01, temperature: float = 0.5, settle: int = 0,
) -> list[Measurement]:
    """Time several rungs in alternation, round by round, so that they share the machine's load.

    kind "train": in round i every rung trains `repeats[rung]` timed steps (default 1) on document
    i; kind "infer": every rung draws `repeats[rung]` samples from its own generator (seed 1).
    A rung that leaves cyclic garbage at the end of its turn has it freed during the next rung's
    turn, and starts its own next turn without it: both would bias the times. `settle` untimed
    steps at the start of every turn put each rung back into the state it has when it runs alone.
    """
    if kind not in ("train", "infer"):
        raise ValueError(f"kind must be 'train' or 'infer', got {kind!r}")
    check_count("rounds", rounds)
    check_count("warmup", warmup, minimum=0)
    check_count("settle", settle, minimum=0)
    repeats = repeats or {}
    for rung, n in repeats.items():
        check_count(f"repeats[{rung!r}]", n)
    models = {}
    for rung in rungs:
        models[rung], docs, tok = build_model(rung, config_name)
    encoded = [tok.encode_doc(d) for d in docs[: warmup + rounds]]
    rngs = {rung: random.Random(1) for rung in rungs}

    def run(rung: str, i: int) -> None:
        if kind == "train":
            models[rung].train_step(encoded[i], lr)
        else:
            models[rung].generate(1, temperature, rng=rngs[rung])

    for i in range(warmup):
        for rung in rungs:
            run(rung, i)
    times: dict[str, list[float]] = {rung: [] for rung in rungs}
    start = time.perf_counter()
    for i in range(warmup, warmup + rounds):
        for rung in rungs:
            for _ in range(settle):
                run(rung, i)
            for _ in range(repeats.get(rung, 1)):
                t0 = time.perf_counter()
                run(rung, i)
                times[rung].append((time.perf_counter() - t0) * 1e3)
        if i - warmup >= 2 and time.perf_counter() - start > max_seconds:
            break
    return [Measurement(rung_label(rung), config_name, kind, times[rung]) for rung in rungs]


def memory_of_training(rung: str, config_name: str, steps: int = 3) -> dict[str, float]:
    """Run in this process: peak RSS (KiB) over `steps` training steps, then, on the same
    documents again, the tracemalloc peak (KiB); RSS is read first, as tracing needs memory too."""
    model, docs, tok = build_model(rung, config_name)
    encoded = [tok.encode_doc(d) for d in docs[: steps + 1]]
    model.train_step(encoded[0], 0.01)  # first step allocates the optimiser state
    for tokens in encoded[1:]:
        model.train_step(tokens, 0.01)
    rss_kib = peak_rss_kib()
    gc.collect()
    tracemalloc.start()
    for tokens in encoded[1:]:
        model.train_step(tokens, 0.01)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"tracemalloc_peak_kib": peak / 1024, "peak_rss_kib": rss_kib}


def peak_rss_kib() -> float:
    """This process's peak resident set size in KiB.

    VmHWM from /proc/self/status where it exists (Linux): it starts afresh in a new program,
    whereas getrusage's ru_maxrss survives fork and exec, so a subprocess started from a big
    process (a notebook kernel) would report its parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def measure_memory(rung: str, config_name: str, steps: int = 3) -> dict[str, float]:
    """memory_of_training in a fresh subprocess, so the peak RSS belongs to this rung alone."""
    code = (
        "import json, sys; from microgpt_lib.measure.bench import memory_of_training; "
        "print(json.dumps(memory_of_training(sys.argv[1], sys.argv[2], int(sys.argv[3]))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, rung, config_name, str(steps)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def count_graph_nodes(rung: str, config_name: str, docs: int = 20) -> float:
    """Mean number of graph nodes per training step (the model's `loss_graph`) over `docs` docs."""
    model, all_docs, tok = build_model(rung, config_name)
    sizes = [len(topological_order(model.loss_graph(tok.encode_doc(d)))) for d in all_docs[:docs]]
    return statistics.fmean(sizes)


def iter_benchmark(
    rungs: list[str], configs: list[str], steps: int = 50, warmup: int = 5,
    infer_samples: int = 0, memory: bool = False, max_seconds: float = 60.0, progress: bool = True,
) -> Iterator[Measurement]:
    """Every rung on every config, one measurement at a time (so a caller keeps what was
    measured if it is interrupted); training always, inference and memory on request."""
    jobs = [(r, c) for c in configs for r in rungs]
    bar = tqdm(total=len(jobs), desc="benchmark", disable=not progress)
    try:
        for rung, config_name in jobs:
            train = time_training(rung, config_name, steps, warmup, max_seconds)
            if memory:
                train.memory = measure_memory(rung, config_name)
            yield train
            if infer_samples:
                yield time_inference(rung, config_name, infer_samples, max_seconds=max_seconds)
            bar.set_postfix_str(f"{rung} {config_name}: {train.median:.3f} ms/step", refresh=False)
            bar.update()
    finally:
        bar.close()


def run_benchmark(
    rungs: list[str], configs: list[str], steps: int = 50, warmup: int = 5,
    infer_samples: int = 0, memory: bool = False, max_seconds: float = 60.0, progress: bool = True,
) -> list[Measurement]:
    """Every rung on every config in one run; training always, inference and memory on request."""
    return list(iter_benchmark(rungs, configs, steps, warmup, infer_samples, memory, max_seconds,
                               progress))


def format_table(results: list[Measurement], baseline: str = "scalar") -> str:
    """A plain-text table: median and mean ms, and speed-ups over `baseline` on the same config.

    Memory columns (tracemalloc peak and peak RSS, MiB) appear when a measurement has them.
    """
    base = {(m.config, m.kind): m for m in results if m.rung == baseline}
    with_memory = any(m.memory for m in results)
    lines = [f"{'config':<12} {'kind':<5} {'rung':<20} {'median ms':>10} {'mean ms':>10} "
             f"{'n':>4} {'x median':>9} {'x mean':>8}"
             + (f" {'traced MiB':>10} {'RSS MiB':>8}" if with_memory else "")]
    for m in results:
        ref = base.get((m.config, m.kind))
        up_med = f"{ref.median / m.median:9.1f}" if ref else f"{'-':>9}"
        up_mean = f"{ref.mean / m.mean:8.1f}" if ref else f"{'-':>8}"
        line = (f"{m.config:<12} {m.kind:<5} {m.rung:<20} {m.median:10.3f} {m.mean:10.3f} "
                f"{len(m.times_ms):4d} {up_med} {up_mean}")
        if with_memory:
            line += (f" {m.memory.get('tracemalloc_peak_kib', float('nan')) / 1024:10.2f}"
                     f" {m.memory.get('peak_rss_kib', float('nan')) / 1024:8.1f}")
        lines.append(line)
    return "\n".join(lines)


def save_json(results: list[Measurement], path: str | Path, partial: bool = False,
              overwrite: bool = True) -> None:
    """Write the measurements and the environment they were taken in (atomically, strict JSON);
    `partial` marks a benchmark that was interrupted before it measured everything."""
    payload = {"environment": environment(), "partial": partial,
               "measurements": [m.summary() for m in results]}
    atomic_write_json(path, payload, overwrite)


def _repeats(items: list[str]) -> dict[str, int]:
    """--repeat RUNG=N items as a dict; ValueError naming a malformed item."""
    repeats = {}
    for item in items:
        rung, _, n = item.rpartition("=")
        if not rung or not n.isdigit() or int(n) < 1:
            raise ValueError(f"--repeat takes RUNG=N with N >= 1, got {item!r}")
        repeats[rung] = int(n)
    return repeats


def _measurements(args) -> Iterator[Measurement]:
    if not args.interleaved:
        yield from iter_benchmark(args.rungs, args.configs, args.steps, args.warmup,
                                  args.infer_samples, args.memory, args.max_seconds)
        return
    repeats = _repeats(args.repeat)
    for config_name in args.configs:
        yield from time_interleaved(args.rungs, config_name, "train", args.steps, repeats,
                                    args.warmup, args.max_seconds, settle=args.settle)
        if args.infer_samples:
            yield from time_interleaved(args.rungs, config_name, "infer", args.infer_samples,
                                        repeats, warmup=1, max_seconds=args.max_seconds)


def main(argv: list[str] | None = None) -> int:
    """Command line: time any set of rungs and configs, print the table, optionally save JSON;
    `run ...` and `compare OLD NEW ...` go to the regression tracker (exit status 1: regression)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("run", "compare"):
        from microgpt_lib.measure import regression  # it imports this module: import it late
        return regression.main(argv)
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--rungs", nargs="+", default=["scalar"])
    parser.add_argument("--configs", nargs="+", default=["e16_L1_b16"])
    parser.add_argument("--steps", type=count, default=50)
    parser.add_argument("--warmup", type=count_or_zero, default=5)
    parser.add_argument("--infer-samples", type=count_or_zero, default=0)
    parser.add_argument("--memory", action="store_true", help="also measure memory (separate pass)")
    parser.add_argument("--max-seconds", type=positive, default=60.0,
                        help="time budget per measurement")
    parser.add_argument("--baseline", default="scalar")
    parser.add_argument("--json", help="save the results to this file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument("--interleaved", action="store_true",
                        help="alternate the rungs step by step (--steps rounds) instead of in turn")
    parser.add_argument("--repeat", nargs="*", default=[], metavar="RUNG=N",
                        help="with --interleaved: timed steps (or samples) per turn of a rung")
    parser.add_argument("--settle", type=count_or_zero, default=0,
                        help="with --interleaved: untimed steps at the start of every turn")
    args = parser.parse_args(argv)
    try:
        for rung in args.rungs:
            get_rung(rung)
        for config_name in args.configs:
            GPTConfig.preset(config_name)
        _repeats(args.repeat)
        path = output_path(args.json, args.overwrite) if args.json else None
    except (ValueError, ImportError, AttributeError) as err:
        parser.error(str(err))
    results, interrupted = [], False
    try:
        for measurement in _measurements(args):
            results.append(measurement)
    except KeyboardInterrupt:
        interrupted = True
    if results:
        print(format_table(results, args.baseline))
    if path is not None:
        save_json(results, path, partial=interrupted, overwrite=args.overwrite)
        print(f"saved {len(results)} measurements to {path}"
              + (" (partial: interrupted)" if interrupted else ""))
    if interrupted:
        fail(PROG, f"interrupted after {len(results)} measurements", INTERRUPTED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
