"""The single-sequence floor: what it counts, and that it grows with the model."""
from microgpt_lib.config import GPTConfig
from microgpt_lib.measure import floors


def test_matmul_weights_leave_out_the_lookup_tables():
    config = GPTConfig.preset("e16_L1_b16")
    assert floors.matmul_weights(config) == 27 * 16 + 12 * 16 * 16  # lm_head + one layer
    assert floors.matmul_weights(config) == config.num_params - 27 * 16 - 16 * 16


def test_floor_is_the_sum_of_its_parts_and_grows_with_size():
    peak = floors.float64_peak_gflops(n=256, repeats=1)
    assert peak > 0.1
    small = floors.step_floor_ms(GPTConfig.preset("e16_L1_b16"), 7.0, peak)
    large = floors.step_floor_ms(GPTConfig.preset("e64_L2_b16"), 7.0, peak)
    for f in (small, large):
        assert f["floor_ms"] == f["matmul_ms"] + f["adamw_ms"] and f["adamw_ms"] > 0
    assert large["matmul_ms"] > 20 * small["matmul_ms"]  # 100,032 vs 3,504 weights in products
