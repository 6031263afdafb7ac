"""fastops' entry points under random input (hypothesis): no crash, and the NumPy answer when valid.

Hypothesis draws lists of calls: small valid models and batches, each sometimes spoiled by one or
two bad values (sizes past 32 or 64 bits, token ids anywhere in int64, malformed cu_seqlens,
short buffers, wrong dtypes, overlapping buffers, NaN or out-of-range AdamW settings, thread
counts outside 1..MAX_THREADS). A fresh Python process (this file run as a script) makes the
calls, so a crash fails the test with the call that caused it. It checks that every call either
raises a clear exception and leaves every buffer bit-identical, or, when nothing was spoiled,
returns what the NumPy kernels rung computes (loss and gradient). More examples:
FASTOPS_FUZZ_EXAMPLES=200.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTREME_SIZES = [0, -1, 2**31 - 1, 2**32 + 4, 2**40, 2**62, 2**63 - 1, -(2**63)]
EXAMPLES = int(os.environ.get("FASTOPS_FUZZ_EXAMPLES", "6"))


# ----------------------------------------------------------------------------------------------
# The worker: runs a list of calls, checks each, and says which call it is on before it starts.

def reference_loss_and_grads(case: dict, params: np.ndarray):
    """Loss and gradient of the packed batch by the NumPy kernels rung (float64), or None when
    the reference cannot take this model (a config the Python side rejects)."""
    from microgpt_lib.flat_params import FlatParams
    from microgpt_lib.rungs.rung4_numpy_kernels.gpt import gpt_backward, gpt_forward
    from microgpt_lib.config import ConfigError, GPTConfig

    try:
        config = GPTConfig(case["n_embd"], case["n_head"], case["n_layer"], case["block_size"],
                           case["vocab_size"])
    except ConfigError:
        return None
    flat, grads = FlatParams(config), FlatParams(config)
    flat.data[...] = params
    cu, lengths = case["cu_seqlens"], np.diff(case["cu_seqlens"])
    tokens = np.zeros((len(lengths), max(lengths)), dtype=np.int64)
    targets, mask = np.zeros_like(tokens), np.zeros(tokens.shape)
    for row, (start, length) in enumerate(zip(cu, lengths)):
        tokens[row, :length] = case["tokens"][start : start + length]
        targets[row, :length] = case["targets"][start : start + length]
        mask[row, :length] = 1.0
    loss, cache = gpt_forward(flat, tokens, targets, mask)
    gpt_backward(flat, grads, cache)
    return loss, grads.data


def param_count(c: dict) -> int:
    C, L, V, block = c["n_embd"], c["n_layer"], c["vocab_size"], c["block_size"]
    return 2 * V * C + block * C + 12 * L * C * C


def run_model_call(fastops, case: dict) -> str:
    """One train_step or gpt_loss call, with buffers sized from the (possibly spoiled) case;
    returns what was checked: "rejected", "matched NumPy" or "accepted" (no reference)."""
    dtype = np.dtype(case["dtype"])
    rng = np.random.default_rng(case["seed"])
    n = param_count(case)
    n = n + case["params_delta"] if 0 < n <= 10**6 else 10  # impossible sizes: a small buffer
    try:
        need = fastops.workspace_size(len(case["tokens"]), len(case["cu_seqlens"]) - 1,
                                      case["n_embd"], case["n_head"], case["n_layer"],
                                      case["vocab_size"], case["block_size"])
    except (ValueError, OverflowError):
        need = 16
    n_acts = max(0, need + case["acts_delta"]) if need <= 10**7 else 16
    params = (0.3 * rng.standard_normal(max(n, 0))).astype(dtype)
    grads, m, v = (np.zeros_like(params) for _ in range(3))
    if case["entry"] == "train_step":
        m[...] = 0.01 * rng.standard_normal(m.shape)
        v[...] = np.abs(0.01 * rng.standard_normal(v.shape))
    acts = np.zeros(n_acts, dtype=dtype)
    ids = dict(tokens=np.array(case["tokens"], np.int64).astype(case["token_dtype"]),
               targets=np.array(case["targets"], np.int64).astype(case["token_dtype"]),
               cu_seqlens=np.array(case["cu_seqlens"], dtype=np.int64))
    if case["alias"] == "grads=params":
        grads = params
    elif case["alias"] == "v=m":
        v = m
    sizes = [case[k] for k in ("n_embd", "n_head", "n_layer", "vocab_size", "block_size")]
    before = [a.copy() for a in (params, grads, m, v)]
    try:
        if case["entry"] == "train_step":
            loss = fastops.train_step(params, grads, m, v, acts, *ids.values(), *sizes,
                                      case["t"], case["lr"], case["beta1"], case["beta2"],
                                      case["eps"], case["weight_decay"], case["clip_norm"],
                                      case["num_threads"])
        else:
            loss = fastops.gpt_loss(params, grads, acts, *ids.values(), *sizes, True,
                                    case["num_threads"])
    except (ValueError, TypeError, OverflowError):
        after = (params, grads, m, v)
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, after)), \
            "a rejected call changed a buffer"
        assert not case["valid"], "a valid call was rejected"
        return "rejected"
    assert case["valid"], "a spoiled call was accepted"
    reference = reference_loss_and_grads(case, before[0].astype(np.float64))
    if reference is None:
        return "accepted"
    ref_loss, ref_grads = reference
    tol = 1e-9 if dtype == np.float64 else 2e-4
    assert math.isclose(loss, ref_loss, rel_tol=tol, abs_tol=tol), (loss, ref_loss)
    scale = max(1.0, float(np.abs(ref_grads).max()))
    assert np.allclose(grads, ref_grads, rtol=tol, atol=tol * scale), "gradients differ"
    if case["entry"] == "train_step":  # the update is adamw_update's, on that gradient
        p, mm, vv = before[0].copy(), before[2].copy(), before[3].copy()
        fastops.adamw_update(p, grads.copy(), mm, vv, case["t"], case["lr"], case["beta1"],
                             case["beta2"], case["eps"], case["weight_decay"], case["clip_norm"])
        assert np.allclose(params, p, rtol=tol, atol=tol), "the AdamW step differs"
    return "matched NumPy"


def run_layer_call(fastops, case: dict) -> str:
    """One per-layer wrapper on random, possibly mismatched or empty, shapes: no crash."""
    dtype = np.dtype(case["dtype"])
    rng = np.random.default_rng(case["seed"])
    a, b, c = case["shape"]

    def arr(*shape):
        return rng.standard_normal(shape).astype(dtype)

    name, n_head = case["layer"], case["n_head"]
    ids = rng.integers(-2, c + 2, a).astype(np.int64)
    calls = {
        "matmul_forward": lambda: fastops.matmul_forward(arr(a, b), arr(c, b + case["skew"])),
        "matmul_backward": lambda: fastops.matmul_backward(arr(a, c), arr(a, b), arr(c, b),
                                                           arr(c, b + case["skew"])),
        "attention_forward": lambda: fastops.attention_forward(arr(a, b), arr(a, b),
                                                               arr(a + case["skew"], b), n_head),
        "attention_backward": lambda: fastops.attention_backward(
            arr(a, b), arr(a, b), arr(a, b), arr(a, b), arr(n_head, a, a + case["skew"]), n_head),
        "encoder_forward": lambda: fastops.encoder_forward(ids, arr(c, b),
                                                           arr(a + case["skew"], b)),
        "encoder_backward": lambda: fastops.encoder_backward(arr(c, b), arr(a, b), arr(a, b), ids),
        "rmsnorm_forward": lambda: fastops.rmsnorm_forward(arr(a, b)),
        "softmax_crossentropy_forward": lambda: fastops.softmax_crossentropy_forward(arr(a, c),
                                                                                     ids),
        "softmax_crossentropy_backward": lambda: fastops.softmax_crossentropy_backward(
            arr(a, c), ids, arr(a + case["skew"])),
    }
    try:
        calls[name]()
    except (ValueError, TypeError, OverflowError, MemoryError):
        return "rejected"
    return "accepted"


def worker(cases: list[dict]) -> None:
    import fastops

    outcomes = {"rejected": 0, "accepted": 0, "matched NumPy": 0}
    for i, case in enumerate(cases):
        print(f"call {i}: {json.dumps(case)}", file=sys.stderr, flush=True)
        if case["blas"] == "off":
            fastops.blas.disable_blas()
        else:
            fastops.blas.enable_numpy_blas(*((0, 0, 0) if case["blas"] == "always" else ()))
        outcomes[(run_layer_call if "layer" in case else run_model_call)(fastops, case)] += 1
    print(json.dumps(outcomes))


# ----------------------------------------------------------------------------------------------
# The strategies (hypothesis is needed only here, in the test process).

def strategies():
    from hypothesis import strategies as st

    nan, inf = float("nan"), float("inf")
    spoilers = {  # name -> values that make the call invalid
        "n_embd": st.sampled_from(EXTREME_SIZES), "n_head": st.sampled_from(EXTREME_SIZES),
        "n_layer": st.sampled_from(EXTREME_SIZES), "vocab_size": st.sampled_from([0, -1]),
        "block_size": st.sampled_from([0, -1, 2**31 - 1, 2**62, -(2**63)]),
        "num_threads": st.sampled_from([0, -1, 257, 5000, 2**62]),
        "params_delta": st.sampled_from([-1, 1, -(10**9)]),
        "acts_delta": st.sampled_from([-1, -16, -(10**9)]),
        "token": st.integers(-(2**63), 2**63 - 1), "cu_seqlens": st.lists(
            st.integers(-(2**63), 2**63 - 1) | st.integers(-2, 20), max_size=5),
        "token_dtype": st.sampled_from(["float64", "float32", "int32", "uint64"]),
        "alias": st.sampled_from(["grads=params", "v=m"]),
        "t": st.sampled_from([0, -1]), "lr": st.sampled_from([nan, inf, -1.0]),
        "beta1": st.sampled_from([1.0, -0.1, nan]), "beta2": st.sampled_from([1.0, 2.0, nan]),
        "eps": st.sampled_from([0.0, -1e-8, nan, inf]),
        "weight_decay": st.sampled_from([-0.1, nan]), "clip_norm": st.sampled_from([-1.0, nan]),
    }
    adam_only = {"t", "lr", "beta1", "beta2", "eps", "weight_decay", "clip_norm"}

    @st.composite
    def model_call(draw):
        n_head, head_size = draw(st.integers(1, 3)), draw(st.integers(1, 4))
        V, block = draw(st.integers(1, 9)), draw(st.integers(1, 8))
        lengths = draw(st.lists(st.integers(1, block), min_size=1, max_size=3))
        N = sum(lengths)
        ids = st.lists(st.integers(0, V - 1), min_size=N, max_size=N)
        case = dict(entry=draw(st.sampled_from(["train_step", "gpt_loss"])),
                    n_embd=n_head * head_size, n_head=n_head, n_layer=draw(st.integers(1, 2)),
                    vocab_size=V, block_size=block, tokens=draw(ids), targets=draw(ids),
                    cu_seqlens=[0, *np.cumsum(lengths).tolist()],
                    dtype=draw(st.sampled_from(["float64", "float32"])),
                    num_threads=draw(st.sampled_from([1, 2])),
                    blas=draw(st.sampled_from(["off", "default", "always"])),
                    seed=draw(st.integers(0, 2**32 - 1)), params_delta=0,
                    acts_delta=draw(st.sampled_from([0, 0, 3])), token_dtype="int64",
                    alias="none", t=draw(st.integers(1, 4)),
                    lr=draw(st.sampled_from([0.0, 0.01])),
                    beta1=0.9, beta2=draw(st.sampled_from([0.0, 0.99])), eps=1e-8,
                    weight_decay=draw(st.sampled_from([0.0, 0.1])),
                    clip_norm=draw(st.sampled_from([0.0, 0.5, 10.0])))
        spoiled = draw(st.lists(st.sampled_from(sorted(spoilers)), max_size=2, unique=True))
        if case["entry"] == "gpt_loss":
            spoiled = [name for name in spoiled if name not in adam_only]
        for name in spoiled:
            if name == "token":
                key = draw(st.sampled_from(["tokens", "targets"]))
                case[key][draw(st.integers(0, N - 1))] = draw(spoilers[name].filter(
                    lambda x: not 0 <= x < V))
            else:
                case[name] = draw(spoilers[name])
        cu = case["cu_seqlens"]
        if (len(cu) > 1 and cu[0] == 0 and cu[-1] == N
                and all(1 <= b - a <= block for a, b in zip(cu, cu[1:]))):
            spoiled = [name for name in spoiled if name != "cu_seqlens"]  # drew a valid one
        if case["alias"] == "v=m" and case["entry"] == "gpt_loss":  # gpt_loss has no m, v
            spoiled = [name for name in spoiled if name != "alias"]
        case["valid"] = not spoiled
        return case

    layer_call = st.fixed_dictionaries(dict(
        layer=st.sampled_from(["matmul_forward", "matmul_backward", "attention_forward",
                               "attention_backward", "encoder_forward", "encoder_backward",
                               "rmsnorm_forward", "softmax_crossentropy_forward",
                               "softmax_crossentropy_backward"]),
        shape=st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)),
        skew=st.sampled_from([0, 0, 1]), n_head=st.sampled_from([1, 2, 3, 0, -1]),
        dtype=st.sampled_from(["float64", "float32"]), seed=st.integers(0, 2**32 - 1),
        blas=st.sampled_from(["off", "always"])))
    return st.lists(model_call() | layer_call, min_size=20, max_size=40)


def test_fastops_never_crashes_and_matches_numpy_when_valid():
    pytest.importorskip("fastops", reason="fastops is not built: run `make build`")
    hypothesis = pytest.importorskip("hypothesis")

    seen = {"rejected": 0, "accepted": 0, "matched NumPy": 0}

    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(strategies())
    def calls_in_a_fresh_process(cases):
        done = subprocess.run([sys.executable, __file__], input=json.dumps(cases),
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": ROOT})
        last = (done.stderr.strip().splitlines() or ["(before the first call)"])[-1]
        if done.returncode < 0:
            pytest.fail(f"signal {-done.returncode} ended the process at {last}")
        assert done.returncode == 0, done.stderr[-3000:]
        for outcome, count in json.loads(done.stdout).items():
            seen[outcome] += count

    calls_in_a_fresh_process()
    assert seen["rejected"] > 0 and seen["matched NumPy"] > 0, seen  # both properties ran
    print(seen)


if __name__ == "__main__":
    worker(json.loads(sys.stdin.read()))
