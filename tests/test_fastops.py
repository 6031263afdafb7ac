"""fastops' optimiser against its NumPy reference, and the message of an unbuilt fastops."""
import numpy as np
import pytest

fastops = pytest.importorskip("fastops", reason="fastops is not built: run `make build`")
from microgpt_lib.optim import BETA1, BETA2, EPS, adam_update_numpy  # noqa: E402


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-13), (np.float32, 1e-6)])
@pytest.mark.parametrize("n", [1, 7, 4192])
def test_adamw_update_without_decay_matches_numpy_adam(dtype, tol, n):
    rng = np.random.default_rng(n)
    state = [rng.standard_normal(n).astype(dtype) for _ in range(4)]
    state[3] = np.abs(state[3])  # v is non-negative
    ref = [a.copy() for a in state]
    for t in (1, 2, 3):
        grads = rng.standard_normal(n).astype(dtype)
        p, g, m, v = state
        g[...] = grads
        norm = fastops.adamw_update(p, g, m, v, t, 0.01, BETA1, BETA2, EPS)
        assert np.isclose(norm, np.linalg.norm(grads), rtol=tol)
        assert np.array_equal(g, grads)  # adamw_update keeps the gradient
        rp, rg, rm, rv = ref
        rg[...] = grads
        adam_update_numpy(rp, rg, rm, rv, t, 0.01)
        for i in (0, 2, 3):  # params, m, v (the reference also zeroes its gradient)
            np.testing.assert_allclose(state[i], ref[i], rtol=tol, atol=tol)


def test_adamw_update_decays_and_clips_like_pytorch():
    """p <- p * (1 - lr*wd), then Adam on the gradient scaled to norm clip_norm (plus 1e-6)."""
    rng = np.random.default_rng(5)
    p, g = rng.standard_normal(50), 3 * rng.standard_normal(50)
    m, v = np.zeros(50), np.zeros(50)
    lr, wd, clip = 0.01, 0.1, 1.0
    want, gs = p * (1 - lr * wd), g * clip / (np.linalg.norm(g) + 1e-6)
    m_ref, v_ref = (1 - BETA1) * gs, (1 - BETA2) * gs * gs
    want -= lr * (m_ref / (1 - BETA1)) / (np.sqrt(v_ref / (1 - BETA2)) + EPS)
    fastops.adamw_update(p, g, m, v, 1, lr, BETA1, BETA2, EPS, wd, clip)
    np.testing.assert_allclose(p, want, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(m, m_ref, rtol=1e-13)


def test_adamw_update_rejects_mismatched_lengths():
    a, b = np.zeros(3), np.zeros(4)
    with pytest.raises(ValueError, match="one length"):
        fastops.adamw_update(a, a.copy(), a.copy(), b, 1, 0.01, 0.85, 0.99, 1e-8)


def test_adamw_update_rejects_wrong_dtype_and_non_contiguous():
    with pytest.raises((TypeError, ValueError)):
        fastops.adamw_update(*(np.zeros(3, dtype=np.int64) for _ in range(4)), 1, 0.01, 0.85,
                             0.99, 1e-8)
    strided = np.zeros(6)[::2]
    with pytest.raises(ValueError):
        fastops.adamw_update(strided, *(np.zeros(3) for _ in range(3)), 1, 0.01, 0.85, 0.99, 1e-8)


def test_unbuilt_fastops_says_how_to_build_it(tmp_path):
    """A copy of the package without its compiled modules raises an ImportError naming the fix."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    source = Path(fastops.__file__).parent
    shutil.copytree(source, tmp_path / "fastops",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "*.html"))
    # -S: no site-packages, so an editable install's import hook cannot find the real build.
    result = subprocess.run([sys.executable, "-S", "-c", "import fastops"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "fastops is not built" in result.stderr and "make build" in result.stderr


def test_a_step_on_two_threads_gives_openblas_its_thread_count_back():
    """A multi-threaded step runs OpenBLAS on one thread (one layer of threads) and restores
    OpenBLAS' own setting afterwards, whatever it was."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from microgpt_lib.config import GPTConfig
    from microgpt_lib.params import init_params
    from microgpt_lib.rungs.rung5_cython.model import FastopsModel

    was_on = fastops.blas_library() is not None  # an earlier test may have switched BLAS off
    if not was_on and fastops.blas.enable_numpy_blas() is None:
        pytest.skip("fastops found no OpenBLAS in NumPy")
    config = GPTConfig(64, 4, 1, 64, 20)
    model = FastopsModel(config, init_params(config), np.float32, num_threads=2)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 20, 256)
    cu = np.arange(0, 257, 64)
    try:
        for setting in (3, 1, 2):
            with threadpoolctl.threadpool_limits(setting, user_api="blas"):
                loss = model.train_step(tokens, np.roll(tokens, -1), cu, 1e-3)
                assert np.isfinite(loss)
                counts = {p["num_threads"] for p in threadpoolctl.threadpool_info()
                          if p["filepath"] == fastops.blas_library()}
                assert counts == {setting}
    finally:
        if not was_on:
            fastops.blas.disable_blas()
