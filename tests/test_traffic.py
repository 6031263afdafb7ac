"""The traffic counter counts passes, temporaries and bytes of NumPy code as documented."""
import numpy as np

from microgpt_lib.config import GPTConfig
from microgpt_lib.flat_params import FlatParams
from microgpt_lib.measure.traffic import count_traffic, counted_flat


def test_traffic_counts_temporaries_but_not_in_place_updates():
    x = np.ones(100)
    traffic, result = count_traffic(lambda a: a * 2.0 + 1.0, x)
    assert (traffic.passes, traffic.temporaries) == (2, 2)
    assert traffic.bytes_allocated == 2 * x.nbytes and np.all(result == 3.0)

    def in_place(a):
        a += 1.0
        np.multiply(a, 2.0, out=a)

    traffic, _ = count_traffic(in_place, x)
    assert (traffic.passes, traffic.temporaries, traffic.bytes_allocated) == (2, 0, 0)
    assert np.all(x == 4.0)  # the counted view shares memory with x


def test_traffic_counts_reductions_matmul_and_array_functions():
    a = np.ones((4, 3))
    traffic, _ = count_traffic(lambda m: np.concatenate([m.sum(axis=1), (m @ m.T).ravel()]), a)
    assert traffic.passes == 3 and traffic.temporaries == 3


def test_counted_flat_shares_memory_and_views():
    flat = FlatParams(GPTConfig.preset("e16_L1_b8"))
    counted = counted_flat(flat)
    traffic, _ = count_traffic(lambda: counted["wte"].__iadd__(1.0))
    assert traffic.passes == 1 and flat["wte"].min() == 1.0 and flat["wpe"].max() == 0.0
