"""fastops' two builds of one source: the ISA is picked at import, can be forced, and both agree."""
import os
import subprocess
import sys

import numpy as np
import pytest

fastops = pytest.importorskip("fastops", reason="fastops is not built: run `make build`")
from microgpt_lib.batches import pack_sequences  # noqa: E402
from microgpt_lib.config import GPTConfig  # noqa: E402
from microgpt_lib.params import init_params  # noqa: E402
from microgpt_lib.rungs.rung5_cython.model import FastopsModel  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def isa_in_fresh_process(value: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FASTOPS_ISA": value, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-c", "import fastops; print(fastops.ISA)"],
                          env=env, capture_output=True, text=True)


def test_isa_is_named_and_every_kernel_comes_from_its_module():
    assert fastops.ISA in fastops.ISAS
    assert fastops.kernels.__name__ == f"fastops.{fastops.ISAS[fastops.ISA]}"
    assert fastops.train_step is fastops.kernels.train_step
    if fastops.ISA == "x86-64-v3":
        assert fastops.cpu_has_x86_64_v3()


def test_baseline_can_be_forced_and_bad_values_are_rejected():
    forced = isa_in_fresh_process("baseline")
    assert forced.returncode == 0 and forced.stdout.strip() == "baseline"
    bad = isa_in_fresh_process("avx9000")
    assert bad.returncode != 0 and "use one of auto, baseline, x86-64-v3" in bad.stderr


def test_both_builds_train_alike():
    """Same losses and weights after 5 float64 steps (FMA rounds once where SSE2 rounds twice)."""
    if not fastops.cpu_has_x86_64_v3():
        pytest.skip("this CPU has no x86-64-v3")
    try:
        from fastops import _gpt, _gpt_v3
    except ImportError:
        pytest.skip("setup.py built no _gpt_v3 here")
    config = GPTConfig.preset("e16_L1_b16")
    docs = [[26, 3, 1, 14, 5, 26], [26, 0, 11, 26], [26, 9, 7, 4, 20, 19, 8, 26]] * 2
    results = []
    for module in (_gpt, _gpt_v3):
        model = FastopsModel(config, init_params(config, seed=3))
        start = model.params.data.copy()
        model._train_step = module.train_step["double"]
        losses = [model.train_step(*pack_sequences([doc], config.block_size), lr=0.01) for doc in docs[:5]]
        assert not np.array_equal(model.params.data, start)
        results.append((np.array(losses), model.params.data.copy()))
    (loss_a, w_a), (loss_b, w_b) = results
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-12)
    np.testing.assert_allclose(w_a, w_b, rtol=0, atol=1e-12)
