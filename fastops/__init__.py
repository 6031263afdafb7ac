"""fastops: the Cython kernels of the course's top rung (chapter 5), compiled at install time.

`_gpt` holds every layer's forward/backward pair, AdamW and the whole training step (see its
docstring); `_adam` the plain Adam loop. If the extension is not built, importing this package
raises an ImportError that says how to build it.

Threads wait passively (OMP_WAIT_POLICY=passive, unless already set): an OpenMP thread that
spins at a barrier while another program holds the other core can make a 2-thread step 100x
slower than a 1-thread one (measured in chapter 5); sleeping costs a few microseconds instead.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # read once, when libgomp loads

try:
    from ._adam import adam_update
    from ._gpt import (
        activation_offsets,
        adamw_update,
        attention_backward,
        attention_forward,
        encoder_backward,
        encoder_forward,
        get_blas_threshold,
        get_parallel_threshold,
        gpt_loss,
        matmul_backward,
        matmul_forward,
        openmp_enabled,
        relu_backward,
        relu_forward,
        rmsnorm_backward,
        rmsnorm_forward,
        set_attention_blas_threshold,
        set_blas_threshold,
        set_parallel_threshold,
        softmax_crossentropy_backward,
        softmax_crossentropy_forward,
        train_step,
        workspace_size,
    )
except ImportError as err:  # the compiled module is missing or stale
    raise ImportError(
        "fastops is not built. From the repository root run `make build` (or "
        "`pip install -e .`, or `python setup.py build_ext --inplace`); it needs gcc and the "
        f"Python headers. Original error: {err}"
    ) from err

__all__ = [
    "activation_offsets", "adam_update", "adamw_update", "attention_backward", "attention_forward",
    "encoder_backward", "encoder_forward", "get_blas_threshold", "get_parallel_threshold",
    "gpt_loss", "matmul_backward", "matmul_forward", "openmp_enabled", "relu_backward",
    "relu_forward", "rmsnorm_backward", "rmsnorm_forward", "set_attention_blas_threshold",
    "set_blas_threshold", "set_parallel_threshold", "softmax_crossentropy_backward", "softmax_crossentropy_forward",
    "train_step", "workspace_size",
]
