"""The roofline picks the right memory level and bound, and times every fastops kernel."""
import math

import numpy as np
import pytest

pytest.importorskip("fastops", reason="fastops is not built (python setup.py build_ext --inplace)")
from microgpt_lib.config import GPTConfig  # noqa: E402
from microgpt_lib.measure import flop_counts as fc  # noqa: E402
from microgpt_lib.measure import roofline as rl  # noqa: E402

ROOFS = rl.Roofs("float64", 1, peak_gflops=100.0, own_peak_gflops=20.0,
                 bandwidth={"L1d": 200.0, "L2": 100.0, "DRAM": 10.0},
                 capacity={"L1d": 32768, "L2": 1 << 20, "DRAM": math.inf})


def test_memory_level_is_the_smallest_that_holds_the_working_set():
    assert ROOFS.memory_level(1000) == "L1d"
    assert ROOFS.memory_level(32769) == "L2"
    assert ROOFS.memory_level(1e9) == "DRAM"
    assert ROOFS.ridge("DRAM") == 10.0 and ROOFS.ridge("L1d") == 0.5


def test_attainable_is_the_lower_roof_and_rows_label_the_bound():
    assert ROOFS.attainable(0.1, 1e9) == pytest.approx(1.0)  # 0.1 FLOP/B x 10 GB/s
    assert ROOFS.attainable(50.0, 1e9) == 100.0  # past the ridge: the peak
    memory = rl.KernelTiming(fc.KernelCost("relu_forward", "mlp", 1e6, 1e8), 0.02)  # DRAM
    compute = rl.KernelTiming(fc.KernelCost("matmul_forward", "fc1", 1e9, 1e4), 0.02)  # L1d
    rows = rl.roofline_rows([memory, compute], ROOFS)
    assert [r["bound"] for r in rows] == ["memory", "compute"]
    assert rows[0]["efficiency"] == pytest.approx(0.05 / 0.1)  # 0.05 of 0.1 GFLOP/s attainable
    assert rows[1]["efficiency"] == pytest.approx(50 / 100)
    assert "| relu_forward | mlp |" in rl.markdown_table(rows)


def test_every_step_kernel_is_timed_on_odd_sizes():
    config = GPTConfig(n_embd=12, n_head=3, n_layer=1, block_size=7, vocab_size=5)
    timings = rl.time_kernels(config, [3, 7, 1], np.float32, min_seconds=1e-4, repeats=1)
    kernels = {t.cost.kernel for t in timings}
    step = {c.kernel for c in fc.step_costs(config, [3, 7, 1])} - {"residual_add"}
    assert kernels == step and all(t.seconds > 0 and t.gflops > 0 for t in timings)
    with pytest.raises(ValueError, match="block_size"):
        rl.time_kernels(config, [8])


def test_step_breakdown_covers_every_kernel_and_sums_its_calls():
    config = GPTConfig(n_embd=12, n_head=3, n_layer=2, block_size=7, vocab_size=5)
    timings = rl.time_kernels(config, [5], np.float64, min_seconds=1e-4, repeats=1)
    rows = rl.step_breakdown(config, [5], timings, ROOFS)
    assert [r["kernel"] for r in rows] == [c.kernel for c in fc.step_costs(config, [5])]
    fc1 = next(r for r in rows if r["role"].startswith("mlp fc1") and "forward" in r["kernel"])
    per_call = next(t for t in timings if t.cost.role == fc1["role"]).seconds * 1e3
    assert fc1["calls"] == 2 and fc1["ms"] == pytest.approx(2 * per_call)
    residual = next(r for r in rows if r["kernel"] == "residual_add")
    assert math.isnan(residual["ms"]) and residual["roof_ms"] > 0
