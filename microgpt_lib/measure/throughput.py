"""Training throughput of the batched backends: real tokens per second at a batch size (ch. 4-5).

One harness for every backend with `train_step(batch, lr)` (the NumPy kernels' and fastops'):
warm-up steps untimed, then each step timed with perf_counter; tokens counted are real
(non-padding) ones. `fresh_process_throughput` repeats a measurement in a new process, where
malloc's state is not shaped by what ran before; `time_thread_scaling` compares one thread with
several in alternating blocks, so that the machine's drifts hit both alike.
"""
from __future__ import annotations

import ctypes
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from microgpt_lib.batches import EncodedDocs
from microgpt_lib.config import GPTConfig
from microgpt_lib.data import names_corpus, split_docs
from microgpt_lib.params import init_params


@dataclass
class Throughput:
    """Per-step wall times of a batched backend and the real tokens each step trained on."""

    backend: str
    config: str
    batch_size: int
    num_threads: int
    times_ms: list[float]
    tokens: list[int]

    @property
    def tokens_per_second(self) -> float:
        """Real (non-padding) tokens per second over the timed steps."""
        return sum(self.tokens) / (sum(self.times_ms) / 1e3)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)


def measure_throughput(backend, docs: EncodedDocs, batch_size: int, steps: int = 20,
                       warmup: int = 3, max_seconds: float = 30.0, lr: float = 1e-3,
                       seed: int = 0, config_name: str = "", num_threads: int = 1) -> Throughput:
    """Time `backend.train_step` on `warmup + steps` random batches of `docs` (the last `steps`
    timed; fewer if `max_seconds` runs out after at least three)."""
    rng = np.random.default_rng(seed)
    batches = [docs.batch(rng.integers(0, len(docs), batch_size)) for _ in range(warmup + steps)]
    for batch in batches[:warmup]:
        backend.train_step(batch, lr)
    times, tokens, start = [], [], time.perf_counter()
    for batch in batches[warmup:]:
        t0 = time.perf_counter()
        backend.train_step(batch, lr)
        times.append((time.perf_counter() - t0) * 1e3)
        tokens.append(batch.num_tokens)
        if len(times) >= 3 and time.perf_counter() - start > max_seconds:
            break
    name = getattr(backend, "name", type(backend).__name__)
    return Throughput(name, config_name, batch_size, num_threads, times, tokens)


def time_batched_training(
    make_backend: Callable, config_name: str, batch_size: int = 32, steps: int = 30,
    warmup: int = 3, num_threads: int = 1, max_seconds: float = 30.0, lr: float = 0.01,
) -> Throughput:
    """measure_throughput of `make_backend(config, params, num_threads)` on the training names,
    for the preset `config_name`."""
    docs, tok = names_corpus()
    config = GPTConfig.preset(config_name, vocab_size=tok.vocab_size)
    backend = make_backend(config, init_params(config), num_threads)
    encoded = EncodedDocs.encode(split_docs(docs)[0], tok, config.block_size)
    return measure_throughput(backend, encoded, batch_size, steps, warmup, max_seconds, lr,
                              config_name=config_name, num_threads=num_threads)


@dataclass
class ThreadScaling:
    """One backend timed on one thread and on `num_threads`, in alternating blocks of steps."""

    config: str
    batch_size: int
    num_threads: int
    one_ms: list[float]    # per block: one thread's mean ms per step
    many_ms: list[float]   # the same blocks' batches on num_threads
    tokens: list[float]    # per block: mean real tokens per step

    @property
    def block_ratios(self) -> list[float]:
        """Per block: one thread's time over num_threads' time, on the same batches."""
        return [one / many for one, many in zip(self.one_ms, self.many_ms)]

    @property
    def ratio(self) -> float:
        """The median of the block ratios: how many times faster num_threads train."""
        return statistics.median(self.block_ratios)

    def tokens_per_second(self, threads: int) -> float:
        """Real tokens per second on one thread (threads=1) or on num_threads, over all blocks."""
        ms = self.one_ms if threads == 1 else self.many_ms
        return sum(self.tokens) / (sum(ms) / 1e3)


def time_thread_scaling(make_backend: Callable, config_name: str, batch_size: int = 32,
                        num_threads: int = 2, blocks: int = 10, steps_per_block: int = 10,
                        lr: float = 0.01, seed: int = 0) -> ThreadScaling:
    """Thread scaling of `make_backend(config, params, threads)` on the training names, measured
    so that the machine's drifts cancel.

    Timing one thread, then two, compares two moments of the machine: on a shared host a core's
    speed can change by half within a second (another program, the clock of a busy chip), more
    than the threads gain. Here two backends, one thread and num_threads, train on the same
    batches in alternating blocks of `steps_per_block` steps (each block opened by one untimed
    step, which wakes sleeping threads), and each block gives a ratio of like with like.
    """
    for name, value, least in (("num_threads", num_threads, 2), ("blocks", blocks, 1),
                               ("steps_per_block", steps_per_block, 1)):
        if not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    docs, tok = names_corpus()
    config = GPTConfig.preset(config_name, vocab_size=tok.vocab_size)
    backends = {threads: make_backend(config, init_params(config), threads)  # equal, not shared
                for threads in (1, num_threads)}
    encoded = EncodedDocs.encode(split_docs(docs)[0], tok, config.block_size)
    rng = np.random.default_rng(seed)
    times: dict[int, list[float]] = {1: [], num_threads: []}
    tokens: list[float] = []
    for block in range(blocks):
        batches = [encoded.batch(rng.integers(0, len(encoded), batch_size))
                   for _ in range(steps_per_block + 1)]
        order = (1, num_threads) if block % 2 == 0 else (num_threads, 1)
        for threads in order:
            backend = backends[threads]
            backend.train_step(batches[0], lr)  # untimed
            start = time.perf_counter()
            for batch in batches[1:]:
                backend.train_step(batch, lr)
            times[threads].append((time.perf_counter() - start) * 1e3 / steps_per_block)
        tokens.append(sum(batch.num_tokens for batch in batches[1:]) / steps_per_block)
    return ThreadScaling(config_name, batch_size, num_threads, times[1], times[num_threads],
                         tokens)


def keep_freed_memory(megabytes: int = 256) -> bool:
    """Ask glibc's malloc to keep freed blocks up to `megabytes` instead of returning them.

    Large temporaries (over 128 KiB) are by default mapped fresh from the OS and unmapped when
    freed, so every step page-faults them in again; with bigger batches that costs as much as the
    arithmetic. This raises the mmap and trim thresholds for the whole process (Linux with glibc
    only; returns False elsewhere). Preallocated buffers, as in chapter 5, avoid the issue.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    size = megabytes << 20
    return bool(libc.mallopt(m_mmap_threshold, min(size, 32 << 20))
                and libc.mallopt(m_trim_threshold, size))


def fresh_process_throughput(config_name: str, batch_size: int, steps: int = 15,
                             keep_freed: bool = False) -> Throughput:
    """time_batched_training of the NumPy kernels' backend (float64), in a new Python process.

    malloc's behaviour depends on what the process allocated before (glibc adapts its
    thresholds), so comparing `keep_freed=True` and `False` needs fresh processes.
    """
    code = (
        "import json, sys, dataclasses\n"
        "from microgpt_lib.measure.throughput import keep_freed_memory, time_batched_training\n"
        "from microgpt_lib.rungs.rung4_numpy_kernels.batched_backend import NumpyBackend\n"
        "name, B, steps, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == '1'\n"
        "if keep: keep_freed_memory()\n"
        "t = time_batched_training(lambda c, p, n: NumpyBackend(c, p), name, B, steps)\n"
        "print(json.dumps(dataclasses.asdict(t)))\n"
    )
    args = [config_name, str(batch_size), str(steps), "1" if keep_freed else "0"]
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True,
                         text=True)
    return Throughput(**json.loads(out.stdout.strip().splitlines()[-1]))
