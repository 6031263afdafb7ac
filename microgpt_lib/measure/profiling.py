"""Where a training step spends its time (chapter 2): cProfile's table and a per-section timing.

cProfile counts every Python call and so slows the code it watches; its table says *which*
functions are hot. The section timing runs the code untouched and says *how long* each phase of a
scalar step takes: forward, topological sort, chain rule, Adam, and the garbage collector; for
`python_fast` it also times the bare arithmetic its step cannot avoid.
"""
from __future__ import annotations

import cProfile
import pstats
import random
import statistics
import time
from collections.abc import Callable, Sequence

from microgpt_lib.measure.gc_stats import GCRecorder
from microgpt_lib.rungs.rung1_scalar.gpt import ScalarGPT
from microgpt_lib.rungs.rung2_python_fast.gpt import PythonFastGPT
from microgpt_lib.rungs.rung2_python_fast.nodes import (
    backward,
    linear_backward,
    linear_forward,
    linear_weight_backward,
)
from microgpt_lib.rungs.rung2_python_fast.variants import recursive_topological_order


def cprofile_rows(fn: Callable[[], object], n_rows: int = 12) -> list[dict]:
    """Run fn under cProfile; the n_rows functions with the most own time (ms), hottest first."""
    profiler = cProfile.Profile()
    profiler.runcall(fn)
    stats = pstats.Stats(profiler).sort_stats("tottime")
    rows = []
    for (filename, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        where = f"{filename.rsplit('/', 1)[-1]}:{line}" if line else "built-in"
        rows.append({"function": func, "where": where, "calls": ncalls,
                     "own_ms": tottime * 1e3, "cumulative_ms": cumtime * 1e3})
    rows.sort(key=lambda r: r["own_ms"], reverse=True)
    return rows[:n_rows]


def scalar_step_sections(model: ScalarGPT, docs: Sequence[Sequence[int]], lr: float = 0.01) -> dict:
    """Median ms per step of each phase of `scalar` training steps, and the GC's share of each.

    backward() sorts the graph and then applies the chain rule; the sort is timed on its own
    (same recursive function) and subtracted from backward's time to give the chain rule.
    """
    phases: dict[str, list[float]] = {p: [] for p in ("forward", "topological sort", "chain rule",
                                                      "adam", "gc (inside the above)")}
    for tokens in docs:
        with GCRecorder() as recorder:
            t0 = time.perf_counter()
            loss = model.loss_graph(tokens)
            t1 = time.perf_counter()
            recursive_topological_order(loss)
            t2 = time.perf_counter()
            loss.backward()
            t3 = time.perf_counter()
            model.step(lr)
            t4 = time.perf_counter()
        del loss
        phases["forward"].append((t1 - t0) * 1e3)
        phases["topological sort"].append((t2 - t1) * 1e3)
        phases["chain rule"].append(((t3 - t2) - (t2 - t1)) * 1e3)
        phases["adam"].append((t4 - t3) * 1e3)
        phases["gc (inside the above)"].append(recorder.total_ms())
    return {phase: statistics.median(times) for phase, times in phases.items()}


def python_fast_step_sections(
    model: PythonFastGPT, docs: Sequence[Sequence[int]], lr: float = 0.01
) -> dict[str, float]:
    """Median ms per `python_fast` step of each phase, and of the bare arithmetic inside them.

    The phases are the real step (forward graph, backward, Adam). "matrix arithmetic" times only
    the kernels every step must run for its n positions: W x for each use of each matrix, W^T dy,
    and the weight gradients, called directly on vectors of the step's sizes with no graph, no
    nodes and no bookkeeping. That time plus Adam's (which is arithmetic only) is what a step would
    cost if everything around the arithmetic were free.
    """
    rng = random.Random(0)
    phases: dict[str, list[float]] = {p: [] for p in ("forward", "backward", "adam",
                                                      "matrix arithmetic")}
    for tokens in docs:
        n = min(model.config.block_size, len(tokens) - 1)
        t0 = time.perf_counter()
        root = model.loss_graph(tokens)
        t1 = time.perf_counter()
        backward(root)
        t2 = time.perf_counter()
        model.step(lr)
        t3 = time.perf_counter()
        del root
        arithmetic = 0.0
        for name, w in model.weights.items():
            if name in ("wte", "wpe"):  # looked up, not multiplied
                continue
            xs = [[rng.random() for _ in w.data[0]] for _ in range(n)]
            dys = [[rng.random() for _ in w.data] for _ in range(n)]
            a0 = time.perf_counter()
            for x in xs:
                linear_forward(x, w.data)
            w_t = w.transposed()
            for dy in dys:
                linear_backward(dy, w_t)
            linear_weight_backward(dys, xs)
            arithmetic += time.perf_counter() - a0
            w.invalidate()
        phases["forward"].append((t1 - t0) * 1e3)
        phases["backward"].append((t2 - t1) * 1e3)
        phases["adam"].append((t3 - t2) * 1e3)
        phases["matrix arithmetic"].append(arithmetic * 1e3)
    return {phase: statistics.median(times) for phase, times in phases.items()}
