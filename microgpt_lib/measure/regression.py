"""Keep it fast: save benchmark results with where they were measured, compare two, flag slowdowns.

`run` times rungs on configs with the benchmark harness and saves every step time together with
the machine (CPU model, caches, vector features, BLAS kernels), the software versions, fastops'
build (ISA, OpenMP) and the git commit, atomically. `compare` pairs the measurements of two such
files and, for each, gives the ratio of medians (new / old: above 1 is slower) and a bootstrap
confidence interval of that ratio: resample each file's step times with replacement, take the
ratio of the two medians, repeat, keep the middle 95%. Verdict: a regression when the whole
interval lies above the threshold (default 1.10: we are sure it is more than 10% slower), an
improvement when it lies below 1 / threshold; an interval that excludes 1 but not the threshold
is reported as slower (or faster) "within threshold", one that holds 1 as no change.

CLI (also through the benchmark's own entry point):
  python -m microgpt_lib.measure.bench run --rungs cython --configs e64_L2_b16 --out new.json
  python -m microgpt_lib.measure.bench compare old.json new.json --report r.md --chart r.png
`compare` exits with status 1 when any measurement regressed, so a script (or CI) can stop.
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microgpt_lib.data import REPO_ROOT
from microgpt_lib.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from microgpt_lib.machine import environment
from microgpt_lib.measure.bench import Measurement, run_benchmark
from microgpt_lib.measure.cpu_info import describe_cpu

FORMAT = "microgpt-benchmark-1"


def software_and_build() -> dict:
    """Versions of the libraries that decide the speed, fastops' build, and the git commit."""
    info: dict = {}
    for name in ("numpy", "Cython", "threadpoolctl"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    try:
        import fastops
        info["fastops_isa"], info["fastops_openmp"] = fastops.ISA, fastops.openmp_enabled()
    except ImportError:
        info["fastops_isa"] = None
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT,
                                            capture_output=True, text=True,
                                            check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["git_commit"] = None
    return info


def results_payload(measurements: list[Measurement], label: str = "") -> dict:
    """What `run` saves: the raw times and summaries, and where and with what they were taken."""
    return {"format": FORMAT, "label": label,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "environment": environment(), "cpu": describe_cpu(), "software": software_and_build(),
            "measurements": [m.summary() for m in measurements]}


def run(path: str | Path, rungs: list[str], configs: list[str], steps: int = 50, warmup: int = 5,
        max_seconds: float = 30.0, label: str = "", progress: bool = True) -> dict:
    """Time every rung on every config (one document per step) and save the results to `path`."""
    measurements = run_benchmark(rungs, configs, steps, warmup, max_seconds=max_seconds,
                                 progress=progress)
    payload = results_payload(measurements, label)
    atomic_write_json(path, payload)
    return payload


def load_results(path: str | Path) -> dict:
    """A results file written by `run`; ValueError if it is not one."""
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read benchmark results from {path}: {err}") from err
    if not isinstance(payload, dict) or not isinstance(payload.get("measurements"), list):
        raise ValueError(f"{path} holds no benchmark measurements (expected a `run` output)")
    return payload


def bootstrap_ratio_interval(old: list[float], new: list[float], confidence: float = 0.95,
                             resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Interval of median(new) / median(old) holding `confidence` of the bootstrap ratios."""
    if len(old) < 2 or len(new) < 2:
        raise ValueError(f"need at least 2 times on each side, got {len(old)} and {len(new)}")
    if not 0 < confidence < 1 or resamples < 100:
        raise ValueError(f"need 0 < confidence < 1 and resamples >= 100, got {confidence}, "
                         f"{resamples}")
    a, b = np.asarray(old, dtype=float), np.asarray(new, dtype=float)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and a.min() > 0 and b.min() > 0):
        raise ValueError("times must be finite and positive")
    rng = np.random.default_rng(seed)
    med_a = np.median(rng.choice(a, (resamples, a.size)), axis=1)
    med_b = np.median(rng.choice(b, (resamples, b.size)), axis=1)
    low, high = np.quantile(med_b / med_a, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def verdict(ratio: float, low: float, high: float, threshold: float) -> str:
    """regression / improvement when the whole interval is beyond the threshold, else milder."""
    if low > threshold:
        return "regression"
    if high < 1 / threshold:
        return "improvement"
    if low > 1:
        return "slower, within threshold"
    if high < 1:
        return "faster, within threshold"
    return "no change (within noise)"


@dataclass(frozen=True)
class Comparison:
    """One measurement in both files: medians, their ratio (new / old), its interval, verdict."""

    rung: str
    config: str
    kind: str
    old_median_ms: float
    new_median_ms: float
    ratio: float
    low: float
    high: float
    verdict: str


def compare(old: dict, new: dict, threshold: float = 1.10, confidence: float = 0.95,
            resamples: int = 2000, seed: int = 0) -> list[Comparison]:
    """Every measurement present in both payloads (matched on rung, config and kind)."""
    if threshold <= 1:
        raise ValueError(f"threshold must be above 1 (1.10 = 10% slower), got {threshold}")
    key = lambda m: (m["rung"], m["config"], m["kind"])  # noqa: E731
    old_by_key = {key(m): m for m in old["measurements"]}
    pairs = [(old_by_key[key(m)], m) for m in new["measurements"] if key(m) in old_by_key]
    if not pairs:
        raise ValueError("the two files have no measurement in common (rung, config, kind)")
    out = []
    for a, b in pairs:
        ratio = statistics.median(b["times_ms"]) / statistics.median(a["times_ms"])
        low, high = bootstrap_ratio_interval(a["times_ms"], b["times_ms"], confidence,
                                             resamples, seed)
        out.append(Comparison(*key(b), statistics.median(a["times_ms"]),
                              statistics.median(b["times_ms"]), ratio, low, high,
                              verdict(ratio, low, high, threshold)))
    return out


def markdown_report(comparisons: list[Comparison], threshold: float, old: dict | None = None,
                    new: dict | None = None) -> str:
    """A markdown table of the comparisons, with what each file was measured with."""
    lines = []
    for name, payload in (("old", old), ("new", new)):
        if payload:
            sw = payload.get("software", {})
            lines.append(f"- {name}: {payload.get('label') or '(no label)'}, "
                         f"{payload.get('created', '?')}, fastops {sw.get('fastops_isa')}, "
                         f"commit {str(sw.get('git_commit'))[:10]}")
    lines += ["", f"Ratio = new / old median time (above 1: slower); interval: bootstrap 95%; "
              f"regression threshold {threshold:.2f}.", "",
              "| rung | config | kind | old ms | new ms | ratio | interval | verdict |",
              "|---|---|---|---:|---:|---:|---|---|"]
    for c in comparisons:
        verdict_text = f"**{c.verdict}**" if c.verdict == "regression" else c.verdict
        lines.append(f"| {c.rung} | {c.config} | {c.kind} | {c.old_median_ms:.4g} | "
                     f"{c.new_median_ms:.4g} | {c.ratio:.3f} | {c.low:.3f} - {c.high:.3f} | "
                     f"{verdict_text} |")
    return "\n".join(lines)


def plot_comparison(ax, comparisons: list[Comparison], threshold: float) -> None:
    """Ratios with their intervals, one bar per measurement; 1 and the threshold as lines."""
    labels = [f"{c.rung}\n{c.config}" for c in comparisons]
    ratios = np.array([c.ratio for c in comparisons])
    errors = np.array([[c.ratio - c.low for c in comparisons],
                       [c.high - c.ratio for c in comparisons]])
    colours = ["C3" if c.verdict == "regression" else "C2" if c.verdict == "improvement"
               else "C7" for c in comparisons]
    ax.bar(range(len(ratios)), ratios, yerr=errors, color=colours, capsize=4)
    ax.axhline(1.0, color="k", lw=1)
    ax.axhline(threshold, color="C3", ls="--", lw=1, label=f"regression threshold {threshold:g}")
    ax.axhline(1 / threshold, color="C2", ls="--", lw=1)
    ax.set_xticks(range(len(ratios)), labels, fontsize=8)
    ax.set_ylabel("new / old median time")
    ax.legend(fontsize=8)


def save_chart(path: str | Path, comparisons: list[Comparison], threshold: float) -> None:
    """plot_comparison as a PNG file, written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(comparisons)), 3.5))
    plot_comparison(ax, comparisons, threshold)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def main(argv: list[str]) -> int:
    """`run ...` or `compare OLD NEW ...`; returns the exit status (1: a regression)."""
    parser = argparse.ArgumentParser(prog="python -m microgpt_lib.measure.bench",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="time rungs and save the results with the machine's info")
    p_run.add_argument("--rungs", nargs="+", default=["cython"])
    p_run.add_argument("--configs", nargs="+", default=["e16_L1_b16", "e64_L2_b16"])
    p_run.add_argument("--steps", type=int, default=50)
    p_run.add_argument("--warmup", type=int, default=5)
    p_run.add_argument("--max-seconds", type=float, default=30.0)
    p_run.add_argument("--label", default="")
    p_run.add_argument("--out", required=True, help="where to save the results (JSON)")
    p_cmp = sub.add_parser("compare", help="compare two results files; exit 1 on a regression")
    p_cmp.add_argument("old")
    p_cmp.add_argument("new")
    p_cmp.add_argument("--threshold", type=float, default=1.10)
    p_cmp.add_argument("--report", help="write the markdown report here")
    p_cmp.add_argument("--chart", help="write a PNG chart of the ratios here")
    args = parser.parse_args(argv)
    if args.command == "run":
        payload = run(args.out, args.rungs, args.configs, args.steps, args.warmup,
                      args.max_seconds, args.label)
        for m in payload["measurements"]:
            print(f"{m['rung']:<12} {m['config']:<12} {m['median_ms']:10.4f} ms (median of "
                  f"{len(m['times_ms'])})")
        return 0
    old, new = load_results(args.old), load_results(args.new)
    comparisons = compare(old, new, args.threshold)
    report = markdown_report(comparisons, args.threshold, old, new)
    print(report)
    if args.report:
        atomic_write_text(args.report, report + "\n")
    if args.chart:
        save_chart(args.chart, comparisons, args.threshold)
    return 1 if any(c.verdict == "regression" for c in comparisons) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
