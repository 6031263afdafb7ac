"""fastops: the Cython kernels of the course's top rung (chapter 5), compiled at install time.

`_gpt` holds every layer's forward/backward pair, AdamW, the model's parameter layout and the
whole training step (its docstring lists the files, in reading order). If the extension is not
built, importing this package raises an ImportError that says how to build it.

One source, two builds: on x86-64, setup.py also compiles `_gpt.pyx` for x86-64-v3 (AVX2 and FMA)
as `_gpt_v3`. This package uses it when the CPU can run it and the baseline `_gpt` otherwise;
`ISA` says which one is in use. FASTOPS_ISA=baseline (or x86-64-v3) in the environment forces a
choice, for measuring one against the other (chapter 5).

Fast by default: importing fastops hands the large matrix products to the BLAS that NumPy ships
(OpenBLAS), where NumPy has one (`fastops.blas`: thresholds, and switching it off and on).
FASTOPS_BLAS=0 in the environment keeps every product in fastops' own loops.

Threads spin briefly, then sleep: between two parallel loops of a step, an OpenMP thread that
has finished its share waits about 100 microseconds for the next loop before it goes to sleep
(GOMP_SPINCOUNT=10000, unless GOMP_SPINCOUNT or OMP_WAIT_POLICY is already set). Waking a
sleeping thread costs more than many of a step's loops take, so on a quiet machine this makes
two threads about 1.8x one (chapter 6); spinning for ever (OMP_WAIT_POLICY=active) while another
program holds the other core can make a 2-thread step 100x slower (chapter 5). On a busy
machine, use one thread, or OMP_WAIT_POLICY=passive (threads sleep at once).
"""
import importlib
import importlib.util
import os

if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "10000"  # read once, when libgomp loads (GCC's OpenMP)

KERNELS = (
    "MAX_THREADS", "activation_offsets", "adamw_update", "blas_library", "cpu_has_x86_64_v3",
    "decode_step", "decode_workspace_size", "kv_cache_size",
    "get_attention_blas_threshold", "get_blas_min_tokens", "get_blas_threshold",
    "get_parallel_threshold", "get_thread_balance", "gpt_loss", "openmp_enabled",
    "pack_padded_batch", "param_layout",
    "register_numpy_blas", "set_attention_blas_threshold", "set_blas_min_tokens",
    "set_blas_threshold", "set_parallel_threshold", "set_thread_balance", "train_step",
    "unregister_blas",
    "workspace_size",
)
# One Python function per layer kernel (chapter 4's names and shapes), `py_<name>` in the module
LAYERS = (
    "attention_backward", "attention_forward", "encoder_backward", "encoder_forward",
    "matmul_backward", "matmul_forward", "relu_backward", "relu_forward", "rmsnorm_backward",
    "rmsnorm_forward", "softmax_crossentropy_backward", "softmax_crossentropy_forward",
)
ISAS = {"baseline": "_gpt", "x86-64-v3": "_gpt_v3"}  # FASTOPS_ISA value -> module

try:
    from . import _gpt as _baseline
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
globals().update({name: getattr(kernels, f"py_{name}") for name in LAYERS})

from . import blas  # noqa: E402  (it registers with `kernels`, picked above)

if os.environ.get("FASTOPS_BLAS", "1") != "0":
    blas.enable_numpy_blas()

__all__ = ["ISA", "blas", "kernels", *KERNELS, *LAYERS]
