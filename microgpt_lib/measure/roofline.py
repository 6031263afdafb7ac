"""The roofline: every fastops kernel against the machine's measured ceilings (chapter 6).

A kernel doing F FLOPs while moving B bytes cannot run faster than the arithmetic peak, nor
faster than the memory can feed it: attainable GFLOP/s = min(peak, (F / B) x bandwidth). Which
bandwidth? That of the smallest memory level that holds the kernel's working set (measured with
the STREAM triad). A kernel left of the
ridge point (F / B < peak / bandwidth) is memory-bound, right of it compute-bound; its
efficiency is achieved / attainable.

`time_kernels` times fastops' per-layer Python entry points (`fastops.matmul_forward`, ...) on
the shapes of one training step; each call also pays the Python call and the allocation of its
output (about a microsecond), which the fused `train_step` does not.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

import fastops
from microgpt_lib.config import GPTConfig
from microgpt_lib.measure import flop_counts as fc
from microgpt_lib.measure.bandwidth import level_bandwidth
from microgpt_lib.measure.cpu_info import caches
from microgpt_lib.measure.machine_peaks import blas_peak_gflops, best_seconds, own_kernel_gflops


@dataclass(frozen=True)
class Roofs:
    """The ceilings of one dtype on one thread count: compute peaks and bandwidth per level."""

    dtype: str
    threads: int
    peak_gflops: float  # BLAS on a large product: the machine's practical peak
    own_peak_gflops: float  # fastops' own loops on a product that fits in cache
    bandwidth: dict[str, float]  # level ("L1d", "L2", "L3", "DRAM") -> GB/s
    capacity: dict[str, float]  # level -> bytes it holds (DRAM: infinite)

    def memory_level(self, working_set: float) -> str:
        """The smallest level whose capacity holds `working_set` bytes."""
        for level, size in sorted(self.capacity.items(), key=lambda kv: kv[1]):
            if working_set <= size and level in self.bandwidth:
                return level
        return "DRAM"

    def attainable(self, intensity: float, working_set: float) -> float:
        """min(peak, intensity x bandwidth of the level that holds the working set), GFLOP/s."""
        return min(self.peak_gflops, intensity * self.bandwidth[self.memory_level(working_set)])

    def ridge(self, level: str) -> float:
        """The intensity (FLOP/byte) where `level`'s bandwidth roof meets the compute peak."""
        return self.peak_gflops / self.bandwidth[level]


def measure_roofs(dtype: str = "float64", threads: int = 1, min_seconds: float = 0.1) -> Roofs:
    """Measure the peaks and the per-level bandwidth now, on `threads` threads."""
    capacity: dict[str, float] = {}
    for cache in caches():
        capacity[cache.name] = cache.size_bytes * (threads if cache.shared_by == 1 else 1)
    capacity["DRAM"] = float("inf")
    return Roofs(dtype, threads, blas_peak_gflops(dtype, threads, min_seconds=min_seconds),
                 own_kernel_gflops(dtype, min_seconds=min_seconds),
                 level_bandwidth(threads), capacity)


@dataclass(frozen=True)
class KernelTiming:
    """One kernel's cost per call and its best measured time per call."""

    cost: fc.KernelCost
    seconds: float

    @property
    def gflops(self) -> float:
        return self.cost.flops / self.seconds / 1e9


def attention_runs_square(T: int, head_size: int) -> bool:
    """True when fastops' attention of T tokens goes to BLAS (full T x T products)."""
    return (fastops.blas_library() is not None
            and T * T * head_size >= fastops.get_attention_blas_threshold())


def _kernel_calls(config: GPTConfig, seq_lens: Sequence[int],
                  dtype: np.dtype) -> list[tuple[fc.KernelCost, Callable[[], object]]]:
    """(cost per call, a zero-argument call of the fastops entry point) for every kernel."""
    rng = np.random.default_rng(0)
    N, C, H, V = sum(seq_lens), config.n_embd, config.n_head, config.vocab_size
    s = np.dtype(dtype).itemsize
    rand = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    x, tokens = rand(N, C), rng.integers(0, V, N).astype(np.int64)
    bounds = np.concatenate([[0], np.cumsum(seq_lens)])
    spans = list(zip(bounds[:-1], bounds[1:]))
    calls: list[tuple[fc.KernelCost, Callable[[], object]]] = []
    wte, wpe = rand(V, C), rand(config.block_size, C)
    calls.append((fc.encoder_forward(N, C, s),
                  lambda: [fastops.encoder_forward(tokens[a:b], wte, wpe) for a, b in spans]))
    dwte, dwpe = np.zeros_like(wte), np.zeros_like(wpe)
    calls.append((fc.encoder_backward(N, C, s),
                  lambda: [fastops.encoder_backward(dwte, dwpe, x[a:b], tokens[a:b])
                           for a, b in spans]))
    _, rstd = fastops.rmsnorm_forward(x)
    calls.append((fc.rmsnorm_forward(N, C, s, "norms"), lambda: fastops.rmsnorm_forward(x)))
    calls.append((fc.rmsnorm_backward(N, C, s, "norms"),
                  lambda: fastops.rmsnorm_backward(x, x, rstd)))
    for cin, cout, role in ((C, C, "attention q k v o (C -> C)"), (C, 4 * C, "mlp fc1 (C -> 4C)"),
                            (4 * C, C, "mlp fc2 (4C -> C)"), (C, V, "lm_head (C -> V)")):
        xin, w, dout = rand(N, cin), rand(cout, cin), rand(N, cout)
        dw = np.zeros_like(w)
        calls.append((fc.matmul_forward(N, cin, cout, s, role),
                      lambda xin=xin, w=w: fastops.matmul_forward(xin, w)))
        calls.append((fc.matmul_backward(N, cin, cout, s, role),
                      lambda xin=xin, w=w, dout=dout, dw=dw:
                      fastops.matmul_backward(dout, xin, w, dw)))
    q, k, v = rand(N, C), rand(N, C), rand(N, C)
    cu = bounds.astype(np.int64)  # attention: once over the packed batch, as the step calls it
    _, att = fastops.attention_forward(q, k, v, H, cu)
    square = attention_runs_square(max(seq_lens), C // H)
    calls.append((fc.attention_forward(seq_lens, C, H, s, square),
                  lambda: fastops.attention_forward(q, k, v, H, cu)))
    calls.append((fc.attention_backward(seq_lens, C, H, s, square),
                  lambda: fastops.attention_backward(q, q, k, v, att, H, cu)))
    hidden = rand(4 * N * C)
    calls.append((fc.relu_forward(4 * N * C, s, "mlp"), lambda: fastops.relu_forward(hidden)))
    calls.append((fc.relu_backward(4 * N * C, s, "mlp"),
                  lambda: fastops.relu_backward(hidden, hidden)))
    logits, targets = rand(N, V), rng.integers(0, V, N).astype(np.int64)
    _, probs = fastops.softmax_crossentropy_forward(logits, targets)
    dlosses = np.full(N, 1.0 / N, dtype=dtype)
    calls.append((fc.softmax_crossentropy_forward(N, V, s),
                  lambda: fastops.softmax_crossentropy_forward(logits, targets)))
    calls.append((fc.softmax_crossentropy_backward(N, V, s),
                  lambda: fastops.softmax_crossentropy_backward(probs, targets, dlosses)))
    P = config.num_params
    p, g, m, vv = rand(P), rand(P), np.zeros(P, dtype), np.zeros(P, dtype)
    adam, norm = fc.adamw(P, s), fc.grad_norm(P, s)  # adamw_update also computes the norm
    calls.append((replace(adam, flops=adam.flops + norm.flops, bytes=adam.bytes + norm.bytes,
                          footprint=adam.working_set),
                  lambda: fastops.adamw_update(p, g, m, vv, 1, 1e-3, 0.9, 0.99, 1e-8, 0.1)))
    return calls


def time_kernels(config: GPTConfig, seq_lens: Sequence[int], dtype=np.float64,
                 min_seconds: float = 0.02, repeats: int = 5) -> list[KernelTiming]:
    """Best time per call of every fastops kernel on the shapes of one step (one thread).

    The encoder is called once per sequence, its cost covering all of them. Attention is called
    once over the packed batch (its `cu_seqlens`), as the training step calls it: one Python
    call per sequence, each allocating its own outputs, would time a per-sequence overhead the
    step never pays (at the capstone's 12 sequences of 64 tokens, about a tenth of the kernel's
    time). Per step, kernel i runs step_costs' `calls` times.
    """
    if not seq_lens or min(seq_lens) < 1 or max(seq_lens) > config.block_size:
        raise ValueError(f"sequence lengths must be 1..block_size={config.block_size}")
    return [KernelTiming(cost, best_seconds(call, min_seconds, repeats))
            for cost, call in _kernel_calls(config, seq_lens, dtype)]


def roofline_rows(timings: Sequence[KernelTiming], roofs: Roofs) -> list[dict]:
    """The table behind the plot: per kernel, intensity, achieved and attainable GFLOP/s, the
    level whose bandwidth applies, compute- or memory-bound, and efficiency."""
    rows = []
    for t in timings:
        level = roofs.memory_level(t.cost.working_set)
        attainable = roofs.attainable(t.cost.intensity, t.cost.working_set)
        bound = "compute" if t.cost.intensity >= roofs.ridge(level) else "memory"
        rows.append({"kernel": t.cost.kernel, "role": t.cost.role, "flops": t.cost.flops,
                     "bytes": t.cost.bytes, "intensity": t.cost.intensity,
                     "us_per_call": t.seconds * 1e6, "gflops": t.gflops, "level": level,
                     "attainable_gflops": attainable, "bound": bound,
                     "efficiency": t.gflops / attainable})
    return rows


def markdown_table(rows: Sequence[dict]) -> str:
    """The roofline table as markdown, one kernel per line."""
    lines = ["| kernel | shape | FLOP/byte | us/call | GFLOP/s | data in | attainable | bound |"
             " efficiency |", "|---|---|---:|---:|---:|---|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['kernel']} | {r['role']} | {r['intensity']:.2f} | "
                     f"{r['us_per_call']:.2f} | {r['gflops']:.2f} | {r['level']} | "
                     f"{r['attainable_gflops']:.1f} | {r['bound']} | {r['efficiency']:.0%} |")
    return "\n".join(lines)


def plot_roofline(ax, roofs: Roofs, points: dict[str, Sequence[dict]]) -> None:
    """Draw the roofs (one per memory level, the two compute peaks) and each set of kernel
    points (label -> rows of roofline_rows) on log-log axes."""
    xs = np.logspace(-2.5, 3, 200)
    for level, gbs in roofs.bandwidth.items():
        ax.plot(xs, np.minimum(roofs.peak_gflops, xs * gbs), lw=1, alpha=0.7,
                label=f"{level}: {gbs:.0f} GB/s")
    ax.axhline(roofs.peak_gflops, color="k", lw=1.5,
               label=f"BLAS peak {roofs.peak_gflops:.0f} GFLOP/s")
    ax.axhline(roofs.own_peak_gflops, color="k", lw=1, ls=":",
               label=f"our loops' peak {roofs.own_peak_gflops:.0f} GFLOP/s")
    markers = "osD^v<>p"
    for i, (label, rows) in enumerate(points.items()):
        ax.scatter([r["intensity"] for r in rows], [r["gflops"] for r in rows],
                   marker=markers[i % len(markers)], s=28, zorder=3, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title(f"Roofline, {roofs.dtype}, {roofs.threads} thread(s)")
    ax.legend(fontsize=7, loc="lower right")


def step_breakdown(config: GPTConfig, seq_lens: Sequence[int], timings: Sequence[KernelTiming],
                   roofs: Roofs, square_attention: bool = False,
                   clip: bool = False) -> list[dict]:
    """Per kernel of one step: calls, ms spent (time per call x calls), ms at its roof (FLOPs at
    the attainable GFLOP/s) and the difference, the time a perfect kernel would win back.
    Kernels with no Python entry point of their own (the residual add; the gradient norm, which
    adamw_update computes too) appear with their roof time only."""
    timed = {(t.cost.kernel, t.cost.role): t for t in timings}
    rows = []
    for cost in fc.step_costs(config, seq_lens, np.dtype(roofs.dtype).itemsize, clip=clip,
                              square_attention=square_attention):
        roof_ms = cost.calls * cost.flops / roofs.attainable(cost.intensity,
                                                              cost.working_set) / 1e6
        t = timed.get((cost.kernel, cost.role))
        spent = t.seconds * 1e3 * cost.calls if t else float("nan")
        rows.append({"kernel": cost.kernel, "role": cost.role, "calls": cost.calls,
                     "ms": spent, "roof_ms": roof_ms, "lost_ms": spent - roof_ms})
    return rows
