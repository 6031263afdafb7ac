"""fastops' own matrix-product loops (BLAS off) match NumPy on sizes that do not fit the blocks."""
import numpy as np
import pytest

fastops = pytest.importorskip(
    "fastops", reason="fastops is not built (python setup.py build_ext --inplace)")

# (tokens, inputs, outputs): blocks are 8 tokens x 4 outputs (forward), 4 rows x 8 columns
# (backward), inputs in slabs of 512: every remainder, a single token, and two slabs
SHAPES = [(1, 1, 1), (3, 7, 5), (8, 16, 4), (9, 13, 17), (17, 64, 27), (5, 600, 6), (8, 130, 520),
          (7, 129, 1031)]
TOL = {np.float64: 1e-12, np.float32: 1e-5}


@pytest.fixture
def own_loops():
    threshold = fastops.get_blas_threshold()
    fastops.set_blas_threshold(1 << 62)
    yield
    fastops.set_blas_threshold(threshold)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("N,C,OC", SHAPES)
def test_own_matmul_loops_match_numpy(own_loops, N, C, OC, dtype):
    rng = np.random.default_rng(N * 1000 + C)
    x, w = rng.standard_normal((N, C)), rng.standard_normal((OC, C))
    dout, dw0 = rng.standard_normal((N, OC)), rng.standard_normal((OC, C))
    tol = TOL[dtype] * max(1.0, np.sqrt(C))
    out = fastops.matmul_forward(x.astype(dtype), w.astype(dtype))
    np.testing.assert_allclose(out, x @ w.T, rtol=tol, atol=tol)
    dw = dw0.astype(dtype)
    dx = fastops.matmul_backward(dout.astype(dtype), x.astype(dtype), w.astype(dtype), dw)
    np.testing.assert_allclose(dx, dout @ w, rtol=tol, atol=tol)
    np.testing.assert_allclose(dw, dw0 + dout.T @ x, rtol=tol, atol=tol * max(1.0, np.sqrt(N)))
