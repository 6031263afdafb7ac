"""fastops.attention_forward/attention_backward over a packed batch (cu_seqlens, as the training
step calls the kernel) against one call per sequence: sequences of mixed lengths, empty ones
included, and bad sequence boundaries rejected with clear errors."""
import numpy as np
import pytest

fastops = pytest.importorskip(
    "fastops", reason="fastops is not built (python setup.py build_ext --inplace)")


def packed_inputs(lens, C, dtype, seed=0):
    rng = np.random.default_rng(seed)
    N = sum(lens)
    q, k, v, dout = (rng.standard_normal((N, C)).astype(dtype) for _ in range(4))
    return q, k, v, dout, np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("lens, C, H", [([1, 5, 64, 17, 0, 8, 33], 12, 4), ([64] * 3, 128, 4),
                                         ([7, 1, 9], 3, 1), ([13], 64, 2)])
def test_packed_equals_one_call_per_sequence(lens, C, H, dtype):
    q, k, v, dout, cu = packed_inputs(lens, C, dtype)
    out, att = fastops.attention_forward(q, k, v, H, cu)
    dq, dk, dv = fastops.attention_backward(dout, q, k, v, att, H, cu)
    T = max(lens)
    assert out.shape == (len(q), C) and att.shape == (len(q), H, T)
    for b, L in enumerate(lens):
        if L == 0:
            continue
        rows = slice(cu[b], cu[b + 1])
        out1, att1 = fastops.attention_forward(q[rows], k[rows], v[rows], H)
        grads1 = fastops.attention_backward(dout[rows], q[rows], k[rows], v[rows], att1, H)
        np.testing.assert_array_equal(out[rows], out1)
        np.testing.assert_array_equal(att[rows, :, :L], att1.transpose(1, 0, 2))
        assert not att[rows, :, L:].any()  # columns past a shorter sequence stay zero
        for got, want in zip((dq, dk, dv), grads1):
            np.testing.assert_array_equal(got[rows], want)


@pytest.mark.parametrize("cu, message", [([1, 10], "start at 0"), ([0, 6, 4, 10], "decreases"),
                                         ([0, 4, 9], "end at 10"), ([0], "two entries"),
                                         ([0, 4, 12], "end at 10")])
def test_bad_sequence_boundaries_are_rejected(cu, message):
    q, k, v, dout, _ = packed_inputs([10], 8, np.float64)
    with pytest.raises(ValueError, match=message):
        fastops.attention_forward(q, k, v, 2, np.array(cu))
    att = np.zeros((10, 2, 10))
    with pytest.raises(ValueError, match=message):
        fastops.attention_backward(dout, q, k, v, att, 2, np.array(cu))


def test_packed_backward_checks_att_shape():
    q, k, v, dout, cu = packed_inputs([3, 5], 8, np.float64)
    _, att = fastops.attention_forward(q, k, v, 2, cu)
    with pytest.raises(ValueError, match="att must be"):
        fastops.attention_backward(dout, q, k, v, att[:, :, :4].copy(), 2, cu)
    with pytest.raises(ValueError, match="att must be"):  # the single-sequence layout
        fastops.attention_backward(dout, q, k, v, np.zeros((2, 8, 8)), 2, cu)
