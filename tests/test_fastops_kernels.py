"""Each fastops kernel against its NumPy twin in chapter 4's microgpt_lib.rungs.rung4_numpy_kernels.layers, on odd sizes."""
import numpy as np
import pytest

fastops = pytest.importorskip(
    "fastops", reason="fastops is not built (python setup.py build_ext --inplace)")
layers = pytest.importorskip(
    "microgpt_lib.rungs.rung4_numpy_kernels.layers", reason="chapter 4's microgpt_lib.rungs.rung4_numpy_kernels.layers is not merged into this branch")

# (T, C, n_head, Cout, V): sizes that do not divide a vector width, and one sequence of length 1
SHAPES = [(7, 10, 2, 13, 11), (1, 12, 3, 5, 4), (16, 64, 4, 256, 27)]
TOL = {np.float64: 1e-12, np.float32: 2e-5}


def close(a, b, dtype) -> bool:
    return np.allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.fixture(params=[np.float64, np.float32], ids=["float64", "float32"])
def dtype(request):
    return request.param


@pytest.mark.parametrize("T,C,H,Cout,V", SHAPES)
def test_matmul_kernels_match_numpy(T, C, H, Cout, V, dtype):
    rng = np.random.default_rng(T * C)
    x, w = rng.standard_normal((T, C)).astype(dtype), rng.standard_normal((Cout, C)).astype(dtype)
    dout = rng.standard_normal((T, Cout)).astype(dtype)
    assert close(fastops.matmul_forward(x, w), layers.matmul_forward(x, w), dtype)
    dw_c, dw_n = np.ones_like(w), np.ones_like(w)
    dx_c = fastops.matmul_backward(dout, x, w, dw_c)
    dx_n = layers.matmul_backward(dout, x, w, dw_n)
    assert close(dx_c, dx_n, dtype) and close(dw_c, dw_n, dtype)


@pytest.mark.parametrize("T,C,H,Cout,V", SHAPES)
def test_rmsnorm_and_relu_kernels_match_numpy(T, C, H, Cout, V, dtype):
    rng = np.random.default_rng(C)
    x, dout = (rng.standard_normal((T, C)).astype(dtype) for _ in range(2))
    out_c, rstd_c = fastops.rmsnorm_forward(x)
    out_n, rstd_n = layers.rmsnorm_forward(x)
    assert close(out_c, out_n, dtype) and close(rstd_c, rstd_n, dtype)
    assert close(fastops.rmsnorm_backward(dout, x, rstd_c),
                 layers.rmsnorm_backward(dout, x, rstd_n), dtype)
    r = fastops.relu_forward(x.ravel())
    assert close(r, layers.relu_forward(x).ravel(), dtype)
    assert close(fastops.relu_backward(dout.ravel(), r),
                 layers.relu_backward(dout, layers.relu_forward(x)).ravel(), dtype)


@pytest.mark.parametrize("T,C,H,Cout,V", SHAPES)
def test_attention_kernels_match_numpy(T, C, H, Cout, V, dtype):
    rng = np.random.default_rng(H + T)
    q, k, v, dout = (rng.standard_normal((T, C)).astype(dtype) for _ in range(4))
    out_c, att_c = fastops.attention_forward(q, k, v, H)
    out_n, att_n = layers.attention_forward(q, k, v, H)
    assert close(out_c, out_n, dtype) and close(att_c, att_n, dtype)
    for got, want in zip(fastops.attention_backward(dout, q, k, v, att_c, H),
                         layers.attention_backward(dout, q, k, v, att_n, H)):
        assert close(got, want, dtype)


@pytest.mark.parametrize("T,C,H,Cout,V", SHAPES + [(64, 128, 4, 512, 65)])
def test_blas_attention_kernels_match_numpy(T, C, H, Cout, V, dtype):
    from fastops.blas import disable_blas, enable_numpy_blas
    if enable_numpy_blas(threshold=1 << 62, attention_threshold=0) is None:
        pytest.skip("NumPy's bundled OpenBLAS was not found")
    try:
        rng = np.random.default_rng(H * T)
        q, k, v, dout = (rng.standard_normal((T, C)).astype(dtype) for _ in range(4))
        out_c, att_c = fastops.attention_forward(q, k, v, H)
        grads_c = fastops.attention_backward(dout, q, k, v, att_c, H)
    finally:
        disable_blas()
    out_n, att_n = layers.attention_forward(q, k, v, H)
    assert close(out_c, out_n, dtype) and close(att_c, att_n, dtype)
    for got, want in zip(grads_c, layers.attention_backward(dout, q, k, v, att_n, H)):
        assert close(got, want, dtype)


@pytest.mark.parametrize("T,C,H,Cout,V", SHAPES)
def test_encoder_and_crossentropy_kernels_match_numpy(T, C, H, Cout, V, dtype):
    rng = np.random.default_rng(V)
    tokens = rng.integers(0, V, T).astype(np.int64)
    wte = rng.standard_normal((V, C)).astype(dtype)
    wpe = rng.standard_normal((T + 2, C)).astype(dtype)
    assert close(fastops.encoder_forward(tokens, wte, wpe),
                 layers.encoder_forward(tokens, wte, wpe), dtype)
    dx = rng.standard_normal((T, C)).astype(dtype)
    grads_c = [np.zeros_like(wte), np.zeros_like(wpe)]
    grads_n = [np.zeros_like(wte), np.zeros_like(wpe)]
    fastops.encoder_backward(*grads_c, dx, tokens)
    layers.encoder_backward(*grads_n, dx, tokens)
    assert all(close(a, b, dtype) for a, b in zip(grads_c, grads_n))
    logits = rng.standard_normal((T, V)).astype(dtype)
    losses_c, probs_c = fastops.softmax_crossentropy_forward(logits, tokens)
    losses_n, probs_n = layers.softmax_crossentropy_forward(logits, tokens)
    assert close(losses_c, losses_n, dtype) and close(probs_c, probs_n, dtype)
    dlosses = rng.random(T).astype(dtype)
    assert close(fastops.softmax_crossentropy_backward(probs_c, tokens, dlosses),
                 layers.softmax_crossentropy_backward(probs_n, tokens, dlosses), dtype)


@pytest.mark.parametrize("V", [1, 7, 8, 9, 17, 65])
def test_float32_crossentropy_matches_float64_at_any_width_and_extreme_logits(V):
    """float32 takes exp on whole vectors (a tail shorter than a vector included) and its loss
    from the log of the sum: a target whose probability rounds to zero still gets a finite,
    correct loss."""
    rng = np.random.default_rng(V)
    logits = rng.standard_normal((5, V)) * np.array([[1.0], [10.0], [50.0], [100.0], [200.0]])
    targets = np.array([0, V - 1, V // 2, 0, V - 1], dtype=np.int64)
    losses32, probs32 = fastops.softmax_crossentropy_forward(logits.astype(np.float32), targets)
    losses64, probs64 = fastops.softmax_crossentropy_forward(
        logits.astype(np.float32).astype(np.float64), targets)
    assert np.all(np.isfinite(losses32))
    assert np.allclose(losses32, losses64, rtol=1e-5, atol=1e-5)
    assert np.allclose(probs32, probs64, rtol=1e-5, atol=1e-30)
    assert np.allclose(probs32.sum(axis=1), 1.0, atol=1e-6)
