"""fastops under the input a careful user tries: a clear exception, never a crash, no buffer changed.

Each case runs in a fresh process (this file, run as a script with the case's name), so that a
crash fails its test instead of ending the test session.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# e16_L1_b16 on 27 characters: n_embd, n_head, n_layer, vocab_size, block_size
SIZES = (16, 4, 1, 27, 16)


def run_case(name: str, env: dict[str, str] | None = None) -> str:
    """Run case_<name> below in a fresh Python; fail on a crash or a failed assertion."""
    done = subprocess.run([sys.executable, __file__, name], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT, **(env or {})}, timeout=120)
    if done.returncode < 0:
        pytest.fail(f"case {name} crashed the process (signal {-done.returncode}):\n"
                    f"{done.stderr[-2000:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Model:
    """Buffers for one fastops model, and a valid packed batch of two sequences."""

    def __init__(self, dtype=np.float64) -> None:
        import fastops

        C, NH, L, V, block = SIZES
        size = fastops.param_layout(C, L, V, block)["layer0.mlp_fc2"]
        n = size[0] + size[1][0] * size[1][1]
        rng = np.random.default_rng(0)
        self.params = (0.1 * rng.standard_normal(n)).astype(dtype)
        self.grads, self.m, self.v = (np.zeros(n, dtype) for _ in range(3))
        self.tokens = rng.integers(0, V, 12).astype(np.int64)
        self.targets = rng.integers(0, V, 12).astype(np.int64)
        self.cu = np.array([0, 5, 12], dtype=np.int64)
        self.acts = np.zeros(fastops.workspace_size(12, 2, *SIZES), dtype)

    def state(self) -> list[np.ndarray]:
        return [a.copy() for a in (self.params, self.grads, self.m, self.v)]

    def unchanged_since(self, before: list[np.ndarray]) -> bool:
        return all(np.array_equal(a, b) for a, b in zip(before, self.state()))

    def train_step(self, **change):
        """fastops.train_step with these arguments replaced (by name)."""
        import fastops

        args = dict(params=self.params, grads=self.grads, m=self.m, v=self.v, acts=self.acts,
                    tokens=self.tokens, targets=self.targets, cu_seqlens=self.cu,
                    n_embd=SIZES[0], n_head=SIZES[1], n_layer=SIZES[2], vocab_size=SIZES[3],
                    block_size=SIZES[4], t=1, lr=0.01, beta1=0.85, beta2=0.99, eps=1e-8,
                    weight_decay=0.0, clip_norm=0.0, num_threads=1)
        args.update(change)
        return fastops.train_step(*args.values())

    def gpt_loss(self, **change):
        import fastops

        args = dict(params=self.params, grads=self.grads, acts=self.acts, tokens=self.tokens,
                    targets=self.targets, cu_seqlens=self.cu, n_embd=SIZES[0],
                    n_head=SIZES[1], n_layer=SIZES[2], vocab_size=SIZES[3],
                    block_size=SIZES[4], backward=True, num_threads=1)
        args.update(change)
        return fastops.gpt_loss(*args.values())


def rejected(call, match: str, model: Model, exception=ValueError) -> None:
    """call() raises `exception` matching `match` and leaves the model's buffers bit-identical."""
    before = model.state()
    try:
        call()
    except exception as err:
        assert match in str(err), f"{match!r} not in {err!r}"
    else:
        raise AssertionError(f"accepted: expected {exception.__name__} with {match!r}")
    assert model.unchanged_since(before), f"a call rejected with {match!r} changed a buffer"


# ----------------------------------------------------------------------------------------------
# The cases, each run in its own process by the tests at the end.

def case_sizes_past_32_bits() -> None:
    """n_embd 32768 once wrapped the parameter count in 32 bits (a too-small buffer passed);
    block_size 2**31-1 made the workspace size negative (a 16-element workspace passed)."""
    import fastops

    model = Model()
    wide = dict(n_embd=32768, n_head=4)
    rejected(lambda: model.gpt_loss(**wide), "parameter buffer", model)
    rejected(lambda: model.train_step(**wide), "parameter buffer", model)
    assert fastops.param_layout(32768, 1, 27, 16)["layer0.mlp_fc2"][0] > 2**31
    long = dict(block_size=2**31 - 1, acts=np.zeros(16))
    rejected(lambda: model.gpt_loss(**long), "2**63-1", model, OverflowError)
    rejected(lambda: model.train_step(**long), "2**63-1", model, OverflowError)
    with pytest.raises(OverflowError, match="2\\*\\*63-1"):
        fastops.workspace_size(12, 2, 16, 4, 1, 27, 2**31 - 1)
    with pytest.raises(OverflowError, match="2\\*\\*63-1"):
        fastops.param_layout(2**40, 1, 27, 16)
    with pytest.raises(OverflowError):  # does not fit the 64-bit argument at all
        fastops.workspace_size(2**64, 1, 16, 4, 1, 27, 16)
    for bad in (dict(n_embd=0), dict(n_head=3), dict(n_layer=-1), dict(vocab_size=0)):
        rejected(lambda: model.train_step(**bad), "bad model sizes", model)


def case_thread_counts() -> None:
    """0 or negative threads once meant 1; 5000 made libgomp end the process."""
    import fastops

    model = Model()
    for n in (0, -1, 5000, fastops.MAX_THREADS + 1):
        rejected(lambda: model.train_step(num_threads=n), "num_threads", model)
        rejected(lambda: model.gpt_loss(num_threads=n), "num_threads", model)
    saved = fastops.get_parallel_threshold()
    fastops.set_parallel_threshold(0)  # every kernel that can use threads does
    assert np.isfinite(model.gpt_loss(num_threads=fastops.MAX_THREADS))
    fastops.set_parallel_threshold(saved)
    for setter in (fastops.set_parallel_threshold, fastops.set_blas_threshold,
                   fastops.set_attention_blas_threshold):
        with pytest.raises(ValueError, match="multiply-adds"):
            setter(-1)
    with pytest.raises(ValueError, match="tokens"):
        fastops.set_blas_min_tokens(-1)


def case_tokens_must_be_integers() -> None:
    """Float token ids are rejected, never truncated (1.9 -> 1); so are other integer widths."""
    model = Model()
    for dtype in (np.float64, np.float32, np.int32):
        rejected(lambda: model.train_step(tokens=model.tokens.astype(dtype)), "dtype", model)
        rejected(lambda: model.gpt_loss(targets=model.targets.astype(dtype)), "dtype", model)
        rejected(lambda: model.train_step(cu_seqlens=model.cu.astype(dtype)), "dtype", model)


def case_rejected_calls_change_nothing() -> None:
    """Every check runs before the first write: params, grads, m and v stay bit-identical."""
    model = Model()
    model.train_step()  # a real step first, so that m and v are not all zeros
    n = model.params.shape[0]
    shared = np.zeros(n + model.acts.shape[0])
    last = model.tokens.copy()
    last[-1] = SIZES[3]  # the very last token is out of the vocabulary
    cases = [
        (dict(tokens=last), "outside the vocabulary"),
        (dict(targets=-model.targets), "outside the vocabulary"),
        (dict(cu_seqlens=np.array([0, 7, 12])), None),  # valid: two sequences, other split
        (dict(cu_seqlens=np.array([0, 12, 12])), "1..block_size"),
        (dict(cu_seqlens=np.array([0, 13, 12])), "1..block_size"),
        (dict(cu_seqlens=np.array([0, -2**63, 12])), "1..block_size"),
        (dict(cu_seqlens=np.array([1, 5, 12])), "cu_seqlens"),
        (dict(cu_seqlens=np.array([0])), "no tokens"),
        (dict(targets=model.targets[:-1]), "differ in length"),
        (dict(acts=model.acts[:-1]), "workspace"),
        (dict(t=0), "step count"),
        (dict(lr=float("nan")), "lr"),
        (dict(lr=-0.01), "lr"),
        (dict(beta1=1.0), "betas"),
        (dict(beta2=float("nan")), "betas"),
        (dict(eps=0.0), "eps"),
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(clip_norm=float("inf")), "clip_norm"),
        (dict(grads=model.params), "share memory"),
        (dict(m=shared[:n], acts=shared[n - 1 :]), "share memory"),  # one overlapping element
        (dict(v=model.grads[::-1]), "contiguous"),
        (dict(m=model.m[:-1]), "one length"),
        (dict(params=model.params.astype(np.float32)), "mismatch"),
    ]
    for change, match in cases:
        if match is None:
            model.train_step(**{k: np.asarray(v, dtype=np.int64) for k, v in change.items()})
        else:
            change = {k: (np.asarray(v, dtype=np.int64) if k == "cu_seqlens" else v)
                      for k, v in change.items()}
            rejected(lambda: model.train_step(**change), match, model,
                     (ValueError, TypeError) if match in ("contiguous", "mismatch") else ValueError)
    before = model.state()
    import fastops

    for bad in (dict(t=0), dict(eps=-1.0), dict(clip_norm=-1.0)):
        args = dict(t=1, eps=1e-8, clip_norm=0.0)
        args.update(bad)
        with pytest.raises(ValueError):
            fastops.adamw_update(model.params, model.grads, model.m, model.v, args["t"], 0.01,
                                 0.85, 0.99, args["eps"], 0.0, args["clip_norm"])
    assert model.unchanged_since(before)


def case_blas_is_registered_by_default() -> None:
    import fastops

    assert fastops.blas_library() == fastops.kernels.numpy_openblas_path()
    if fastops.blas_library() is not None:
        assert fastops.get_blas_threshold() == fastops.blas.DEFAULT_THRESHOLD
        assert fastops.get_blas_min_tokens() == fastops.blas.DEFAULT_MIN_TOKENS
    print(fastops.blas_library())


def case_blas_can_be_switched_off() -> None:
    import fastops

    assert fastops.blas_library() is None  # FASTOPS_BLAS=0
    model = Model()
    loops = model.gpt_loss()
    if fastops.blas.enable_numpy_blas(threshold=0, attention_threshold=0, min_tokens=0) is None:
        return  # this NumPy ships no OpenBLAS: nothing to compare
    assert fastops.blas_library() is not None
    assert abs(model.gpt_loss() - loops) < 1e-12
    fastops.blas.disable_blas()
    assert fastops.blas_library() is None and model.gpt_loss() == loops


# ----------------------------------------------------------------------------------------------

def test_sizes_past_32_bits_raise_instead_of_overflowing():
    run_case("sizes_past_32_bits")


def test_thread_counts_outside_1_to_max_threads_are_rejected():
    run_case("thread_counts")


def test_float_tokens_are_rejected_not_truncated():
    run_case("tokens_must_be_integers")


def test_rejected_calls_leave_params_grads_and_moments_bit_identical():
    run_case("rejected_calls_change_nothing")


def test_numpy_blas_is_registered_at_import():
    run_case("blas_is_registered_by_default")


def test_fastops_blas_0_keeps_products_in_our_loops_and_blas_can_be_switched_on():
    run_case("blas_can_be_switched_off", env={"FASTOPS_BLAS": "0"})


def test_param_layout_is_the_flat_parameter_order_of_the_python_side():
    """The one definition in C matches what the Python side lays out (names, order, shapes)."""
    fastops = pytest.importorskip("fastops")
    from microgpt_lib.config import GPTConfig

    for config in (GPTConfig.preset("e16_L1_b16"), GPTConfig(12, 3, 3, 9, 11)):
        layout = fastops.param_layout(config.n_embd, config.n_layer, config.vocab_size,
                                      config.block_size)
        assert {name: shape for name, (_, shape) in layout.items()} == config.param_shapes()
        assert list(layout) == list(config.param_shapes())
        offsets = [offset for offset, _ in layout.values()]
        sizes = [rows * cols for _, (rows, cols) in layout.values()]
        assert offsets == list(np.cumsum([0] + sizes[:-1]))
        assert offsets[-1] + sizes[-1] == config.num_params


if __name__ == "__main__":
    globals()[f"case_{sys.argv[1]}"]()
