"""What the cyclic garbage collector costs a rung's training step, step by step (chapter 2).

`gc_profile_training` trains like the benchmark harness's `time_training` while
`measure.gc_stats.GCRecorder` times every collection, so each step's wall time can be split into
the collector's part and the rest.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field

from microgpt_lib.measure.bench import build_model, rung_label
from microgpt_lib.measure.gc_stats import GCRecorder


@dataclass
class GCProfile:
    """Per-step wall time and the part of it the cyclic GC took, with collection counts."""

    rung: str
    config: str
    step_ms: list[float]
    gc_ms: list[float]
    collections: dict[int, int]  # generation -> number of collections over all steps
    objects_collected: int
    tracked_after: list[int] = field(default_factory=list)  # len(gc.get_objects()) after steps

    @property
    def gc_share(self) -> float:
        """Fraction of all step time spent in the collector."""
        return sum(self.gc_ms) / sum(self.step_ms)


def gc_profile_training(
    rung: str, config_name: str, steps: int = 30, warmup: int = 3, max_seconds: float = 60.0,
    lr: float = 0.01, track_heap: bool = False,
) -> GCProfile:
    """Train like time_training while `gc.callbacks` time every collection, step by step.

    With track_heap, also count the objects the GC tracks after each step (outside the timing).
    """
    model, docs, tok = build_model(rung, config_name)
    encoded = [tok.encode_doc(d) for d in docs[: warmup + steps]]
    for tokens in encoded[:warmup]:
        model.train_step(tokens, lr)
    step_ms, gc_ms, tracked, start = [], [], [], time.perf_counter()
    with GCRecorder() as recorder:
        for tokens in encoded[warmup:]:
            before = recorder.total_ms()
            t0 = time.perf_counter()
            model.train_step(tokens, lr)
            step_ms.append((time.perf_counter() - t0) * 1e3)
            gc_ms.append(recorder.total_ms() - before)
            if track_heap:
                tracked.append(len(gc.get_objects()))
            if len(step_ms) >= 3 and time.perf_counter() - start > max_seconds:
                break
    counts = {g: recorder.count(g) for g in range(3)}
    return GCProfile(rung_label(rung), config_name, step_ms, gc_ms, counts, recorder.collected(),
                     tracked)
