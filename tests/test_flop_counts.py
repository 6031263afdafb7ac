"""The FLOP and byte formulas agree with operations and traffic counted on the NumPy twins."""
import numpy as np
import pytest

from microgpt_lib.config import GPTConfig
from microgpt_lib.measure import flop_counts as fc
from microgpt_lib.measure.op_count import CountedFloat, count_ops
from microgpt_lib.measure.traffic import count_traffic
from microgpt_lib.rungs.rung4_numpy_kernels import layers

N, C, COUT, H, V = 6, 16, 12, 2, 11
rng = np.random.default_rng(0)
X = rng.standard_normal((N, C))


def total(tally) -> int:
    return sum(tally.values())


def test_counted_float_tallies_each_operation_once():
    tally, result = count_ops(lambda a: (a * 2.0 + 1.0).sum(), np.ones(3))
    assert tally == {"mul": 3, "add": 5} and result.value == 9.0
    assert CountedFloat.tally is None  # the counter is off again


def test_matmul_formulas_count_one_multiply_and_one_add_per_term():
    w = rng.standard_normal((COUT, C))
    tally, _ = count_ops(layers.matmul_forward, X, w)
    cost = fc.matmul_forward(N, C, COUT, 8)
    assert tally["mul"] == N * C * COUT
    assert cost.flops - total(tally) == N * COUT  # a dot product of C terms needs C - 1 adds
    dout = rng.standard_normal((N, COUT))
    tally, _ = count_ops(layers.matmul_backward, dout, X, w, np.zeros((COUT, C)))
    assert tally["mul"] == 2 * N * C * COUT
    assert fc.matmul_backward(N, C, COUT, 8).flops - total(tally) == N * C  # first adds of dx


@pytest.mark.parametrize("kernel", ["rmsnorm", "attention", "crossentropy"])
def test_row_kernel_formulas_match_counted_operations_within_a_tenth(kernel):
    if kernel == "rmsnorm":
        _, rstd = layers.rmsnorm_forward(X)
        fwd = count_ops(layers.rmsnorm_forward, X)[0], fc.rmsnorm_forward(N, C, 8)
        # fastops accumulates dx (+=, one add per element); the twin returns a fresh dx
        tally = count_ops(layers.rmsnorm_backward, X, X, rstd)[0]
        tally["add"] += N * C
        bwd = tally, fc.rmsnorm_backward(N, C, 8)
    elif kernel == "attention":
        q, k, v = (rng.standard_normal((N, C)) for _ in range(3))
        _, att = layers.attention_forward(q, k, v, H)
        fwd = (count_ops(lambda *a: layers.attention_forward(*a, H), q, k, v)[0],
               fc.attention_forward([N], C, H, 8, square=True))
        bwd = (count_ops(lambda *a: layers.attention_backward(*a, H), q, q, k, v, att)[0],
               fc.attention_backward([N], C, H, 8, square=True))
    else:
        logits, targets = rng.standard_normal((N, V)), np.arange(N) % V
        _, probs = layers.softmax_crossentropy_forward(logits, targets)
        fwd = (count_ops(layers.softmax_crossentropy_forward, logits, targets)[0],
               fc.softmax_crossentropy_forward(N, V, 8))
        bwd = (count_ops(layers.softmax_crossentropy_backward, probs, targets, np.ones(N) / N)[0],
               fc.softmax_crossentropy_backward(N, V, 8))
    for tally, cost in (fwd, bwd):
        assert abs(total(tally) - cost.flops) <= 0.1 * cost.flops, (tally, cost)


def test_elementwise_formulas_are_exact():
    tokens = np.arange(N) % V
    wte, wpe = rng.standard_normal((V, C)), rng.standard_normal((N, C))
    assert total(count_ops(layers.encoder_forward, tokens, wte, wpe)[0]) == (
        fc.encoder_forward(N, C, 8).flops)
    tally, _ = count_ops(layers.encoder_backward, np.zeros((V, C)), np.zeros((N, C)), X, tokens)
    assert total(tally) == fc.encoder_backward(N, C, 8).flops
    assert total(count_ops(layers.relu_forward, X)[0]) == fc.relu_forward(N * C, 8).flops
    # the twin multiplies by the mask; fastops selects: one comparison per element either way
    assert count_ops(layers.relu_backward, X, X)[0]["compare"] == fc.relu_backward(N * C, 8).flops
    causal = fc.attention_forward([N], C, H, 8)
    assert causal.flops * 2 * N == pytest.approx(
        fc.attention_forward([N], C, H, 8, square=True).flops * (N + 1))


def test_byte_formulas_match_single_pass_kernels_and_bound_the_others():
    w = rng.standard_normal((COUT, C))
    assert count_traffic(layers.matmul_forward, X, w)[0].bytes_moved == (
        fc.matmul_forward(N, C, COUT, 8).bytes)
    assert count_traffic(layers.relu_forward, X)[0].bytes_moved == fc.relu_forward(N * C, 8).bytes
    _, rstd = layers.rmsnorm_forward(X)
    checks = [(count_traffic(layers.rmsnorm_forward, X)[0], fc.rmsnorm_forward(N, C, 8)),
              (count_traffic(layers.rmsnorm_backward, X, X, rstd)[0],
               fc.rmsnorm_backward(N, C, 8))]
    for traffic, cost in checks:  # the twins make temporaries: more traffic than the minimum
        assert traffic.bytes_moved >= cost.bytes - N * C * 8  # (the twin does not accumulate)


def test_step_costs_cover_the_matrix_products_of_chapter_5s_floor():
    config = GPTConfig.preset("e64_L2_b16")
    costs = fc.step_costs(config, [7, 9], itemsize=8)
    matmul = sum(c.flops * c.calls for c in costs if c.kernel.startswith("matmul"))
    weights = sum(r * k for name, (r, k) in config.param_shapes().items()
                  if name not in ("wte", "wpe"))
    assert matmul == 6 * weights * 16  # 2 flops per weight and token forward, 4 backward
    totals = fc.step_totals(costs)
    assert totals["flops"] > matmul and totals["intensity"] == totals["flops"] / totals["bytes"]
    assert fc.step_costs(config, [7], itemsize=4)[0].bytes < costs[0].bytes


def test_step_costs_reject_bad_input():
    config = GPTConfig.preset("e16_L1_b16")
    with pytest.raises(ValueError, match="block_size"):
        fc.step_costs(config, [17])
    with pytest.raises(ValueError, match="block_size"):
        fc.step_costs(config, [])
    with pytest.raises(ValueError, match="itemsize"):
        fc.step_costs(config, [5], itemsize=2)
