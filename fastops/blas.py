"""Find the BLAS that NumPy ships and hand its gemm to the C kernels (optional, measured in ch. 5).

NumPy's wheels bundle OpenBLAS with 64-bit-integer symbols (`scipy_cblas_dgemm64_`); NumPy has
already loaded it, so ctypes finds the same library and gives us the functions' addresses. If the
library or the symbols are not there (a NumPy built against another BLAS), nothing is registered
and every product stays in our hand-written loops.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy

from . import set_attention_blas_threshold, set_blas, set_blas_threshold

SYMBOLS = ("scipy_cblas_dgemm64_", "scipy_cblas_sgemm64_")


def numpy_openblas() -> Path | None:
    """Path of the OpenBLAS shared library inside the NumPy wheel, if there is one."""
    libs = Path(numpy.__file__).resolve().parent.parent / "numpy.libs"
    found = sorted(libs.glob("libscipy_openblas64_*.so*")) if libs.is_dir() else []
    return found[0] if found else None


DEFAULT_THRESHOLD = 64**3  # multiply-adds (M*K*N) from which BLAS beats our loops (chapter 5)
# Attention of one (sequence, head) goes to BLAS from T*T*head_size = 32^3 (T = 64, hd = 8) on:
# four products that BLAS runs with wide vectors, against our own loops (chapter 5).
DEFAULT_ATTENTION_THRESHOLD = 32**3


def enable_numpy_blas(threshold: int = DEFAULT_THRESHOLD,
                      attention_threshold: int | None = None) -> str | None:
    """Register NumPy's OpenBLAS dgemm/sgemm with fastops for products of at least `threshold`
    multiply-adds, and for attention from T*T*head_size >= attention_threshold (default: the
    smaller of threshold and DEFAULT_ATTENTION_THRESHOLD); returns the library path, or None (and
    changes nothing) if not found."""
    path = numpy_openblas()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
        addresses = [ctypes.cast(getattr(lib, name), ctypes.c_void_p).value for name in SYMBOLS]
    except (OSError, AttributeError):
        return None
    set_blas(*addresses)
    set_blas_threshold(threshold)
    if attention_threshold is None:
        attention_threshold = min(threshold, DEFAULT_ATTENTION_THRESHOLD)
    set_attention_blas_threshold(attention_threshold)
    return str(path)


def disable_blas() -> None:
    """Unregister BLAS: every product runs in fastops' own loops."""
    set_blas(0, 0)
