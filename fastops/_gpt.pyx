# cython: cdivision=True, boundscheck=False, wraparound=False, initializedcheck=False
"""The GPT of MODEL.md in C: every layer's forward/backward pair, AdamW, and a whole training step.

Layout follows llm.c. Parameters, gradients and Adam moments are four flat buffers (FlatParams
order); activations live in one flat workspace cut into named slabs by `Layout`. A batch is a
packed list of N real tokens (no padding): `cu_seqlens` (B+1,) marks where each sequence starts, so
the matrix products run on (N, C) matrices and only attention looks at sequence boundaries. A
single document is simply B = 1.

Every kernel is a `cdef ... nogil` function on raw pointers, written once for float and double
(`real`). Matrix products use hand-written loops, or the BLAS bundled with NumPy when a pointer to
its gemm has been registered (`set_blas`) and the product is large enough (`set_blas_threshold`).
The `def` functions at the end check their inputs and raise ValueError: nothing reaches C unchecked.
"""
from cython.parallel cimport prange
from libc.math cimport exp, expf, log, sqrt, sqrtf
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

import numpy as np

ctypedef fused real:
    float
    double

# cblas_?gemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), 64-bit ints
# (NumPy bundles OpenBLAS built with ILP64 symbols `scipy_cblas_?gemm64_`).
ctypedef void (*dgemm_t)(int, int, int, int64_t, int64_t, int64_t, double, const double*,
                         int64_t, const double*, int64_t, double, double*, int64_t) noexcept nogil
ctypedef void (*sgemm_t)(int, int, int, int64_t, int64_t, int64_t, float, const float*,
                         int64_t, const float*, int64_t, float, float*, int64_t) noexcept nogil

cdef enum:
    ROW_MAJOR = 101
    NO_TRANS = 111
    TRANS = 112

cdef dgemm_t _dgemm = NULL
cdef sgemm_t _sgemm = NULL
cdef int64_t _blas_min_flops = 1 << 62     # BLAS off until set_blas_threshold says otherwise
cdef int64_t _attn_blas_min_flops = 1 << 62  # the same for attention's per-(sequence, head) T*T*hd
# Below this many multiply-adds a parallel region costs more than it gives: waking a sleeping
# thread takes microseconds (OMP_WAIT_POLICY=passive), so a region needs ~100 us of work.
cdef int64_t _parallel_min_flops = 1 << 20
cdef double RMS_EPS = 1e-5


# ----------------------------------------------------------------------------------------------
# Matrix products: out (M, Nn) (+)= A (M, K) @ B (K, Nn), the one primitive of every linear layer.

cdef inline void _gemm_rows(real* out, const real* a, Py_ssize_t sam, Py_ssize_t sak,
                            const real* b, Py_ssize_t m0, Py_ssize_t m1, Py_ssize_t K,
                            Py_ssize_t Nn) noexcept nogil:
    """Rows m0..m1 of out += A @ B; four rows at a time so each row of B is loaded once for four.

    A's element (m, k) is a[m*sam + k*sak] (strides let dW = dout^T @ x reuse this loop); the inner
    loop is an axpy over a contiguous row, which the compiler vectorises without reordering sums.
    """
    cdef Py_ssize_t m, k, j, r
    cdef real a0, a1, a2, a3, bj
    cdef real *o0
    cdef real *o1
    cdef real *o2
    cdef real *o3
    cdef const real* brow
    m = m0
    while m + 4 <= m1:
        o0 = out + m * Nn
        o1 = o0 + Nn
        o2 = o1 + Nn
        o3 = o2 + Nn
        for k in range(K):
            a0 = a[m * sam + k * sak]
            a1 = a[(m + 1) * sam + k * sak]
            a2 = a[(m + 2) * sam + k * sak]
            a3 = a[(m + 3) * sam + k * sak]
            brow = b + k * Nn
            for j in range(Nn):
                bj = brow[j]
                o0[j] += a0 * bj
                o1[j] += a1 * bj
                o2[j] += a2 * bj
                o3[j] += a3 * bj
        m += 4
    if m < m1:  # the last 1-3 rows, in one more pass over B
        for k in range(K):
            brow = b + k * Nn
            for r in range(m, m1):
                o0 = out + r * Nn
                a0 = a[r * sam + k * sak]
                for j in range(Nn):
                    o0[j] += a0 * brow[j]


cdef void gemm_hand(real* out, const real* a, Py_ssize_t sam, Py_ssize_t sak, const real* b,
                    Py_ssize_t M, Py_ssize_t K, Py_ssize_t Nn, bint accumulate,
                    int nthreads) noexcept nogil:
    """out (M, Nn) (+)= A @ B with hand-written loops; blocks of 4 rows shared among threads."""
    cdef Py_ssize_t blk, nblk = (M + 3) // 4
    if not accumulate:
        memset(out, 0, M * Nn * sizeof(real))
    if nthreads > 1 and M * K * Nn >= _parallel_min_flops and nblk > 1:
        for blk in prange(nblk, num_threads=nthreads, schedule="static"):
            _gemm_rows(out, a, sam, sak, b, 4 * blk, min(4 * blk + 4, M), K, Nn)
    else:
        _gemm_rows(out, a, sam, sak, b, 0, M, K, Nn)


cdef inline bint _use_blas(real* out, Py_ssize_t M, Py_ssize_t K, Py_ssize_t Nn) noexcept nogil:
    if real is float:
        return _sgemm != NULL and M * K * Nn >= _blas_min_flops
    else:
        return _dgemm != NULL and M * K * Nn >= _blas_min_flops


cdef void _blas(int ta, int tb, Py_ssize_t M, Py_ssize_t Nn, Py_ssize_t K, const real* a,
                Py_ssize_t lda, const real* b, Py_ssize_t ldb, real beta, real* c,
                Py_ssize_t ldc) noexcept nogil:
    if real is float:
        _sgemm(ROW_MAJOR, ta, tb, M, Nn, K, 1.0, a, lda, b, ldb, beta, c, ldc)
    else:
        _dgemm(ROW_MAJOR, ta, tb, M, Nn, K, 1.0, a, lda, b, ldb, beta, c, ldc)


# ----------------------------------------------------------------------------------------------
# Layers: <layer>_fwd / <layer>_bwd pairs. Backward kernels accumulate weight gradients (+=).

# The forward product needs dot products of contiguous rows, i.e. sums. C (and Cython) must add
# in the written order, which forbids vector registers; OpenMP's `simd reduction` pragma grants
# the compiler leave to reorder this one sum (-fopenmp-simd needs no OpenMP runtime). Cython
# cannot emit a pragma, so these four lines are C, pasted verbatim into the generated file.
cdef extern from *:
    """
    #define FASTOPS_DOT4(T, NAME) \\
    static inline void NAME(const T* x0, const T* x1, const T* x2, const T* x3, const T* w, \\
                            Py_ssize_t n, T* out) { \\
        T s0 = 0, s1 = 0, s2 = 0, s3 = 0; \\
        _Pragma("omp simd reduction(+:s0,s1,s2,s3)") \\
        for (Py_ssize_t i = 0; i < n; i++) { \\
            s0 += x0[i] * w[i]; s1 += x1[i] * w[i]; s2 += x2[i] * w[i]; s3 += x3[i] * w[i]; \\
        } \\
        out[0] = s0; out[1] = s1; out[2] = s2; out[3] = s3; \\
    } \\
    static inline T NAME##_1(const T* x, const T* w, Py_ssize_t n) { \\
        T s = 0; \\
        _Pragma("omp simd reduction(+:s)") \\
        for (Py_ssize_t i = 0; i < n; i++) s += x[i] * w[i]; \\
        return s; \\
    }
    FASTOPS_DOT4(float, fastops_sdot4)
    FASTOPS_DOT4(double, fastops_ddot4)
    """
    void fastops_sdot4(const float*, const float*, const float*, const float*, const float*,
                       Py_ssize_t, float*) noexcept nogil
    void fastops_ddot4(const double*, const double*, const double*, const double*,
                       const double*, Py_ssize_t, double*) noexcept nogil
    float fastops_sdot4_1(const float*, const float*, Py_ssize_t) noexcept nogil
    double fastops_ddot4_1(const double*, const double*, Py_ssize_t) noexcept nogil


cdef inline real _dot(const real* x, const real* y, Py_ssize_t n) noexcept nogil:
    """x . y with a vectorised (reordered) sum."""
    if real is float:
        return fastops_sdot4_1(x, y, n)
    else:
        return fastops_ddot4_1(x, y, n)


cdef inline void _matmul_fwd_cols(real* out, const real* x, const real* w, Py_ssize_t N,
                                  Py_ssize_t o0, Py_ssize_t o1, Py_ssize_t Cin,
                                  Py_ssize_t Cout) noexcept nogil:
    """Columns o0..o1 of out = x @ w^T. Each row of w is read once, from memory, and meets every
    row of x (which stays in cache) four rows at a time."""
    cdef Py_ssize_t t, o
    cdef real acc[4]
    cdef const real* wr
    for o in range(o0, o1):
        wr = w + o * Cin
        t = 0
        while t + 4 <= N:
            if real is float:
                fastops_sdot4(x + t * Cin, x + (t + 1) * Cin, x + (t + 2) * Cin,
                              x + (t + 3) * Cin, wr, Cin, acc)
            else:
                fastops_ddot4(x + t * Cin, x + (t + 1) * Cin, x + (t + 2) * Cin,
                              x + (t + 3) * Cin, wr, Cin, acc)
            out[t * Cout + o] = acc[0]
            out[(t + 1) * Cout + o] = acc[1]
            out[(t + 2) * Cout + o] = acc[2]
            out[(t + 3) * Cout + o] = acc[3]
            t += 4
        while t < N:
            if real is float:
                out[t * Cout + o] = fastops_sdot4_1(x + t * Cin, wr, Cin)
            else:
                out[t * Cout + o] = fastops_ddot4_1(x + t * Cin, wr, Cin)
            t += 1


cdef void matmul_fwd(real* out, const real* x, const real* w, Py_ssize_t N, Py_ssize_t Cin,
                     Py_ssize_t Cout, int nthreads) noexcept nogil:
    """out (N, Cout) = x (N, Cin) @ w (Cout, Cin)^T: BLAS when large enough, else our loops.
    With threads, each thread makes its own BLAS call on a slab of rows (BLAS on one thread)."""
    cdef Py_ssize_t blk, nblk = (Cout + 15) // 16, r0, r1, part
    if _use_blas(out, N, Cin, Cout):
        if nthreads > 1 and N >= 8 * nthreads and N * Cin * Cout >= _parallel_min_flops:
            part = (N + nthreads - 1) // nthreads
            for blk in prange(nthreads, num_threads=nthreads, schedule="static"):
                r0 = blk * part
                r1 = min(N, r0 + part)
                _blas(NO_TRANS, TRANS, r1 - r0, Cout, Cin, x + r0 * Cin, Cin, w, Cin, 0.0,
                      out + r0 * Cout, Cout)
        else:
            _blas(NO_TRANS, TRANS, N, Cout, Cin, x, Cin, w, Cin, 0.0, out, Cout)
    elif nthreads > 1 and N * Cin * Cout >= _parallel_min_flops and nblk > 1:
        for blk in prange(nblk, num_threads=nthreads, schedule="static"):
            _matmul_fwd_cols(out, x, w, N, 16 * blk, min(16 * blk + 16, Cout), Cin, Cout)
    else:
        _matmul_fwd_cols(out, x, w, N, 0, Cout, Cin, Cout)


cdef void matmul_bwd(real* dx, real* dw, const real* dout, const real* x, const real* w,
                     Py_ssize_t N, Py_ssize_t Cin, Py_ssize_t Cout, bint accumulate_dx,
                     int nthreads) noexcept nogil:
    """dw (Cout, Cin) += dout^T @ x; dx (N, Cin) (+)= dout (N, Cout) @ w (Cout, Cin).
    With threads and BLAS, thread b owns a slab of rows of dw and a slab of rows of dx."""
    cdef Py_ssize_t blk, r0, r1, o0, o1, part_n, part_o
    cdef real beta = 1.0 if accumulate_dx else 0.0
    if _use_blas(dw, N, Cin, Cout):
        if (nthreads > 1 and N >= 8 * nthreads and Cout >= 8 * nthreads
                and N * Cin * Cout >= _parallel_min_flops):
            part_n = (N + nthreads - 1) // nthreads
            part_o = (Cout + nthreads - 1) // nthreads
            for blk in prange(nthreads, num_threads=nthreads, schedule="static"):
                o0 = blk * part_o
                o1 = min(Cout, o0 + part_o)
                _blas(TRANS, NO_TRANS, o1 - o0, Cin, N, dout + o0, Cout, x, Cin, 1.0,
                      dw + o0 * Cin, Cin)
                r0 = blk * part_n
                r1 = min(N, r0 + part_n)
                _blas(NO_TRANS, NO_TRANS, r1 - r0, Cin, Cout, dout + r0 * Cout, Cout, w, Cin,
                      beta, dx + r0 * Cin, Cin)
        else:
            _blas(TRANS, NO_TRANS, Cout, Cin, N, dout, Cout, x, Cin, 1.0, dw, Cin)
            _blas(NO_TRANS, NO_TRANS, N, Cin, Cout, dout, Cout, w, Cin, beta, dx, Cin)
        return
    gemm_hand(dw, dout, 1, Cout, x, Cout, N, Cin, True, nthreads)
    gemm_hand(dx, dout, Cout, 1, w, N, Cout, Cin, accumulate_dx, nthreads)


cdef void encoder_fwd(real* out, const int64_t* tokens, const int64_t* pos, const real* wte,
                      const real* wpe, Py_ssize_t N, Py_ssize_t C) noexcept nogil:
    """out[n] = wte[tokens[n]] + wpe[pos[n]]."""
    cdef Py_ssize_t n, i
    for n in range(N):
        for i in range(C):
            out[n * C + i] = wte[tokens[n] * C + i] + wpe[pos[n] * C + i]


cdef void encoder_bwd(real* dwte, real* dwpe, const real* dout, const int64_t* tokens,
                      const int64_t* pos, Py_ssize_t N, Py_ssize_t C) noexcept nogil:
    """dwte[tokens[n]] += dout[n]; dwpe[pos[n]] += dout[n]."""
    cdef Py_ssize_t n, i
    for n in range(N):
        for i in range(C):
            dwte[tokens[n] * C + i] += dout[n * C + i]
            dwpe[pos[n] * C + i] += dout[n * C + i]


cdef void rmsnorm_fwd(real* out, real* rstd, const real* x, Py_ssize_t N,
                      Py_ssize_t C) noexcept nogil:
    """out[n] = x[n] * rstd[n], rstd[n] = (mean(x[n]^2) + 1e-5)^(-1/2); keeps rstd."""
    cdef Py_ssize_t n, i
    cdef double ss
    cdef real r
    for n in range(N):
        ss = 0.0
        for i in range(C):
            ss += x[n * C + i] * x[n * C + i]
        r = <real>(1.0 / sqrt(ss / C + RMS_EPS))
        rstd[n] = r
        for i in range(C):
            out[n * C + i] = x[n * C + i] * r


cdef void rmsnorm_bwd(real* dx, const real* dout, const real* x, const real* rstd, Py_ssize_t N,
                      Py_ssize_t C) noexcept nogil:
    """dx[n] += rstd*dout - x * rstd^3 * mean(dout * x)  (accumulates, for the residual stream)."""
    cdef Py_ssize_t n, i
    cdef double dot
    cdef real r, coef
    for n in range(N):
        dot = 0.0
        for i in range(C):
            dot += dout[n * C + i] * x[n * C + i]
        r = rstd[n]
        coef = <real>(r * r * r * dot / C)
        for i in range(C):
            dx[n * C + i] += r * dout[n * C + i] - coef * x[n * C + i]


cdef void relu_fwd(real* out, const real* x, Py_ssize_t n) noexcept nogil:
    """out = max(x, 0) (may be done in place)."""
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = x[i] if x[i] > 0 else 0


cdef void relu_bwd(real* dx, const real* dout, const real* out, Py_ssize_t n) noexcept nogil:
    """dx = dout where the output was positive, else 0 (may be done in place)."""
    cdef Py_ssize_t i
    for i in range(n):
        dx[i] = dout[i] if out[i] > 0 else 0


cdef void _attention_row(real* out, real* att, const real* q, const real* k, const real* v,
                         Py_ssize_t n, Py_ssize_t start, Py_ssize_t h, Py_ssize_t C,
                         Py_ssize_t hd, real scale) noexcept nogil:
    """One token n, one head h: scores against keys start..n, softmax into att[0..n-start],
    weighted sum of values into out (n, h*hd : (h+1)*hd)."""
    cdef Py_ssize_t s, j, L = n - start + 1
    cdef const real* qh = q + n * C + h * hd
    cdef const real* kh
    cdef real* oh = out + n * C + h * hd
    cdef real score, mx = -1e30, total = 0, w
    for s in range(L):
        kh = k + (start + s) * C + h * hd
        score = _dot(qh, kh, hd) * scale
        att[s] = score
        if score > mx:
            mx = score
    for s in range(L):
        att[s] = exp(att[s] - mx)
        total += att[s]
    for j in range(hd):
        oh[j] = 0
    for s in range(L):
        att[s] /= total
        w = att[s]
        kh = v + (start + s) * C + h * hd
        for j in range(hd):
            oh[j] += w * kh[j]


# Attention of one (sequence, head) as four small matrix products (BLAS): with T = 64 the
# products are large enough for BLAS' vector kernels, whose width our portable loops lack.
# Full T x T products do twice the causal work but run several times faster than the loops.

cdef inline bint _attn_blas(const real* x, const int64_t* cu_seqlens, Py_ssize_t B,
                            Py_ssize_t hd) noexcept nogil:
    """True when the longest sequence's T*T*hd reaches the attention BLAS threshold (forward and
    backward must agree: the BLAS backward reads the zeros its forward writes above the diagonal)."""
    cdef Py_ssize_t b, T = 0
    for b in range(B):
        T = max(T, cu_seqlens[b + 1] - cu_seqlens[b])
    if real is float:
        return _sgemm != NULL and T * T * hd >= _attn_blas_min_flops
    else:
        return _dgemm != NULL and T * T * hd >= _attn_blas_min_flops


cdef void _attention_fwd_head_blas(real* out, real* att, const real* q, const real* k,
                                   const real* v, Py_ssize_t start, Py_ssize_t T, Py_ssize_t h,
                                   Py_ssize_t C, Py_ssize_t hd, Py_ssize_t att_sn,
                                   real scale) noexcept nogil:
    """One head over tokens start..start+T-1: att (T, T; row stride att_sn) = causal softmax of
    scale * q_h k_h^T (zeros above the diagonal), out_h (T, hd) = att @ v_h."""
    cdef Py_ssize_t n, s, off = start * C + h * hd
    cdef real mx, total
    cdef real* row
    _blas(NO_TRANS, TRANS, T, T, hd, q + off, C, k + off, C, 0.0, att, att_sn)
    for n in range(T):
        row = att + n * att_sn
        mx = row[0]
        for s in range(1, n + 1):
            if row[s] > mx:
                mx = row[s]
        total = 0
        for s in range(n + 1):
            if real is float:
                row[s] = expf((row[s] - mx) * scale)
            else:
                row[s] = exp((row[s] - mx) * scale)
            total += row[s]
        total = 1 / total
        for s in range(n + 1):
            row[s] *= total
        for s in range(n + 1, T):
            row[s] = 0
    _blas(NO_TRANS, NO_TRANS, T, hd, T, att, att_sn, v + off, C, 0.0, out + off, C)


cdef void _attention_bwd_head_blas(real* dq, real* dk, real* dv, real* dp, const real* dout,
                                   const real* q, const real* k, const real* v, const real* att,
                                   Py_ssize_t start, Py_ssize_t T, Py_ssize_t h, Py_ssize_t C,
                                   Py_ssize_t hd, Py_ssize_t att_sn, real scale) noexcept nogil:
    """Backward of _attention_fwd_head_blas; dp is (T, T) scratch. dq, dk, dv += (T, hd)."""
    cdef Py_ssize_t n, s, off = start * C + h * hd
    cdef const real* a
    cdef real* row
    cdef real dot
    _blas(TRANS, NO_TRANS, T, hd, T, att, att_sn, dout + off, C, 1.0, dv + off, C)
    _blas(NO_TRANS, TRANS, T, T, hd, dout + off, C, v + off, C, 0.0, dp, T)
    for n in range(T):  # softmax backward, row by row; zeros above the diagonal
        a = att + n * att_sn
        row = dp + n * T
        dot = 0
        for s in range(n + 1):
            dot += a[s] * row[s]
        for s in range(n + 1):
            row[s] = a[s] * (row[s] - dot) * scale
        for s in range(n + 1, T):
            row[s] = 0
    _blas(NO_TRANS, NO_TRANS, T, hd, T, dp, T, k + off, C, 1.0, dq + off, C)
    _blas(TRANS, NO_TRANS, T, hd, T, dp, T, q + off, C, 1.0, dk + off, C)


cdef void attention_fwd(real* out, real* att, const real* q, const real* k, const real* v,
                        const int64_t* pos, const int64_t* cu_seqlens, Py_ssize_t B,
                        Py_ssize_t N, Py_ssize_t C, Py_ssize_t NH, Py_ssize_t att_sn,
                        Py_ssize_t att_sh, int nthreads) noexcept nogil:
    """Causal multi-head attention within each packed sequence.

    q, k, v, out: (N, C); token n attends to positions n - pos[n] .. n (sequence b holds tokens
    cu_seqlens[b] .. cu_seqlens[b+1]-1). att keeps the softmax weights: token n, head h, key s
    at att[n*att_sn + h*att_sh + s]. Long sequences go to BLAS, one task per (sequence, head).
    """
    cdef Py_ssize_t n, h, b, task, t0, hd = C // NH
    cdef real scale = <real>(1.0 / sqrt(<double>hd))
    if _attn_blas(q, cu_seqlens, B, hd):
        if nthreads > 1 and B * NH > 1 and N * att_sh * C >= _parallel_min_flops:
            for task in prange(B * NH, num_threads=nthreads, schedule="dynamic"):
                b = task // NH
                h = task % NH
                t0 = cu_seqlens[b]
                _attention_fwd_head_blas(out, att + t0 * att_sn + h * att_sh, q, k, v, t0,
                                         cu_seqlens[b + 1] - t0, h, C, hd, att_sn, scale)
        else:
            for task in range(B * NH):
                b = task // NH
                h = task % NH
                t0 = cu_seqlens[b]
                _attention_fwd_head_blas(out, att + t0 * att_sn + h * att_sh, q, k, v, t0,
                                         cu_seqlens[b + 1] - t0, h, C, hd, att_sn, scale)
        return
    if nthreads > 1 and N * N * C >= _parallel_min_flops:
        for task in prange(N * NH, num_threads=nthreads, schedule="static"):
            n = task // NH
            h = task % NH
            _attention_row(out, att + n * att_sn + h * att_sh, q, k, v, n, n - pos[n], h, C, hd,
                           scale)
    else:
        for n in range(N):
            for h in range(NH):
                _attention_row(out, att + n * att_sn + h * att_sh, q, k, v, n, n - pos[n], h, C,
                               hd, scale)


cdef void _attention_bwd_head(real* dq, real* dk, real* dv, real* dpre, const real* dout,
                              const real* q, const real* k, const real* v, const real* att,
                              Py_ssize_t start, Py_ssize_t end, Py_ssize_t h, Py_ssize_t C,
                              Py_ssize_t hd, Py_ssize_t att_sn, Py_ssize_t att_sh,
                              real scale) noexcept nogil:
    """Backward of one head over one sequence (tokens start..end-1); dpre is (T,) scratch."""
    cdef Py_ssize_t n, s, j, L, off = h * hd
    cdef const real* a
    cdef const real* do_n
    cdef real* dvs
    cdef real* dks
    cdef real* dqn
    cdef const real* ks
    cdef const real* qn
    cdef real dot, g
    for n in range(start, end):
        L = n - start + 1
        a = att + n * att_sn + h * att_sh
        do_n = dout + n * C + off
        dot = 0
        for s in range(L):  # d(att)[s] = dout . v[s];  dv[s] += att[s] * dout
            g = _dot(do_n, v + (start + s) * C + off, hd)
            dvs = dv + (start + s) * C + off
            for j in range(hd):
                dvs[j] += a[s] * do_n[j]
            dpre[s] = g
            dot += a[s] * g
        dqn = dq + n * C + off
        qn = q + n * C + off
        for s in range(L):  # softmax backward, then the scaled dot products
            g = a[s] * (dpre[s] - dot) * scale
            ks = k + (start + s) * C + off
            dks = dk + (start + s) * C + off
            for j in range(hd):
                dqn[j] += g * ks[j]
            for j in range(hd):
                dks[j] += g * qn[j]


cdef void attention_bwd(real* dq, real* dk, real* dv, real* dpre, const real* dout,
                        const real* q, const real* k, const real* v, const real* att,
                        const int64_t* cu_seqlens, Py_ssize_t B, Py_ssize_t C, Py_ssize_t NH,
                        Py_ssize_t block, Py_ssize_t att_sn, Py_ssize_t att_sh,
                        int nthreads) noexcept nogil:
    """dq, dk, dv (N, C) += gradients through attention; one task per (sequence, head), each with
    its own (block, block) slab of dpre scratch, so no two threads write the same element."""
    cdef Py_ssize_t task, b, h, t0, hd = C // NH
    cdef real scale = <real>(1.0 / sqrt(<double>hd))
    cdef Py_ssize_t N = cu_seqlens[B]
    if _attn_blas(q, cu_seqlens, B, hd):  # dpre holds a (block, block) scratch per task
        if nthreads > 1 and B * NH > 1 and N * block * C >= _parallel_min_flops:
            for task in prange(B * NH, num_threads=nthreads, schedule="dynamic"):
                b = task // NH
                h = task % NH
                t0 = cu_seqlens[b]
                _attention_bwd_head_blas(dq, dk, dv, dpre + task * block * block, dout, q, k,
                                         v, att + t0 * att_sn + h * att_sh, t0,
                                         cu_seqlens[b + 1] - t0, h, C, hd, att_sn, scale)
        else:
            for task in range(B * NH):
                b = task // NH
                h = task % NH
                t0 = cu_seqlens[b]
                _attention_bwd_head_blas(dq, dk, dv, dpre, dout, q, k, v,
                                         att + t0 * att_sn + h * att_sh, t0,
                                         cu_seqlens[b + 1] - t0, h, C, hd, att_sn, scale)
        return
    if nthreads > 1 and B * NH > 1 and N * block * C >= _parallel_min_flops:
        for task in prange(B * NH, num_threads=nthreads, schedule="dynamic"):
            b = task // NH
            h = task % NH
            _attention_bwd_head(dq, dk, dv, dpre + task * block, dout, q, k, v, att,
                                cu_seqlens[b], cu_seqlens[b + 1], h, C, hd, att_sn, att_sh, scale)
    else:
        for task in range(B * NH):
            b = task // NH
            h = task % NH
            _attention_bwd_head(dq, dk, dv, dpre, dout, q, k, v, att, cu_seqlens[b],
                                cu_seqlens[b + 1], h, C, hd, att_sn, att_sh, scale)


cdef double crossentropy_fwd(real* probs, real* losses, const real* logits,
                             const int64_t* targets, Py_ssize_t N, Py_ssize_t V) noexcept nogil:
    """probs = softmax(logits) row by row (max-subtracted); losses[n] = -log probs[n, target];
    returns the sum of the losses."""
    cdef Py_ssize_t n, i
    cdef real mx
    cdef double total, loss_sum = 0.0
    for n in range(N):
        mx = logits[n * V]
        for i in range(1, V):
            if logits[n * V + i] > mx:
                mx = logits[n * V + i]
        total = 0.0
        for i in range(V):
            probs[n * V + i] = exp(logits[n * V + i] - mx)
            total += probs[n * V + i]
        for i in range(V):
            probs[n * V + i] = <real>(probs[n * V + i] / total)
        losses[n] = <real>(-log(probs[n * V + targets[n]]))
        loss_sum += losses[n]
    return loss_sum


cdef void crossentropy_bwd(real* dlogits, const real* probs, const int64_t* targets,
                           real dloss, Py_ssize_t N, Py_ssize_t V) noexcept nogil:
    """dlogits[n] = dloss * (probs[n] - onehot(target[n])), the same dloss for every row."""
    cdef Py_ssize_t n, i
    for n in range(N):
        for i in range(V):
            dlogits[n * V + i] = dloss * probs[n * V + i]
        dlogits[n * V + targets[n]] -= dloss


cdef void _adamw_range(real* params, const real* grads, real* m, real* v, Py_ssize_t i0,
                       Py_ssize_t i1, real b1, real b2, real gs, real step, real inv_sqrt_c2,
                       real e, real decay) noexcept nogil:
    """AdamW on elements i0..i1-1 (constants precomputed by adamw)."""
    cdef Py_ssize_t i
    cdef real g
    for i in range(i0, i1):
        g = grads[i] * gs
        m[i] = b1 * m[i] + (1 - b1) * g
        v[i] = b2 * v[i] + (1 - b2) * g * g
        if real is float:
            params[i] = params[i] * decay - step * m[i] / (sqrtf(v[i]) * inv_sqrt_c2 + e)
        else:
            params[i] = params[i] * decay - step * m[i] / (sqrt(v[i]) * inv_sqrt_c2 + e)


cdef void adamw(real* params, const real* grads, real* m, real* v, Py_ssize_t n, int t,
                double lr, double beta1, double beta2, double eps, double weight_decay,
                double grad_scale, int nthreads) noexcept nogil:
    """AdamW as PyTorch does it: p *= 1 - lr*wd; p -= lr * m_hat / (sqrt(v_hat) + eps).
    grad_scale multiplies every gradient first (gradient clipping). The bias corrections are
    folded into two constants so the loop is one sqrt and one division per parameter. With
    threads, each takes one contiguous slab of the buffers."""
    cdef Py_ssize_t c, part = (n + nthreads - 1) // nthreads
    cdef real step = lr / (1.0 - beta1 ** t)              # lr / c1
    cdef real inv_sqrt_c2 = 1.0 / sqrt(1.0 - beta2 ** t)   # sqrt(v_hat) = sqrt(v) / sqrt(c2)
    cdef real decay = 1.0 - lr * weight_decay
    if nthreads > 1 and n >= _parallel_min_flops // 16:
        for c in prange(nthreads, num_threads=nthreads, schedule="static"):
            _adamw_range(params, grads, m, v, c * part, min(n, c * part + part), beta1, beta2,
                         grad_scale, step, inv_sqrt_c2, eps, decay)
    else:
        _adamw_range(params, grads, m, v, 0, n, beta1, beta2, grad_scale, step, inv_sqrt_c2,
                     eps, decay)


# ----------------------------------------------------------------------------------------------
# The model: one flat workspace, named slabs, and forward / backward over all layers.

cdef struct Layout:
    # sizes
    Py_ssize_t N, B, C, NH, L, V, block
    # parameter offsets: wte, wpe, lm_head, then per layer (wq, wk, wv, wo, fc1, fc2)
    Py_ssize_t p_wte, p_wpe, p_lm, p_layer0, p_layer_size
    # activation offsets (in elements): global slabs
    Py_ssize_t emb, rstd0, logits, probs, losses
    # per layer slabs: a_layer0 + l * a_layer_size + offset
    Py_ssize_t a_layer0, a_layer_size
    Py_ssize_t resid, ln1, rstd1, q, k, v, att, atty, res_mid, ln2, rstd2, fch, res_out
    # backward scratch
    Py_ssize_t dres, dln, dq, dk, dv, datty, dfch, dpre, total


cdef Layout make_layout(Py_ssize_t N, Py_ssize_t B, Py_ssize_t C, Py_ssize_t NH, Py_ssize_t L,
                        Py_ssize_t V, Py_ssize_t block) noexcept nogil:
    """Where each activation lives in the workspace, for N packed tokens in B sequences."""
    cdef Layout s
    cdef Py_ssize_t o = 0, w
    s.N, s.B, s.C, s.NH, s.L, s.V, s.block = N, B, C, NH, L, V, block
    s.p_wte = 0
    s.p_wpe = V * C
    s.p_lm = s.p_wpe + block * C
    s.p_layer0 = s.p_lm + V * C
    s.p_layer_size = 12 * C * C
    s.emb = o; o += N * C
    s.rstd0 = o; o += N
    s.logits = o; o += N * V
    s.probs = o; o += N * V
    s.losses = o; o += N
    s.a_layer0 = o
    w = 0
    s.resid = w; w += N * C     # input of the layer (the residual stream)
    s.ln1 = w; w += N * C
    s.rstd1 = w; w += N
    s.q = w; w += N * C
    s.k = w; w += N * C
    s.v = w; w += N * C
    s.att = w; w += N * NH * block
    s.atty = w; w += N * C
    s.res_mid = w; w += N * C
    s.ln2 = w; w += N * C
    s.rstd2 = w; w += N
    s.fch = w; w += 4 * N * C   # relu(fc1 x)
    s.a_layer_size = w
    o += L * w
    s.res_out = o; o += N * C   # output of the last layer
    s.dres = o; o += N * C
    s.dln = o; o += N * C
    s.dq = o; o += N * C
    s.dk = o; o += N * C
    s.dv = o; o += N * C
    s.datty = o; o += N * C
    s.dfch = o; o += 4 * N * C
    s.dpre = o; o += B * NH * block * block
    s.total = o
    return s


cdef inline real* layer_act(real* acts, Layout* s, Py_ssize_t l, Py_ssize_t offset) noexcept nogil:
    return acts + s.a_layer0 + l * s.a_layer_size + offset


cdef double gpt_fwd(real* p, real* acts, const int64_t* tokens, const int64_t* targets,
                    const int64_t* pos, const int64_t* cu_seqlens, Layout* s,
                    int nthreads) noexcept nogil:
    """Forward over all layers; returns the sum of the per-token losses (acts keeps the caches)."""
    cdef Py_ssize_t l, N = s.N, C = s.C
    cdef real* lp
    cdef real* x
    cdef real* nxt
    encoder_fwd(acts + s.emb, tokens, pos, p + s.p_wte, p + s.p_wpe, N, C)
    rmsnorm_fwd(layer_act(acts, s, 0, s.resid), acts + s.rstd0, acts + s.emb, N, C)
    for l in range(s.L):
        lp = p + s.p_layer0 + l * s.p_layer_size
        x = layer_act(acts, s, l, 0)
        nxt = layer_act(acts, s, l + 1, s.resid) if l + 1 < s.L else acts + s.res_out
        rmsnorm_fwd(x + s.ln1, x + s.rstd1, x + s.resid, N, C)
        matmul_fwd(x + s.q, x + s.ln1, lp, N, C, C, nthreads)
        matmul_fwd(x + s.k, x + s.ln1, lp + C * C, N, C, C, nthreads)
        matmul_fwd(x + s.v, x + s.ln1, lp + 2 * C * C, N, C, C, nthreads)
        attention_fwd(x + s.atty, x + s.att, x + s.q, x + s.k, x + s.v, pos, cu_seqlens, s.B, N,
                      C, s.NH, s.NH * s.block, s.block, nthreads)
        matmul_fwd(x + s.res_mid, x + s.atty, lp + 3 * C * C, N, C, C, nthreads)
        _add_inplace(x + s.res_mid, x + s.resid, N * C)
        rmsnorm_fwd(x + s.ln2, x + s.rstd2, x + s.res_mid, N, C)
        matmul_fwd(x + s.fch, x + s.ln2, lp + 4 * C * C, N, C, 4 * C, nthreads)
        relu_fwd(x + s.fch, x + s.fch, 4 * N * C)
        matmul_fwd(nxt, x + s.fch, lp + 8 * C * C, N, 4 * C, C, nthreads)
        _add_inplace(nxt, x + s.res_mid, N * C)
    matmul_fwd(acts + s.logits, acts + s.res_out, p + s.p_lm, N, C, s.V, nthreads)
    return crossentropy_fwd(acts + s.probs, acts + s.losses, acts + s.logits, targets, N, s.V)


cdef inline void _add_inplace(real* y, const real* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        y[i] += x[i]


cdef void gpt_bwd(real* p, real* g, real* acts, const int64_t* tokens, const int64_t* targets,
                  const int64_t* pos, const int64_t* cu_seqlens, Layout* s,
                  int nthreads) noexcept nogil:
    """Backward of the mean loss over the N tokens; adds its gradient into g (+=)."""
    cdef Py_ssize_t l, N = s.N, C = s.C
    cdef real* lp
    cdef real* lg
    cdef real* x
    cdef real* dres = acts + s.dres
    cdef real* dln = acts + s.dln
    cdef real* dlogits = acts + s.logits  # the logits are not needed again: reuse their slab
    cdef real* xin
    crossentropy_bwd(dlogits, acts + s.probs, targets, <real>(1.0 / N), N, s.V)
    matmul_bwd(dres, g + s.p_lm, dlogits, acts + s.res_out, p + s.p_lm, N, C, s.V, False,
               nthreads)
    l = s.L - 1
    while l >= 0:
        lp = p + s.p_layer0 + l * s.p_layer_size
        lg = g + s.p_layer0 + l * s.p_layer_size
        x = layer_act(acts, s, l, 0)
        # MLP block: dres is the gradient of the layer output; it flows to res_mid unchanged.
        matmul_bwd(acts + s.dfch, lg + 8 * C * C, dres, x + s.fch, lp + 8 * C * C, N, 4 * C, C,
                   False, nthreads)
        relu_bwd(acts + s.dfch, acts + s.dfch, x + s.fch, 4 * N * C)
        matmul_bwd(dln, lg + 4 * C * C, acts + s.dfch, x + s.ln2, lp + 4 * C * C, N, C, 4 * C,
                   False, nthreads)
        rmsnorm_bwd(dres, dln, x + s.res_mid, x + s.rstd2, N, C)
        # attention block
        matmul_bwd(acts + s.datty, lg + 3 * C * C, dres, x + s.atty, lp + 3 * C * C, N, C, C,
                   False, nthreads)
        memset(acts + s.dq, 0, 3 * N * C * sizeof(real))
        attention_bwd(acts + s.dq, acts + s.dk, acts + s.dv, acts + s.dpre, acts + s.datty,
                      x + s.q, x + s.k, x + s.v, x + s.att, cu_seqlens, s.B, C, s.NH, s.block,
                      s.NH * s.block, s.block, nthreads)
        matmul_bwd(dln, lg, acts + s.dq, x + s.ln1, lp, N, C, C, False, nthreads)
        matmul_bwd(dln, lg + C * C, acts + s.dk, x + s.ln1, lp + C * C, N, C, C, True, nthreads)
        matmul_bwd(dln, lg + 2 * C * C, acts + s.dv, x + s.ln1, lp + 2 * C * C, N, C, C, True,
                   nthreads)
        rmsnorm_bwd(dres, dln, x + s.resid, x + s.rstd1, N, C)
        l -= 1
    # dres is now the gradient of rmsnorm(embedding): back through the first norm and the tables
    memset(dln, 0, N * C * sizeof(real))
    rmsnorm_bwd(dln, dres, acts + s.emb, acts + s.rstd0, N, C)
    encoder_bwd(g + s.p_wte, g + s.p_wpe, dln, tokens, pos, N, C)


cdef double grad_norm(const real* g, Py_ssize_t n, int nthreads) noexcept nogil:
    """Euclidean norm of g: vectorised sums over chunks of 4096, the chunks added in double."""
    cdef Py_ssize_t c, nchunk = (n + 4095) // 4096
    cdef double ss = 0.0
    if nthreads > 1 and n >= _parallel_min_flops // 16:
        for c in prange(nchunk, num_threads=nthreads, schedule="static"):
            ss += _dot(g + c * 4096, g + c * 4096, min(<Py_ssize_t>4096, n - c * 4096))
    else:
        for c in range(nchunk):
            ss += _dot(g + c * 4096, g + c * 4096, min(<Py_ssize_t>4096, n - c * 4096))
    return sqrt(ss)


# ----------------------------------------------------------------------------------------------
# Python entry points. Each one checks what it is given and raises ValueError before any C runs.

cdef extern from *:
    """
    #ifdef _OPENMP
    #define FASTOPS_OPENMP 1
    #else
    #define FASTOPS_OPENMP 0
    #endif
    """
    int FASTOPS_OPENMP


def openmp_enabled() -> bool:
    """True when this build was compiled with OpenMP (else every kernel runs on one thread)."""
    return bool(FASTOPS_OPENMP)


cdef extern from *:
    """
    static int fastops_cpu_has_x86_64_v3(void) {
    #if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
        __builtin_cpu_init();
        return __builtin_cpu_supports("x86-64-v3") > 0;
    #elif defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
            && __builtin_cpu_supports("bmi2");
    #else
        return 0;
    #endif
    }
    """
    int fastops_cpu_has_x86_64_v3()


def cpu_has_x86_64_v3() -> bool:
    """True when this CPU and OS run x86-64-v3 code (AVX2, FMA, BMI2...): the _gpt_v3 build."""
    return bool(fastops_cpu_has_x86_64_v3())


def set_blas(dgemm_address: int, sgemm_address: int) -> None:
    """Register the addresses of cblas_dgemm / cblas_sgemm with 64-bit ints (0 unregisters)."""
    global _dgemm, _sgemm
    _dgemm = <dgemm_t><size_t>dgemm_address
    _sgemm = <sgemm_t><size_t>sgemm_address


def set_blas_threshold(min_flops: int) -> None:
    """Products with M*K*N >= min_flops go to BLAS (if registered); the rest to our loops."""
    global _blas_min_flops
    _blas_min_flops = min_flops


def set_attention_blas_threshold(min_flops: int) -> None:
    """Attention of a sequence of T tokens goes to BLAS (if registered) when T*T*head_size >=
    min_flops; shorter sequences stay in the hand-written loops."""
    global _attn_blas_min_flops
    _attn_blas_min_flops = min_flops


def get_blas_threshold() -> int:
    """The current BLAS threshold in multiply-adds (M*K*N)."""
    return _blas_min_flops


def set_parallel_threshold(min_flops: int) -> None:
    """Below this many multiply-adds a kernel runs on one thread even when more are allowed."""
    global _parallel_min_flops
    _parallel_min_flops = min_flops


def get_parallel_threshold() -> int:
    """The current threshold (multiply-adds) below which kernels stay on one thread."""
    return _parallel_min_flops


def workspace_size(int n_tokens, int n_seqs, int n_embd, int n_head, int n_layer, int vocab_size,
                   int block_size) -> int:
    """Elements of the activation workspace for n_tokens packed tokens in n_seqs sequences."""
    return make_layout(n_tokens, n_seqs, n_embd, n_head, n_layer, vocab_size, block_size).total


def activation_offsets(int n_tokens, int n_seqs, int n_embd, int n_head, int n_layer,
                       int vocab_size, int block_size) -> dict:
    """Where the model-wide activations start in the workspace: name -> element offset."""
    cdef Layout s = make_layout(n_tokens, n_seqs, n_embd, n_head, n_layer, vocab_size,
                                block_size)
    return {"emb": s.emb, "rstd0": s.rstd0, "logits": s.logits, "probs": s.probs,
            "losses": s.losses, "res_out": s.res_out}


cdef int64_t* _positions(const int64_t[::1] tokens, const int64_t[::1] targets,
                         const int64_t[::1] cu_seqlens, Py_ssize_t n_params, Py_ssize_t n_acts,
                         int C, int NH, int L, int V, int block) except NULL:
    """Check a packed batch against the model and return each token's position (malloc'd)."""
    cdef Py_ssize_t n, b, N = tokens.shape[0], B = cu_seqlens.shape[0] - 1
    cdef Layout s
    cdef int64_t* pos
    if C <= 0 or NH <= 0 or L <= 0 or V <= 0 or block <= 0 or C % NH:
        raise ValueError(f"bad model sizes: n_embd={C}, n_head={NH}, n_layer={L}, "
                         f"vocab_size={V}, block_size={block}")
    if N == 0 or B < 1:
        raise ValueError("the batch holds no tokens")
    if targets.shape[0] != N:
        raise ValueError(f"tokens ({N}) and targets ({targets.shape[0]}) differ in length")
    if cu_seqlens[0] != 0 or cu_seqlens[B] != N:
        raise ValueError(f"cu_seqlens must run from 0 to the number of tokens {N}")
    for b in range(B):
        if not 0 < cu_seqlens[b + 1] - cu_seqlens[b] <= block:
            raise ValueError(f"sequence {b} has {cu_seqlens[b + 1] - cu_seqlens[b]} tokens; "
                             f"each needs 1..block_size={block}")
    for n in range(N):
        if not (0 <= tokens[n] < V and 0 <= targets[n] < V):
            raise ValueError(f"token id {tokens[n]} or target {targets[n]} at {n} is outside "
                             f"the vocabulary 0..{V - 1}")
    if n_params != V * C + block * C + V * C + L * 12 * C * C:
        raise ValueError(f"the parameter buffer holds {n_params} numbers, this model needs "
                         f"{V * C + block * C + V * C + L * 12 * C * C}")
    s = make_layout(N, B, C, NH, L, V, block)
    if n_acts < s.total:
        raise ValueError(f"the workspace holds {n_acts} numbers, this batch needs {s.total}")
    pos = <int64_t*>malloc(N * sizeof(int64_t))
    if pos == NULL:
        raise MemoryError()
    for b in range(B):
        for n in range(cu_seqlens[b], cu_seqlens[b + 1]):
            pos[n] = n - cu_seqlens[b]
    return pos


def gpt_loss(real[::1] params, real[::1] grads, real[::1] acts, const int64_t[::1] tokens,
             const int64_t[::1] targets, const int64_t[::1] cu_seqlens, int n_embd, int n_head,
             int n_layer, int vocab_size, int block_size, bint backward=True,
             int num_threads=1) -> float:
    """Mean cross-entropy of a packed batch; with backward, grads += its gradient.

    params, grads: (num_params,) flat, FlatParams order; acts: (workspace_size(...),) scratch that
    keeps the caches (logits, probs, att, ...); tokens, targets: (N,) int64; cu_seqlens: (B+1,)
    int64 offsets of the sequences in the packed tokens.
    """
    if grads.shape[0] != params.shape[0]:
        raise ValueError(f"grads ({grads.shape[0]}) and params ({params.shape[0]}) differ")
    cdef int64_t* pos = _positions(tokens, targets, cu_seqlens, params.shape[0], acts.shape[0],
                                   n_embd, n_head, n_layer, vocab_size, block_size)
    cdef Layout s = make_layout(tokens.shape[0], cu_seqlens.shape[0] - 1, n_embd, n_head,
                                n_layer, vocab_size, block_size)
    cdef double loss
    try:
        with nogil:
            loss = gpt_fwd(&params[0], &acts[0], &tokens[0], &targets[0], pos, &cu_seqlens[0], &s,
                           num_threads)
            if backward:
                gpt_bwd(&params[0], &grads[0], &acts[0], &tokens[0], &targets[0], pos,
                        &cu_seqlens[0], &s, num_threads)
    finally:
        free(pos)
    return loss / s.N


def adamw_update(real[::1] params, real[::1] grads, real[::1] m, real[::1] v, int t, double lr,
                 double beta1, double beta2, double eps, double weight_decay=0.0,
                 double clip_norm=0.0) -> float:
    """AdamW step over flat buffers (grads kept); clip_norm > 0 rescales the gradient to at most
    that global norm first, as torch.nn.utils.clip_grad_norm_. Returns the gradient's norm."""
    cdef Py_ssize_t n = params.shape[0]
    if grads.shape[0] != n or m.shape[0] != n or v.shape[0] != n:
        raise ValueError(f"adamw_update: params, grads, m, v must have one length, got "
                         f"{n}, {grads.shape[0]}, {m.shape[0]}, {v.shape[0]}")
    if t < 1:
        raise ValueError(f"adamw_update: step count t starts at 1, got {t}")
    cdef double norm, scale = 1.0
    with nogil:
        norm = grad_norm(&grads[0], n, 1)
        if clip_norm > 0 and norm > clip_norm:
            scale = clip_norm / (norm + 1e-6)
        adamw(&params[0], &grads[0], &m[0], &v[0], n, t, lr, beta1, beta2, eps, weight_decay,
              scale, 1)
    return norm


def train_step(real[::1] params, real[::1] grads, real[::1] m, real[::1] v, real[::1] acts,
               const int64_t[::1] tokens, const int64_t[::1] targets,
               const int64_t[::1] cu_seqlens, int n_embd, int n_head, int n_layer, int vocab_size,
               int block_size, int t, double lr, double beta1, double beta2, double eps,
               double weight_decay=0.0, double clip_norm=0.0, int num_threads=1) -> float:
    """Forward, backward and AdamW in one call with no Python in between; returns the mean loss."""
    if not (grads.shape[0] == m.shape[0] == v.shape[0] == params.shape[0]):
        raise ValueError("params, grads, m and v must have one length")
    if t < 1:
        raise ValueError(f"train_step: step count t starts at 1, got {t}")
    cdef int64_t* pos = _positions(tokens, targets, cu_seqlens, params.shape[0], acts.shape[0],
                                   n_embd, n_head, n_layer, vocab_size, block_size)
    cdef Layout s = make_layout(tokens.shape[0], cu_seqlens.shape[0] - 1, n_embd, n_head,
                                n_layer, vocab_size, block_size)
    cdef double loss, norm, scale = 1.0
    cdef Py_ssize_t P = params.shape[0]
    try:
        with nogil:
            loss = gpt_fwd(&params[0], &acts[0], &tokens[0], &targets[0], pos, &cu_seqlens[0], &s,
                           num_threads)
            memset(&grads[0], 0, P * sizeof(real))
            gpt_bwd(&params[0], &grads[0], &acts[0], &tokens[0], &targets[0], pos,
                    &cu_seqlens[0], &s, num_threads)
            if clip_norm > 0:
                norm = grad_norm(&grads[0], P, num_threads)
                if norm > clip_norm:
                    scale = clip_norm / (norm + 1e-6)
            adamw(&params[0], &grads[0], &m[0], &v[0], P, t, lr, beta1, beta2, eps,
                  weight_decay, scale, num_threads)
    finally:
        free(pos)
    return loss / s.N


# ----------------------------------------------------------------------------------------------
# One Python function per kernel, with chapter 4's names and shapes (single sequence, (T, C)),
# so each C kernel can be tested against its NumPy twin in microgpt_lib.layers.

def _need(bint ok, str message):
    if not ok:
        raise ValueError(message)


def encoder_forward(const int64_t[::1] tokens, const real[:, ::1] wte, const real[:, ::1] wpe):
    """x (T, C) = wte[tokens] + wpe[:T]; tokens (T,) int64, wte (V, C), wpe (block, C)."""
    cdef Py_ssize_t T = tokens.shape[0], C = wte.shape[1], n
    _need(wpe.shape[1] == C, f"wte has {C} columns, wpe {wpe.shape[1]}")
    _need(0 < T <= wpe.shape[0], f"{T} tokens do not fit block_size {wpe.shape[0]}")
    for n in range(T):
        _need(0 <= tokens[n] < wte.shape[0], f"token id {tokens[n]} outside the vocabulary")
    dtype = np.float32 if real is float else np.float64
    out = np.empty((T, C), dtype=dtype)
    cdef real[:, ::1] o = out
    cdef int64_t[::1] pos = np.arange(T, dtype=np.int64)
    encoder_fwd(&o[0, 0], &tokens[0], &pos[0], &wte[0, 0], &wpe[0, 0], T, C)
    return out


def encoder_backward(real[:, ::1] dwte, real[:, ::1] dwpe, const real[:, ::1] dx,
                     const int64_t[::1] tokens):
    """dwte[tokens[t]] += dx[t]; dwpe[t] += dx[t]."""
    cdef Py_ssize_t T = tokens.shape[0], C = dx.shape[1], n
    _need(dx.shape[0] == T and dwte.shape[1] == C and dwpe.shape[1] == C and T <= dwpe.shape[0],
          "encoder_backward: shapes do not agree")
    for n in range(T):
        _need(0 <= tokens[n] < dwte.shape[0], f"token id {tokens[n]} outside the vocabulary")
    cdef int64_t[::1] pos = np.arange(T, dtype=np.int64)
    encoder_bwd(&dwte[0, 0], &dwpe[0, 0], &dx[0, 0], &tokens[0], &pos[0], T, C)


def rmsnorm_forward(const real[:, ::1] x):
    """(out (T, C), rstd (T,)) with out = x * rstd."""
    dtype = np.float32 if real is float else np.float64
    out = np.empty((x.shape[0], x.shape[1]), dtype=dtype)
    rstd = np.empty(x.shape[0], dtype=dtype)
    cdef real[:, ::1] o = out
    cdef real[::1] r = rstd
    rmsnorm_fwd(&o[0, 0], &r[0], &x[0, 0], x.shape[0], x.shape[1])
    return out, rstd


def rmsnorm_backward(const real[:, ::1] dout, const real[:, ::1] x, const real[::1] rstd):
    """dx (T, C) of out = rmsnorm(x)."""
    _need(dout.shape[0] == x.shape[0] == rstd.shape[0] and dout.shape[1] == x.shape[1],
          "rmsnorm_backward: dout, x and rstd do not agree")
    dx = np.zeros((x.shape[0], x.shape[1]), dtype=np.float32 if real is float else np.float64)
    cdef real[:, ::1] d = dx
    rmsnorm_bwd(&d[0, 0], &dout[0, 0], &x[0, 0], &rstd[0], x.shape[0], x.shape[1])
    return dx


def matmul_forward(const real[:, ::1] x, const real[:, ::1] w):
    """out (T, Cout) = x (T, Cin) @ w (Cout, Cin)^T."""
    cdef Py_ssize_t T = x.shape[0], Cin = x.shape[1], Cout = w.shape[0]
    _need(w.shape[1] == Cin, f"x has {Cin} columns but w is {Cout}x{w.shape[1]}")
    dtype = np.float32 if real is float else np.float64
    out = np.empty((T, Cout), dtype=dtype)
    cdef real[:, ::1] o = out
    matmul_fwd(&o[0, 0], &x[0, 0], &w[0, 0], T, Cin, Cout, 1)
    return out


def matmul_backward(const real[:, ::1] dout, const real[:, ::1] x, const real[:, ::1] w,
                    real[:, ::1] dw):
    """dw += dout^T @ x (in place); returns dx = dout @ w."""
    cdef Py_ssize_t T = x.shape[0], Cin = x.shape[1], Cout = w.shape[0]
    _need(w.shape[1] == Cin and dout.shape[0] == T and dout.shape[1] == Cout
          and dw.shape[0] == Cout and dw.shape[1] == Cin, "matmul_backward: shapes do not agree")
    dx = np.empty((T, Cin), dtype=np.float32 if real is float else np.float64)
    cdef real[:, ::1] d = dx
    matmul_bwd(&d[0, 0], &dw[0, 0], &dout[0, 0], &x[0, 0], &w[0, 0], T, Cin, Cout, False, 1)
    return dx


def attention_forward(const real[:, ::1] q, const real[:, ::1] k, const real[:, ::1] v,
                      int n_head):
    """Causal attention of one sequence: (out (T, C), att (n_head, T, T))."""
    cdef Py_ssize_t T = q.shape[0], C = q.shape[1]
    _need(k.shape[0] == v.shape[0] == T and k.shape[1] == v.shape[1] == C,
          "attention_forward: q, k, v must have one shape")
    _need(n_head > 0 and C % n_head == 0, f"n_head {n_head} does not divide {C}")
    dtype = np.float32 if real is float else np.float64
    out = np.empty((T, C), dtype=dtype)
    att = np.zeros((n_head, T, T), dtype=dtype)
    cdef real[:, ::1] o = out
    cdef real[:, :, ::1] a = att
    cdef int64_t[::1] pos = np.arange(T, dtype=np.int64)
    cdef int64_t[::1] cu = np.array([0, T], dtype=np.int64)
    attention_fwd(&o[0, 0], &a[0, 0, 0], &q[0, 0], &k[0, 0], &v[0, 0], &pos[0], &cu[0], 1, T, C,
                  n_head, T, T * T, 1)
    return out, att


def attention_backward(const real[:, ::1] dout, const real[:, ::1] q, const real[:, ::1] k,
                       const real[:, ::1] v, const real[:, :, ::1] att, int n_head):
    """(dq, dk, dv), each (T, C), of attention_forward."""
    cdef Py_ssize_t T = q.shape[0], C = q.shape[1]
    _need(dout.shape[0] == k.shape[0] == v.shape[0] == T
          and dout.shape[1] == k.shape[1] == v.shape[1] == C,
          "attention_backward: dout, q, k, v must have one shape")
    _need(n_head > 0 and C % n_head == 0, f"n_head {n_head} does not divide {C}")
    _need(att.shape[0] == n_head and att.shape[1] == T and att.shape[2] == T,
          "att must be (n_head, T, T)")
    dtype = np.float32 if real is float else np.float64
    dq, dk, dv = (np.zeros((T, C), dtype=dtype) for _ in range(3))
    dpre = np.empty(T * T, dtype=dtype)
    cdef real[:, ::1] a_dq = dq, a_dk = dk, a_dv = dv
    cdef real[::1] a_dpre = dpre
    cdef int64_t[::1] cu = np.array([0, T], dtype=np.int64)
    attention_bwd(&a_dq[0, 0], &a_dk[0, 0], &a_dv[0, 0], &a_dpre[0], &dout[0, 0], &q[0, 0],
                  &k[0, 0], &v[0, 0], &att[0, 0, 0], &cu[0], 1, C, n_head, T, T, T * T, 1)
    return dq, dk, dv


def relu_forward(const real[::1] x):
    """max(x, 0) of a flat array (pass x.ravel() for matrices)."""
    out = np.empty(x.shape[0], dtype=np.float32 if real is float else np.float64)
    cdef real[::1] o = out
    relu_fwd(&o[0], &x[0], x.shape[0])
    return out


def relu_backward(const real[::1] dout, const real[::1] out):
    """dout where relu's output was positive, else 0."""
    _need(dout.shape[0] == out.shape[0], "relu_backward: dout and out differ in length")
    dx = np.empty(out.shape[0], dtype=np.float32 if real is float else np.float64)
    cdef real[::1] d = dx
    relu_bwd(&d[0], &dout[0], &out[0], out.shape[0])
    return dx


def softmax_crossentropy_forward(const real[:, ::1] logits, const int64_t[::1] targets):
    """(losses (T,), probs (T, V)) of -log softmax(logits)[target]."""
    cdef Py_ssize_t T = logits.shape[0], V = logits.shape[1], n
    _need(targets.shape[0] == T, f"{T} rows of logits but {targets.shape[0]} targets")
    for n in range(T):
        _need(0 <= targets[n] < V, f"target {targets[n]} outside the vocabulary 0..{V - 1}")
    dtype = np.float32 if real is float else np.float64
    probs = np.empty((T, V), dtype=dtype)
    losses = np.empty(T, dtype=dtype)
    cdef real[:, ::1] p = probs
    cdef real[::1] l = losses
    crossentropy_fwd(&p[0, 0], &l[0], &logits[0, 0], &targets[0], T, V)
    return losses, probs


def softmax_crossentropy_backward(const real[:, ::1] probs, const int64_t[::1] targets,
                                  const real[::1] dlosses):
    """dlogits (T, V) = dlosses[t] * (probs[t] - onehot(targets[t]))."""
    cdef Py_ssize_t T = probs.shape[0], V = probs.shape[1], n, i
    _need(targets.shape[0] == T == dlosses.shape[0], "targets, dlosses and probs disagree")
    for n in range(T):
        _need(0 <= targets[n] < V, f"target {targets[n]} outside the vocabulary 0..{V - 1}")
    dlogits = np.empty((T, V), dtype=np.float32 if real is float else np.float64)
    cdef real[:, ::1] d = dlogits
    for n in range(T):  # one row at a time: each row has its own dloss
        crossentropy_bwd(&d[n, 0], &probs[n, 0], &targets[n], dlosses[n], 1, V)
    return dlogits
