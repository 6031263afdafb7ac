"""fastops' own attention kernels (register tiles of the causal triangle, or plain loops for the
shortest sequences; not BLAS) against a NumPy reference, on sizes that do not fill a tile or a
vector: every T near the tile and vector edges, head sizes 1, 3 and 32, float32 and float64, one
head and several (the backward's tiles take T >= 10, the float64 forward's T >= 8, the float32
forward's every T; shorter sequences run in the loops)."""
import numpy as np
import pytest

fastops = pytest.importorskip(
    "fastops", reason="fastops is not built (python setup.py build_ext --inplace)")

TOL = {np.float64: 1e-12, np.float32: 2e-5}


def reference(q, k, v, dout, H):
    """out, att (H, T, T) and dq, dk, dv of causal attention, in float64 NumPy."""
    q, k, v, dout = (x.astype(np.float64) for x in (q, k, v, dout))
    T, C = q.shape
    hd = C // H
    out, att = np.zeros((T, C)), np.zeros((H, T, T))
    dq, dk, dv = np.zeros((T, C)), np.zeros((T, C)), np.zeros((T, C))
    above = np.triu(np.ones((T, T), dtype=bool), 1)
    for h in range(H):
        cols = slice(h * hd, (h + 1) * hd)
        s = np.where(above, -np.inf, q[:, cols] @ k[:, cols].T / np.sqrt(hd))
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        att[h], out[:, cols] = p, p @ v[:, cols]
        dp = dout[:, cols] @ v[:, cols].T
        ds = p * (dp - (p * dp).sum(axis=1, keepdims=True)) / np.sqrt(hd)
        dq[:, cols], dk[:, cols], dv[:, cols] = ds @ k[:, cols], ds.T @ q[:, cols], p.T @ dout[:, cols]
    return out, att, dq, dk, dv


@pytest.fixture
def own_kernels():
    """Attention in fastops' own tiles whatever the BLAS settings; restored afterwards."""
    before = fastops.get_attention_blas_threshold()
    fastops.set_attention_blas_threshold(2**62)
    yield
    fastops.set_attention_blas_threshold(before)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("hd", [1, 3, 32])
@pytest.mark.parametrize("T", [1, 2, 3, 7, 8, 10, 17, 63, 64, 65])
@pytest.mark.parametrize("H", [1, 3])
def test_own_attention_matches_reference(T, hd, H, dtype, own_kernels):
    rng = np.random.default_rng(T * 100 + hd * 10 + H)
    q, k, v, dout = (rng.standard_normal((T, H * hd)).astype(dtype) for _ in range(4))
    out, att = fastops.attention_forward(q, k, v, H)
    dq, dk, dv = fastops.attention_backward(dout, q, k, v, att, H)
    for got, want in zip((out, att, dq, dk, dv), reference(q, k, v, dout, H)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])


def test_own_attention_backward_reads_only_the_triangle(own_kernels):
    """Numbers above att's diagonal (which the forward writes as zeros) change nothing."""
    rng = np.random.default_rng(7)
    q, k, v, dout = (rng.standard_normal((19, 6)) for _ in range(4))
    _, att = fastops.attention_forward(q, k, v, 2)
    noisy = att + np.triu(rng.standard_normal(att.shape), 1)
    for clean, dirty in zip(fastops.attention_backward(dout, q, k, v, att, 2),
                            fastops.attention_backward(dout, q, k, v, noisy, 2)):
        np.testing.assert_array_equal(clean, dirty)
