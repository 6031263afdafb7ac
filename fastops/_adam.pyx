# cython: cdivision=True
"""Adam over one flat parameter buffer: the optimiser as a single C loop (llm.c's adamw_update)."""
from libc.math cimport sqrt

ctypedef fused real:
    float
    double


def adam_update(real[::1] params, real[::1] grads, real[::1] m, real[::1] v,
                int t, double lr, double beta1, double beta2, double eps):
    """In place: m, v <- moments of grads; params -= lr * m_hat / (sqrt(v_hat) + eps); grads <- 0.

    params, grads, m, v: (N,) contiguous, one dtype; t: 1-based step count for bias correction.
    """
    cdef Py_ssize_t i, n = params.shape[0]
    if grads.shape[0] != n or m.shape[0] != n or v.shape[0] != n:
        raise ValueError(f"adam_update: params, grads, m, v must have one length, got "
                         f"{n}, {grads.shape[0]}, {m.shape[0]}, {v.shape[0]}")
    if t < 1:
        raise ValueError(f"adam_update: step count t starts at 1, got {t}")
    cdef double g, m_hat, v_hat
    cdef double c1 = 1.0 - beta1 ** t
    cdef double c2 = 1.0 - beta2 ** t
    with nogil:
        for i in range(n):
            g = grads[i]
            m[i] = beta1 * m[i] + (1.0 - beta1) * g
            v[i] = beta2 * v[i] + (1.0 - beta2) * g * g
            m_hat = m[i] / c1
            v_hat = v[i] / c2
            params[i] -= lr * m_hat / (sqrt(v_hat) + eps)
            grads[i] = 0
