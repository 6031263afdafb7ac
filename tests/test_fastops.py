"""fastops kernels against their NumPy references."""
import numpy as np
import pytest

fastops = pytest.importorskip("fastops", reason="fastops is not built: run `make build`")
from microgpt_lib.optim import adam_update_numpy  # noqa: E402


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-15), (np.float32, 1e-6)])
@pytest.mark.parametrize("n", [1, 7, 4192])
def test_adam_update_matches_numpy(dtype, tol, n):
    rng = np.random.default_rng(n)
    state = [rng.standard_normal(n).astype(dtype) for _ in range(4)]
    state[3] = np.abs(state[3])  # v is non-negative
    ref = [a.copy() for a in state]
    for t in (1, 2, 3):
        grads = rng.standard_normal(n).astype(dtype)
        p, g, m, v = state
        g[...] = grads
        fastops.adam_update(p, g, m, v, t, 0.01, 0.85, 0.99, 1e-8)
        rp, rg, rm, rv = ref
        rg[...] = grads
        adam_update_numpy(rp, rg, rm, rv, t, 0.01)
        for a, b in zip(state, ref):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
        assert not g.any()


def test_adam_update_rejects_mismatched_lengths():
    a, b = np.zeros(3), np.zeros(4)
    with pytest.raises(ValueError, match="one length"):
        fastops.adam_update(a, a.copy(), a.copy(), b, 1, 0.01, 0.85, 0.99, 1e-8)


def test_adam_update_rejects_wrong_dtype_and_non_contiguous():
    with pytest.raises((TypeError, ValueError)):
        fastops.adam_update(*(np.zeros(3, dtype=np.int64) for _ in range(4)), 1, 0.01, 0.85, 0.99, 1e-8)
    strided = np.zeros(6)[::2]
    with pytest.raises(ValueError):
        fastops.adam_update(strided, *(np.zeros(3) for _ in range(3)), 1, 0.01, 0.85, 0.99, 1e-8)


def test_unbuilt_fastops_says_how_to_build_it(tmp_path):
    """A copy of the package without its compiled modules raises an ImportError naming the fix."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    source = Path(fastops.__file__).parent
    shutil.copytree(source, tmp_path / "fastops", ignore=shutil.ignore_patterns("*.so", "*.c", "*.html"))
    # -S: no site-packages, so an editable install's import hook cannot find the real build.
    result = subprocess.run([sys.executable, "-S", "-c", "import fastops"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "fastops is not built" in result.stderr and "make build" in result.stderr
