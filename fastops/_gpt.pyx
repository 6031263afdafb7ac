# cython: cdivision=True, boundscheck=False, wraparound=False, initializedcheck=False
"""The GPT in C: every layer's forward/backward pair, AdamW, and a whole training step.

The source is five files, read in this order (llm.c's train_gpt2.c, cut along its seams):
  blas_and_cpu.pxi    which code runs a matrix product: NumPy's BLAS or our loops; CPU features
  kernels.pxi         one forward/backward pair per layer, shapes in the signatures, and AdamW
  model.pxi           the parameter and activation layouts (named tensors in flat buffers),
                      and the forward and backward over all layers
  entry_points.pxi    what Python calls (train_step, gpt_loss, adamw_update, the layouts), each
                      checking its input first
  layer_wrappers.pxi  one Python function per kernel, for tests and timings
  sampling.pxi        one token at a time with a KV cache, for sampling (chapter 8)

A batch is a packed list of N real tokens (no padding): `cu_seqlens` (B+1,) marks where each
sequence starts, so the matrix products run on (N, C) matrices and only attention looks at
sequence boundaries. A single document is simply B = 1.
"""
from cython.parallel cimport prange
from libc.math cimport exp, expf, isfinite, log, sqrt, sqrtf
from libc.stdint cimport INT64_MAX, int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

import numpy as np

ctypedef fused real:
    float
    double

include "blas_and_cpu.pxi"
include "kernels.pxi"
include "model.pxi"
include "entry_points.pxi"
include "layer_wrappers.pxi"
include "sampling.pxi"
