"""fastops: the Cython kernels of the course's top rung (chapter 5), compiled at install time.

If the extension is not built, importing this package raises an ImportError that says how to build it.
"""
try:
    from ._adam import adam_update
except ImportError as err:  # the compiled module is missing or stale
    raise ImportError(
        "fastops is not built. From the repository root run `make build` (or "
        "`pip install -e .`, or `python setup.py build_ext --inplace`); it needs gcc and the "
        f"Python headers. Original error: {err}"
    ) from err

__all__ = ["adam_update"]
