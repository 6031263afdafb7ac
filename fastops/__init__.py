"""fastops: the Cython kernels of the course's top rung (chapter 5), compiled at install time.

`_gpt` holds every layer's forward/backward pair, AdamW and the whole training step (see its
docstring); `_adam` the plain Adam loop. If the extension is not built, importing this package
raises an ImportError that says how to build it.

One source, two builds: on x86-64, setup.py also compiles `_gpt.pyx` for x86-64-v3 (AVX2 and FMA)
as `_gpt_v3`. This package uses it when the CPU can run it and the baseline `_gpt` otherwise;
`ISA` says which one is in use. FASTOPS_ISA=baseline (or x86-64-v3) in the environment forces a
choice, for measuring one against the other (chapter 5).

Threads wait passively (OMP_WAIT_POLICY=passive, unless already set): an OpenMP thread that
spins at a barrier while another program holds the other core can make a 2-thread step 100x
slower than a 1-thread one (measured in chapter 5); sleeping costs a few microseconds instead.
"""
import importlib
import importlib.util
import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # read once, when libgomp loads

KERNELS = (
    "activation_offsets", "adamw_update", "attention_backward", "attention_forward",
    "cpu_has_x86_64_v3", "encoder_backward", "encoder_forward", "get_blas_threshold",
    "get_parallel_threshold", "gpt_loss", "matmul_backward", "matmul_forward", "openmp_enabled",
    "relu_backward", "relu_forward", "rmsnorm_backward", "rmsnorm_forward",
    "set_attention_blas_threshold", "set_blas", "set_blas_threshold", "set_parallel_threshold",
    "softmax_crossentropy_backward", "softmax_crossentropy_forward", "train_step",
    "workspace_size",
)
ISAS = {"baseline": "_gpt", "x86-64-v3": "_gpt_v3"}  # FASTOPS_ISA value -> module

try:
    from . import _gpt as _baseline
    from ._adam import adam_update
except ImportError as err:  # the compiled module is missing or stale
    raise ImportError(
        "fastops is not built. From the repository root run `make build` (or "
        "`pip install -e .`, or `python setup.py build_ext --inplace`); it needs gcc and the "
        f"Python headers. Original error: {err}"
    ) from err


def _pick_isa(requested: str) -> str:
    """The ISA to use: the one FASTOPS_ISA asks for, else x86-64-v3 where built and supported."""
    if requested not in ("auto", *ISAS):
        raise ImportError(f"FASTOPS_ISA={requested!r}: use one of auto, {', '.join(ISAS)}")
    if requested == "baseline":
        return requested
    usable = _baseline.cpu_has_x86_64_v3() and importlib.util.find_spec(
        f"{__name__}._gpt_v3") is not None
    if requested == "x86-64-v3" and not usable:
        raise ImportError("FASTOPS_ISA=x86-64-v3, but this CPU cannot run it or setup.py did not "
                          "build _gpt_v3 (see the messages of `make build`)")
    return "x86-64-v3" if usable else "baseline"


ISA = _pick_isa(os.environ.get("FASTOPS_ISA", "auto"))
kernels = importlib.import_module(f"{__name__}.{ISAS[ISA]}")  # the module every name comes from
globals().update({name: getattr(kernels, name) for name in KERNELS})

__all__ = ["ISA", "adam_update", "kernels", *KERNELS]
