"""Hand fastops' large matrix products to the BLAS that NumPy ships, or keep them in our loops.

NumPy's wheels bundle OpenBLAS with 64-bit-integer symbols (`scipy_cblas_dgemm64_`). fastops
finds that library itself (`register_numpy_blas`: the file inside NumPy's wheel, opened with
dlopen) and uses its gemm for products of at least `threshold` multiply-adds. Importing fastops
does this with the default thresholds below, unless FASTOPS_BLAS=0; chapter 5 switches BLAS off
and on to measure our loops against it. If NumPy ships no such library (a NumPy built against
another BLAS), nothing is registered and every product stays in our hand-written loops.
"""
from __future__ import annotations

from . import register_numpy_blas, set_attention_blas_threshold, set_blas_min_tokens
from . import set_blas_threshold, unregister_blas

DEFAULT_THRESHOLD = 64**3  # multiply-adds (M*K*N) from which BLAS beats our loops (chapter 5)
# Attention of one (sequence, head) goes to BLAS from T*T*head_size = 2^21 (T = 256, hd = 32) on.
# Below, our register tiles of the causal triangle win: at T = 64 and 128 (head size 32, float32
# and float64) they took from half of BLAS' time to about as long, forward and backward, side by
# side (two runs); from T = 256 BLAS' four products of the full square won the backward.
DEFAULT_ATTENTION_THRESHOLD = 2**21
# Products of fewer tokens stay in our loops, forward and backward, whatever their widths: inside
# a step of one name (7 tokens) BLAS first packs weights that arrive cold from L3 (chapter 6).
DEFAULT_MIN_TOKENS = 32


def enable_numpy_blas(threshold: int = DEFAULT_THRESHOLD,
                      attention_threshold: int | None = None,
                      min_tokens: int = DEFAULT_MIN_TOKENS) -> str | None:
    """Use NumPy's OpenBLAS dgemm/sgemm for products of at least `threshold` multiply-adds and
    `min_tokens` tokens, and for attention from T*T*head_size >= attention_threshold (default:
    the smaller of threshold and DEFAULT_ATTENTION_THRESHOLD); returns the library path, or None
    (and changes nothing) if NumPy ships no such library. ValueError for a negative setting."""
    if attention_threshold is None:
        attention_threshold = min(threshold, DEFAULT_ATTENTION_THRESHOLD)
    for value in (threshold, attention_threshold, min_tokens):
        if not 0 <= value < 2**63:
            raise ValueError(f"a BLAS threshold is 0..2**63-1 (multiply-adds, tokens), got {value}")
    path = register_numpy_blas()
    if path is not None:
        set_blas_threshold(threshold)
        set_attention_blas_threshold(attention_threshold)
        set_blas_min_tokens(min_tokens)
    return path


def disable_blas() -> None:
    """Run every product in fastops' own loops (enable_numpy_blas switches BLAS back on)."""
    unregister_blas()
