"""Where a result was measured: Python, NumPy and the BLAS/OpenMP libraries in use (core).

Every saved measurement or training record carries this, so two results can be compared knowing
whether they came from the same software on the same kind of machine.
"""
from __future__ import annotations

import platform


def environment() -> dict:
    """Where the numbers were measured: Python, NumPy and the BLAS/OpenMP libraries in use."""
    info = {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "machine": platform.machine(), "processor": platform.processor()}
    try:
        import numpy
        from threadpoolctl import threadpool_info

        info["numpy"] = numpy.__version__
        info["threadpools"] = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for p in threadpool_info()
        ]
    except ImportError:
        pass
    return info
