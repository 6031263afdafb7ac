# The layers of the GPT in C: one forward/backward pair per layer, the twins, function for
# function, of the NumPy layers of chapter 4 (same names, same equations), plus AdamW.
#
# Shapes (every size is a Py_ssize_t, 64 bits on the machines fastops builds for):
#   N  = tokens in the packed batch        B  = sequences in it (cu_seqlens is (B+1,))
#   T  = tokens of one sequence (<= block) C  = channels (n_embd)      OC = output channels
#   NH = attention heads                   hd = C / NH, channels per head
#   V  = vocabulary size                   block = block_size, the longest sequence
# A batch is packed: the real tokens of its B sequences one after the other, no padding; token n
# of the batch sits at position pos[n] of its sequence. Every matrix is row-major and contiguous.
#
# Each kernel is a `cdef ... nogil` function on raw pointers, written once for float and double
# (`real`). Backward kernels accumulate weight gradients (+=), as llm.c's do. `nthreads` > 1
# shares a kernel's work among OpenMP threads when the work is large enough (blas_and_cpu.pxi).

cdef double RMS_EPS = 1e-5


# ----------------------------------------------------------------------------------------------
# Dot products. A sum in C (and Cython) must be added in the written order, which forbids vector
# registers; OpenMP's `simd reduction` pragma grants the compiler leave to reorder these sums
# (-fopenmp-simd needs no OpenMP runtime). Cython cannot emit a pragma, so these lines are C,
# pasted verbatim into the generated file.

cdef extern from *:
    """
    #define FASTOPS_DOT(T, NAME) \\
    static inline T NAME(const T* x, const T* w, Py_ssize_t n) { \\
        T s = 0; \\
        _Pragma("omp simd reduction(+:s)") \\
        for (Py_ssize_t i = 0; i < n; i++) s += x[i] * w[i]; \\
        return s; \\
    }
    FASTOPS_DOT(float, fastops_sdot)
    FASTOPS_DOT(double, fastops_ddot)
    """
    float fastops_sdot(const float*, const float*, Py_ssize_t) noexcept nogil
    double fastops_ddot(const double*, const double*, Py_ssize_t) noexcept nogil


cdef inline real _dot(const real* x, const real* y, Py_ssize_t n) noexcept nogil:
    """x . y with a vectorised (reordered) sum."""
    if real is float:
        return fastops_sdot(x, y, n)
    else:
        return fastops_ddot(x, y, n)


# ----------------------------------------------------------------------------------------------
# encoder: each token's embedding plus its position's.

cdef void encoder_forward(real* out,              # (N, C)
                          const int64_t* tokens,  # (N,) ids in 0..V-1
                          const int64_t* pos,     # (N,) positions in 0..block-1
                          const real* wte,        # (V, C)
                          const real* wpe,        # (block, C)
                          Py_ssize_t N, Py_ssize_t C) noexcept nogil:
    """out[n] = wte[tokens[n]] + wpe[pos[n]]."""
    cdef Py_ssize_t n, i
    for n in range(N):
        for i in range(C):
            out[n * C + i] = wte[tokens[n] * C + i] + wpe[pos[n] * C + i]


cdef void encoder_backward(real* dwte,             # (V, C), added to
                           real* dwpe,             # (block, C), added to
                           const real* dout,       # (N, C)
                           const int64_t* tokens,  # (N,)
                           const int64_t* pos,     # (N,)
                           Py_ssize_t N, Py_ssize_t C) noexcept nogil:
    """dwte[tokens[n]] += dout[n]; dwpe[pos[n]] += dout[n]."""
    _encoder_backward_channels(dwte, dwpe, dout, tokens, pos, N, C, 0, C)


cdef void _encoder_backward_channels(real* dwte, real* dwpe, const real* dout,
                                     const int64_t* tokens, const int64_t* pos, Py_ssize_t N,
                                     Py_ssize_t C, Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """encoder_backward on channels c0..c1-1 only (each channel's sums are independent)."""
    cdef Py_ssize_t n, i
    for n in range(N):
        for i in range(c0, c1):
            dwte[tokens[n] * C + i] += dout[n * C + i]
            dwpe[pos[n] * C + i] += dout[n * C + i]


# ----------------------------------------------------------------------------------------------
# rmsnorm: each row divided by its root mean square (no learned scale in this GPT).

cdef void rmsnorm_forward(real* out,      # (N, C)
                          real* rstd,     # (N,), kept for the backward
                          const real* x,  # (N, C)
                          Py_ssize_t N, Py_ssize_t C) noexcept nogil:
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


cdef void rmsnorm_backward(real* dx,          # (N, C), added to
                           const real* dout,  # (N, C)
                           const real* x,     # (N, C)
                           const real* rstd,  # (N,)
                           Py_ssize_t N, Py_ssize_t C) noexcept nogil:
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


# ----------------------------------------------------------------------------------------------
# matmul: out = inp @ weight^T, the one primitive of every linear layer (no biases in this GPT).
# The weight gradient needs general products out (M, Nn) (+)= A (M, K) @ B (K, Nn): _gemm_loops;
# the input gradient has a kernel of its own, shaped like the forward's.
#
# Small products in registers (the sizes of one name per step, where BLAS' set-up costs more
# than it saves). A vector register holds 4 doubles or 8 floats with AVX2, 2 or 4 with SSE2
# (GCC's portable `vector_size` type, as wide as the build's registers). Both kernels keep
# a 4 x 8 block of the output in registers while the sum runs, so every number loaded feeds
# several multiply-adds and the block is written once, at the end. (The roofline of chapter 6
# found these products far under the peak when each output was a separate dot product.)

cdef extern from *:
    """
    /* The widest vector the build may use: 32 bytes with AVX (x86-64-v3 and up), else 16 (SSE2,
       NEON); a wider generic vector than the target has would be emulated, slowly. */
    #if defined(__AVX__)
    #define FASTOPS_VEC_BYTES 32
    #else
    #define FASTOPS_VEC_BYTES 16
    #endif
    #define FASTOPS_SMALL_PRODUCTS(T, NAME) \\
    /* out rows m0..m1-1 (Nn columns) (+)= A @ B; A's (m, k) at a[m*sam + k*sak], B is       \\
       (K, Nn). The sums over k run in order, as plain loops add them (after out's old value  \\
       when accumulating; else out is only written). */                                        \\
    static void NAME##_gemm_rows(T* out, const T* a, Py_ssize_t sam, Py_ssize_t sak,         \\
                                 const T* b, Py_ssize_t m0, Py_ssize_t m1, Py_ssize_t K,      \\
                                 Py_ssize_t Nn, int accumulate) {                             \\
        typedef T vec __attribute__((vector_size(FASTOPS_VEC_BYTES)));                        \\
        enum { LANES = FASTOPS_VEC_BYTES / sizeof(T), NV = 8 / LANES };                       \\
        for (Py_ssize_t m = m0; m < m1; m += 4) {                                             \\
            int nm = m1 - m < 4 ? (int)(m1 - m) : 4;                                          \\
            Py_ssize_t j = 0;                                                                 \\
            for (; j + 8 <= Nn; j += 8) {                                                     \\
                vec acc[4][NV];                                                               \\
                for (int i = 0; i < 4; i++)  /* the next block's rows, fetched ahead */       \\
                    if (m + 4 + i < m1) __builtin_prefetch(out + (m + 4 + i) * Nn + j, 1);    \\
                for (int i = 0; i < 4; i++)                                                   \\
                    for (int v = 0; v < NV; v++) {                                            \\
                        if (accumulate && i < nm)                                             \\
                            __builtin_memcpy(&acc[i][v], out + (m + i) * Nn + j + v * LANES,  \\
                                             sizeof(vec));                                    \\
                        else                                                                  \\
                            acc[i][v] = (vec){0};                                             \\
                    }                                                                         \\
                for (Py_ssize_t k = 0; k < K; k++) {                                          \\
                    vec bv[NV];                                                               \\
                    for (int v = 0; v < NV; v++)                                              \\
                        __builtin_memcpy(&bv[v], b + k * Nn + j + v * LANES, sizeof(vec));    \\
                    for (int i = 0; i < 4; i++) {                                             \\
                        T ai = a[(m + (i < nm ? i : 0)) * sam + k * sak];                     \\
                        for (int v = 0; v < NV; v++) acc[i][v] += ai * bv[v];                 \\
                    }                                                                         \\
                }                                                                             \\
                for (int i = 0; i < nm; i++)                                                  \\
                    for (int v = 0; v < NV; v++)                                              \\
                        __builtin_memcpy(out + (m + i) * Nn + j + v * LANES, &acc[i][v],      \\
                                         sizeof(vec));                                        \\
            }                                                                                 \\
            for (int i = 0; i < nm; i++)  /* the last Nn % 8 columns */                       \\
                for (Py_ssize_t jj = j; jj < Nn; jj++) {                                      \\
                    T s = accumulate ? out[(m + i) * Nn + jj] : (T)0;                         \\
                    for (Py_ssize_t k = 0; k < K; k++)                                        \\
                        s += a[(m + i) * sam + k * sak] * b[k * Nn + jj];                     \\
                    out[(m + i) * Nn + jj] = s;                                               \\
                }                                                                             \\
        }                                                                                     \\
    }                                                                                         \\
    /* Columns o0..o1-1 of out (N, OC) = inp (N, C) @ weight (OC, C)^T. Tokens go 8 at a time: \\
       their inputs are transposed into xt (KB x 8, on the stack), so that weight[o, k]       \\
       multiplies a vector of 8 tokens, for 4 outputs o at once: no sums across a register.   \\
       C is cut into slabs of KB; after the first, partial sums are added to out. */          \\
    static void NAME##_matmul_forward_cols(T* out, const T* inp, const T* weight,            \\
                                           Py_ssize_t N, Py_ssize_t o0, Py_ssize_t o1,        \\
                                           Py_ssize_t C, Py_ssize_t OC) {                     \\
        typedef T vec __attribute__((vector_size(FASTOPS_VEC_BYTES)));                        \\
        enum { LANES = FASTOPS_VEC_BYTES / sizeof(T), NV = 8 / LANES, KB = 512 };             \\
        T xt[KB * 8];                                                                         \\
        T res[4][8];                                                                          \\
        for (Py_ssize_t t0 = 0; t0 < N; t0 += 8) {                                            \\
            Py_ssize_t nt = N - t0 < 8 ? N - t0 : 8;                                          \\
            for (Py_ssize_t k0 = 0; k0 < C; k0 += KB) {                                       \\
                Py_ssize_t kn = C - k0 < KB ? C - k0 : KB;                                    \\
                for (Py_ssize_t k = 0; k < kn; k++)                                           \\
                    for (Py_ssize_t t = 0; t < 8; t++)                                        \\
                        xt[k * 8 + t] = t < nt ? inp[(t0 + t) * C + k0 + k] : (T)0;           \\
                for (Py_ssize_t o = o0; o < o1; o += 4) {                                     \\
                    int no = o1 - o < 4 ? (int)(o1 - o) : 4;                                  \\
                    const T* wr[4];                                                           \\
                    const T* next[4];  /* the next block's rows, fetched ahead of their use */\\
                    vec acc[4][NV];                                                           \\
                    for (int i = 0; i < 4; i++) {                                             \\
                        wr[i] = weight + (o + (i < no ? i : 0)) * C + k0;                     \\
                        next[i] = o + 4 + i < o1 ? wr[i] + 4 * C : wr[i];                     \\
                        for (int v = 0; v < NV; v++) acc[i][v] = (vec){0};                    \\
                    }                                                                         \\
                    for (Py_ssize_t k = 0; k < kn; k++) {                                     \\
                        vec xv[NV];                                                           \\
                        if ((k & 7) == 0)  /* one cache line of each row per 8 doubles */     \\
                            for (int i = 0; i < 4; i++) __builtin_prefetch(next[i] + k);      \\
                        for (int v = 0; v < NV; v++)                                          \\
                            __builtin_memcpy(&xv[v], xt + k * 8 + v * LANES, sizeof(vec));    \\
                        for (int i = 0; i < 4; i++) {                                         \\
                            T w = wr[i][k];                                                   \\
                            for (int v = 0; v < NV; v++) acc[i][v] += w * xv[v];              \\
                        }                                                                     \\
                    }                                                                         \\
                    for (int i = 0; i < 4; i++) __builtin_memcpy(res[i], acc[i], sizeof(acc[i])); \\
                    for (Py_ssize_t t = 0; t < nt; t++)                                       \\
                        for (int i = 0; i < no; i++)                                          \\
                            out[(t0 + t) * OC + o + i] =                                      \\
                                k0 ? out[(t0 + t) * OC + o + i] + res[i][t] : res[i][t];      \\
                }                                                                             \\
            }                                                                                 \\
        }                                                                                     \\
    }
    FASTOPS_SMALL_PRODUCTS(float, fastops_s)
    FASTOPS_SMALL_PRODUCTS(double, fastops_d)
    """
    void fastops_s_gemm_rows(float*, const float*, Py_ssize_t, Py_ssize_t, const float*,
                             Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, int) noexcept nogil
    void fastops_d_gemm_rows(double*, const double*, Py_ssize_t, Py_ssize_t, const double*,
                             Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, int) noexcept nogil
    void fastops_s_matmul_forward_cols(float*, const float*, const float*, Py_ssize_t,
                                       Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                       Py_ssize_t) noexcept nogil
    void fastops_d_matmul_forward_cols(double*, const double*, const double*, Py_ssize_t,
                                       Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                       Py_ssize_t) noexcept nogil


cdef inline void _gemm_rows_blocked(real* out, const real* a, Py_ssize_t sam, Py_ssize_t sak,
                                    const real* b, Py_ssize_t m0, Py_ssize_t m1, Py_ssize_t K,
                                    Py_ssize_t Nn, bint accumulate) noexcept nogil:
    """Rows m0..m1 of out (+)= A @ B (A's element (m, k) is a[m*sam + k*sak]: strides let
    dW = dout^T @ x use this loop too), in blocks of 4 rows x 8 columns held in registers. B is
    read in strips of 8 columns: best when B is small and already in cache (dW's B is the
    layer's input)."""
    if real is float:
        fastops_s_gemm_rows(out, a, sam, sak, b, m0, m1, K, Nn, accumulate)
    else:
        fastops_d_gemm_rows(out, a, sam, sak, b, m0, m1, K, Nn, accumulate)


cdef void _gemm_loops(real* out, const real* a, Py_ssize_t sam, Py_ssize_t sak, const real* b,
                      Py_ssize_t M, Py_ssize_t K, Py_ssize_t Nn, bint accumulate,
                      int nthreads) noexcept nogil:
    """out (M, Nn) (+)= A @ B with hand-written loops, in register blocks; blocks of 4 rows
    shared among threads."""
    cdef Py_ssize_t blk, nblk = (M + 3) // 4
    if nthreads > 1 and M * K * Nn >= _parallel_min_flops and nblk > 1:
        for blk in prange(nblk, num_threads=nthreads, schedule="static"):
            _gemm_rows_blocked(out, a, sam, sak, b, 4 * blk, min(4 * blk + 4, M), K, Nn,
                               accumulate)
    else:
        _gemm_rows_blocked(out, a, sam, sak, b, 0, M, K, Nn, accumulate)


cdef inline void _matmul_forward_cols(real* out, const real* inp, const real* weight,
                                      Py_ssize_t N, Py_ssize_t o0, Py_ssize_t o1, Py_ssize_t C,
                                      Py_ssize_t OC) noexcept nogil:
    """Columns o0..o1 of out = inp @ weight^T: 8 tokens x 4 outputs at a time, in registers."""
    if real is float:
        fastops_s_matmul_forward_cols(out, inp, weight, N, o0, o1, C, OC)
    else:
        fastops_d_matmul_forward_cols(out, inp, weight, N, o0, o1, C, OC)


# The input gradient dinp = dout @ weight, in registers as the forward is: tokens in the lanes
# of a vector, so that each weight multiplies 8 tokens at once and the sums need no reordering.

cdef extern from *:
    """
    #define FASTOPS_INPUT_GRADIENT(T, NAME)                                                    \\
    /* Columns c0..c1-1 of dinp (N, C) (+)= dout (N, OC) @ weight (OC, C). Tokens go 8 at a    \\
       time: their output gradients are transposed into dt (KB x 8, on the stack), so that     \\
       weight[o, c] multiplies a vector of 8 tokens, for 4 columns c at once; the weights are  \\
       read row after row. The sum over o runs in order (after dinp's old value when          \\
       accumulating), as the plain loop adds it. */                                            \\
    static void NAME##_matmul_backward_input_cols(T* dinp, const T* dout, const T* weight,     \\
                                                  Py_ssize_t N, Py_ssize_t c0, Py_ssize_t c1,  \\
                                                  Py_ssize_t C, Py_ssize_t OC, int accumulate) { \\
        typedef T vec __attribute__((vector_size(FASTOPS_VEC_BYTES)));                         \\
        enum { LANES = FASTOPS_VEC_BYTES / sizeof(T), NV = 8 / LANES, KB = 512 };              \\
        T dt[KB * 8];                                                                          \\
        T res[4][8];                                                                           \\
        for (Py_ssize_t t0 = 0; t0 < N; t0 += 8) {                                             \\
            Py_ssize_t nt = N - t0 < 8 ? N - t0 : 8;                                           \\
            for (Py_ssize_t k0 = 0; k0 < OC; k0 += KB) {                                       \\
                Py_ssize_t kn = OC - k0 < KB ? OC - k0 : KB;                                   \\
                int add = accumulate || k0 > 0;                                                \\
                for (Py_ssize_t k = 0; k < kn; k++)                                            \\
                    for (Py_ssize_t t = 0; t < 8; t++)                                         \\
                        dt[k * 8 + t] = t < nt ? dout[(t0 + t) * OC + k0 + k] : (T)0;          \\
                for (Py_ssize_t c = c0; c < c1; c += 4) {                                      \\
                    int nc = c1 - c < 4 ? (int)(c1 - c) : 4;                                   \\
                    Py_ssize_t ix[4];  /* past the last column, repeat the first */            \\
                    vec acc[4][NV];                                                            \\
                    for (int i = 0; i < 4; i++) {                                              \\
                        ix[i] = i < nc ? i : 0;                                                \\
                        for (int t = 0; t < 8; t++)                                            \\
                            res[i][t] = add && i < nc && t < nt                                \\
                                ? dinp[(t0 + t) * C + c + i] : (T)0;                           \\
                        __builtin_memcpy(acc[i], res[i], sizeof(acc[i]));                      \\
                    }                                                                          \\
                    const T* w = weight + k0 * C + c;                                          \\
                    Py_ssize_t ahead = c + 8 < C ? 8 : 0;  /* the next pass's cache line */    \\
                    for (Py_ssize_t k = 0; k < kn; k++, w += C) {                              \\
                        vec dv[NV];                                                            \\
                        __builtin_prefetch(w + ahead);                                         \\
                        for (int v = 0; v < NV; v++)                                           \\
                            __builtin_memcpy(&dv[v], dt + k * 8 + v * LANES, sizeof(vec));     \\
                        for (int i = 0; i < 4; i++) {                                          \\
                            T wi = w[ix[i]];                                                   \\
                            for (int v = 0; v < NV; v++) acc[i][v] += wi * dv[v];              \\
                        }                                                                      \\
                    }                                                                          \\
                    for (int i = 0; i < 4; i++) __builtin_memcpy(res[i], acc[i], sizeof(acc[i])); \\
                    for (Py_ssize_t t = 0; t < nt; t++)                                        \\
                        for (int i = 0; i < nc; i++)                                           \\
                            dinp[(t0 + t) * C + c + i] = res[i][t];                            \\
                }                                                                              \\
            }                                                                                  \\
        }                                                                                      \\
    }
    FASTOPS_INPUT_GRADIENT(float, fastops_s)
    FASTOPS_INPUT_GRADIENT(double, fastops_d)
    """
    void fastops_s_matmul_backward_input_cols(float*, const float*, const float*, Py_ssize_t,
                                              Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                              int) noexcept nogil
    void fastops_d_matmul_backward_input_cols(double*, const double*, const double*, Py_ssize_t,
                                              Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                              int) noexcept nogil


cdef void _matmul_backward_input(real* dinp, const real* dout, const real* weight, Py_ssize_t N,
                                 Py_ssize_t C, Py_ssize_t OC, bint accumulate,
                                 int nthreads) noexcept nogil:
    """dinp (N, C) (+)= dout (N, OC) @ weight (OC, C) in our loops; threads share blocks of 16
    columns."""
    cdef Py_ssize_t blk, nblk = (C + 15) // 16
    if nthreads > 1 and N * C * OC >= _parallel_min_flops and nblk > 1:
        for blk in prange(nblk, num_threads=nthreads, schedule="static"):
            if real is float:
                fastops_s_matmul_backward_input_cols(dinp, dout, weight, N, 16 * blk,
                                                     min(16 * blk + 16, C), C, OC, accumulate)
            else:
                fastops_d_matmul_backward_input_cols(dinp, dout, weight, N, 16 * blk,
                                                     min(16 * blk + 16, C), C, OC, accumulate)
    elif real is float:
        fastops_s_matmul_backward_input_cols(dinp, dout, weight, N, 0, C, C, OC, accumulate)
    else:
        fastops_d_matmul_backward_input_cols(dinp, dout, weight, N, 0, C, C, OC, accumulate)


cdef void matmul_forward(real* out,           # (N, OC)
                         const real* inp,     # (N, C)
                         const real* weight,  # (OC, C), PyTorch's (out, in) order
                         Py_ssize_t N, Py_ssize_t C, Py_ssize_t OC, int nthreads) noexcept nogil:
    """out = inp @ weight^T: BLAS when large enough (_use_blas), else our loops. Our loops hold
    8 tokens in registers and beat BLAS below _blas_min_tokens tokens, whatever the widths
    (measured in chapter 6). With threads, each thread makes its own BLAS call on a slab of rows."""
    cdef Py_ssize_t blk, nblk = (OC + 15) // 16, r0, r1, part
    if _use_blas(out, N, C, OC):
        if nthreads > 1 and N >= 8 * nthreads and N * C * OC >= _parallel_min_flops:
            part = (N + nthreads - 1) // nthreads
            for blk in prange(nthreads, num_threads=nthreads, schedule="static"):
                r0 = blk * part
                r1 = min(N, r0 + part)
                _blas(NO_TRANS, TRANS, r1 - r0, OC, C, inp + r0 * C, C, weight, C, 0.0,
                      out + r0 * OC, OC)
        else:
            _blas(NO_TRANS, TRANS, N, OC, C, inp, C, weight, C, 0.0, out, OC)
    elif nthreads > 1 and N * C * OC >= _parallel_min_flops and nblk > 1:
        for blk in prange(nblk, num_threads=nthreads, schedule="static"):
            _matmul_forward_cols(out, inp, weight, N, 16 * blk, min(16 * blk + 16, OC), C, OC)
    else:
        _matmul_forward_cols(out, inp, weight, N, 0, OC, C, OC)


cdef void matmul_forward_rows(real* out,           # (N, OC); rows r0..r1-1 written
                              const real* inp,     # (N, C)
                              const real* weight,  # (OC, C)
                              Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t N, Py_ssize_t C,
                              Py_ssize_t OC, int nthreads) noexcept nogil:
    """Rows r0..r1 of matmul_forward's out, for a thread that owns those rows inside a parallel
    region of the model. BLAS or our loops as matmul_forward would choose for all N tokens, so
    a row's numbers do not depend on how the rows are shared; nthreads > 1 (all rows only)
    hands the whole product to matmul_forward."""
    if nthreads > 1:
        matmul_forward(out, inp, weight, N, C, OC, nthreads)
    elif _use_blas(out, N, C, OC):
        _blas(NO_TRANS, TRANS, r1 - r0, OC, C, inp + r0 * C, C, weight, C, 0.0, out + r0 * OC,
              OC)
    elif r1 > r0:
        _matmul_forward_cols(out + r0 * OC, inp + r0 * C, weight, r1 - r0, 0, OC, C, OC)


cdef void matmul_backward(real* dinp,          # (N, C), overwritten, or added to (accumulate)
                          real* dweight,       # (OC, C), added to, or overwritten
                          const real* dout,    # (N, OC)
                          const real* inp,     # (N, C)
                          const real* weight,  # (OC, C)
                          Py_ssize_t N, Py_ssize_t C, Py_ssize_t OC, bint accumulate,
                          int nthreads, bint accumulate_dweight=True) noexcept nogil:
    """dweight (+)= dout^T @ inp; dinp (+)= dout @ weight. Overwriting dweight
    (accumulate_dweight false) spares zeroing the gradients first and reading the zeros back.
    BLAS only from _blas_min_tokens tokens on, as forward: with fewer, BLAS wins when timed alone
    but loses in a step, where it packs cold weights and clears dweight before adding to it.
    With threads and BLAS, thread b owns a slab of rows of dweight and a slab of rows of dinp."""
    cdef Py_ssize_t blk, r0, r1, o0, o1, part_n, part_o
    cdef real beta = 1.0 if accumulate else 0.0
    cdef real beta_w = 1.0 if accumulate_dweight else 0.0
    if _use_blas(dweight, N, C, OC):
        if (nthreads > 1 and N >= 8 * nthreads and OC >= 8 * nthreads
                and N * C * OC >= _parallel_min_flops):
            part_n = (N + nthreads - 1) // nthreads
            part_o = (OC + nthreads - 1) // nthreads
            for blk in prange(nthreads, num_threads=nthreads, schedule="static"):
                o0 = blk * part_o
                o1 = min(OC, o0 + part_o)
                _blas(TRANS, NO_TRANS, o1 - o0, C, N, dout + o0, OC, inp, C, beta_w,
                      dweight + o0 * C, C)
                r0 = blk * part_n
                r1 = min(N, r0 + part_n)
                _blas(NO_TRANS, NO_TRANS, r1 - r0, C, OC, dout + r0 * OC, OC, weight, C,
                      beta, dinp + r0 * C, C)
        else:
            _blas(TRANS, NO_TRANS, OC, C, N, dout, OC, inp, C, beta_w, dweight, C)
            _blas(NO_TRANS, NO_TRANS, N, C, OC, dout, OC, weight, C, beta, dinp, C)
        return
    _gemm_loops(dweight, dout, 1, OC, inp, OC, N, C, accumulate_dweight, nthreads)
    _matmul_backward_input(dinp, dout, weight, N, C, OC, accumulate, nthreads)


cdef void matmul_backward_weight_slab(real* dweight,     # (OC, C), rows o0..o1-1 (+)=
                                      const real* dout,  # (N, OC)
                                      const real* inp,   # (N, C)
                                      Py_ssize_t N, Py_ssize_t C, Py_ssize_t OC,
                                      bint accumulate, Py_ssize_t o0,
                                      Py_ssize_t o1) noexcept nogil:
    """Rows o0..o1 of dweight (+)= dout^T @ inp, for a thread inside a parallel region of the
    model; BLAS or our loops as matmul_backward chooses, so the numbers do not depend on how
    the rows are shared."""
    if o1 <= o0:
        return
    if _use_blas(dweight, N, C, OC):
        _blas(TRANS, NO_TRANS, o1 - o0, C, N, dout + o0, OC, inp, C, 1.0 if accumulate else 0.0,
              dweight + o0 * C, C)
    else:
        _gemm_rows_blocked(dweight, dout, 1, OC, inp, o0, o1, N, C, accumulate)


cdef void matmul_backward_input_rows(real* dinp,          # (N, C), rows r0..r1-1 (+)=
                                     const real* dout,    # (N, OC)
                                     const real* weight,  # (OC, C)
                                     Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t N, Py_ssize_t C,
                                     Py_ssize_t OC, bint accumulate) noexcept nogil:
    """Rows r0..r1 of dinp (+)= dout @ weight, for the thread that owns those rows; BLAS or our
    loops as matmul_backward chooses for all N tokens."""
    if r1 <= r0:
        return
    if _use_blas(dinp, N, C, OC):
        _blas(NO_TRANS, NO_TRANS, r1 - r0, C, OC, dout + r0 * OC, OC, weight, C,
              1.0 if accumulate else 0.0, dinp + r0 * C, C)
    elif real is float:
        fastops_s_matmul_backward_input_cols(dinp + r0 * C, dout + r0 * OC, weight, r1 - r0, 0,
                                             C, C, OC, accumulate)
    else:
        fastops_d_matmul_backward_input_cols(dinp + r0 * C, dout + r0 * OC, weight, r1 - r0, 0,
                                             C, C, OC, accumulate)


# ----------------------------------------------------------------------------------------------
# attention: causal multi-head self-attention within each packed sequence. att keeps the softmax
# weights for the backward: token n, head h, key s at att[n*att_sn + h*att_sh + s] (the model
# stores them (N, NH, block); the Python wrapper (NH, T, T) for one sequence, (N, NH, T_max)
# for a packed batch).

# One token and one head in plain loops: short sequences (see ATTENTION_TILES_MIN_T below), and the
# fallback when the tiles' scratch cannot be allocated.

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


# Attention of one (sequence, head) as four matrix products of the full T x T square in BLAS
# (twice the causal work): for long sequences only (fastops.blas.DEFAULT_ATTENTION_THRESHOLD);
# shorter ones run in our register tiles of the triangle, below.

cdef inline bint _attn_blas(const real* x, const int64_t* cu_seqlens, Py_ssize_t B,
                            Py_ssize_t hd) noexcept nogil:
    """True when the longest sequence's T*T*hd reaches the attention BLAS threshold (forward
    and backward must agree: the BLAS backward reads the zeros its forward writes above the
    diagonal)."""
    cdef Py_ssize_t b, T = 0
    for b in range(B):
        T = max(T, cu_seqlens[b + 1] - cu_seqlens[b])
    return _use_attention_blas(x, T, hd)


# A softmax row in float32 with exp on whole vectors: a call of expf per number cost more than
# the products around it (chapter 6's profile of the capstone). The exponential is Cephes' expf
# written for GCC's vector type: x = n ln2 + r with |r| <= ln2 / 2, a polynomial for e^r, and
# 2^n placed in the exponent bits; its relative error is about 2e-7, as expf's.

cdef extern from *:
    """
    typedef float fastops_vf __attribute__((vector_size(FASTOPS_VEC_BYTES)));
    typedef int fastops_vi __attribute__((vector_size(FASTOPS_VEC_BYTES)));
    enum { FASTOPS_FLANES = FASTOPS_VEC_BYTES / sizeof(float) };

    /* e^x lane by lane for x in [-87.3, 88] */
    static inline fastops_vf fastops_vexpf_in_range(fastops_vf x) {
        const float magic = 12582912.0f;  /* 1.5 * 2^23: adding it rounds to an integer */
        fastops_vf t = x * 1.44269504088896341f + magic;
        fastops_vi n_int = (fastops_vi)t - (fastops_vi)((fastops_vf){0} + magic);
        fastops_vf n = t - magic;
        fastops_vf r = x - n * 0.693359375f;
        r = r - n * -2.12194440e-4f;
        fastops_vf p = r * 1.9875691500e-4f + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        fastops_vf y = p * r * r + r + 1.0f;
        return y * (fastops_vf)((n_int + 127) << 23);
    }

    /* e^x lane by lane; x is clamped to [-87.3, 88] (e^-87.3 is about 1e-38, not 0) */
    static inline fastops_vf fastops_vexpf(fastops_vf x) {
        const fastops_vf lo = (fastops_vf){0} - 87.3365447504f, hi = (fastops_vf){0} + 88.0f;
        fastops_vi low = x < lo, high = x > hi;
        x = (fastops_vf)((low & (fastops_vi)lo) | (high & (fastops_vi)hi)
                         | (~(low | high) & (fastops_vi)x));
        return fastops_vexpf_in_range(x);
    }

    /* the same for x <= 0 (a softmax's shifted scores): only the lower clamp */
    static inline fastops_vf fastops_vexpf_nonpositive(fastops_vf x) {
        const fastops_vf lo = (fastops_vf){0} - 87.3365447504f;
        fastops_vi low = x < lo;
        return fastops_vexpf_in_range((fastops_vf)((low & (fastops_vi)lo) | (~low & (fastops_vi)x)));
    }

    /* row[0..n) = softmax(scale * row[0..n)), the row's maximum subtracted first (n >= 1, scale
       > 0); returns log(sum(exp(scale * row))), from which a cross-entropy needs no log of a
       probability that may have rounded to zero */
    static double fastops_softmax_rowf(float* row, Py_ssize_t n, float scale) {
        float mx = row[0], total = 0, inv;
        fastops_vf acc = {0}, v;
        float tail[FASTOPS_FLANES];
        Py_ssize_t i, j, rest;
        for (i = 1; i < n; i++) mx = row[i] > mx ? row[i] : mx;
        for (i = 0; i + FASTOPS_FLANES <= n; i += FASTOPS_FLANES) {
            __builtin_memcpy(&v, row + i, sizeof(v));
            v = fastops_vexpf((v - mx) * scale);
            __builtin_memcpy(row + i, &v, sizeof(v));
            acc += v;
        }
        rest = n - i;
        if (rest) {
            for (j = 0; j < FASTOPS_FLANES; j++) tail[j] = j < rest ? row[i + j] : mx;
            __builtin_memcpy(&v, tail, sizeof(v));
            v = fastops_vexpf((v - mx) * scale);
            __builtin_memcpy(tail, &v, sizeof(v));
            for (j = 0; j < rest; j++) { row[i + j] = tail[j]; total += tail[j]; }
        }
        for (j = 0; j < FASTOPS_FLANES; j++) total += acc[j];
        inv = 1.0f / total;
        for (i = 0; i < n; i++) row[i] *= inv;
        return (double)mx * scale + log((double)total);
    }
    """
    double fastops_softmax_rowf(float* row, Py_ssize_t n, float scale) noexcept nogil


# Attention of one (sequence, head) in our own register tiles (fastops/attention_head.h, written
# once for float and double): only the causal triangle is computed, and the T x T weights stay in
# a scratch buffer that fits the core's cache. At the capstone's T = 64, head size 32, BLAS' four
# small products of the full square cost more in set-up and wasted half than they gained.

cdef extern from *:
    """
    #include <stdlib.h>
    #if defined(__AVX__)
    #include <immintrin.h>
    /* dst (8 x 8, row stride ldd) = src (8 x 8, row stride lds) transposed, in registers */
    static inline void fastops_transpose8f(float* dst, Py_ssize_t ldd, const float* src,
                                           Py_ssize_t lds) {
        __m256 r[8], t[8];
        for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * lds);
        for (int i = 0; i < 8; i += 2) {
            t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int i = 0; i < 8; i += 4) {
            r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
            r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
            r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
            r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
        }
        for (int i = 0; i < 4; i++) {
            _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
            _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
        }
    }
    /* the same for 4 x 4 doubles */
    static inline void fastops_transpose4d(double* dst, Py_ssize_t ldd, const double* src,
                                           Py_ssize_t lds) {
        __m256d r[4], t[4];
        for (int i = 0; i < 4; i++) r[i] = _mm256_loadu_pd(src + i * lds);
        t[0] = _mm256_unpacklo_pd(r[0], r[1]);
        t[1] = _mm256_unpackhi_pd(r[0], r[1]);
        t[2] = _mm256_unpacklo_pd(r[2], r[3]);
        t[3] = _mm256_unpackhi_pd(r[2], r[3]);
        _mm256_storeu_pd(dst, _mm256_permute2f128_pd(t[0], t[2], 0x20));
        _mm256_storeu_pd(dst + ldd, _mm256_permute2f128_pd(t[1], t[3], 0x20));
        _mm256_storeu_pd(dst + 2 * ldd, _mm256_permute2f128_pd(t[0], t[2], 0x31));
        _mm256_storeu_pd(dst + 3 * ldd, _mm256_permute2f128_pd(t[1], t[3], 0x31));
    }
    #endif
    #define FA_REAL float
    #define FA_NAME(x) fastops_s_##x
    #define FA_DOT fastops_sdot
    #define FA_VEXP(x) fastops_vexpf_nonpositive(x)
    #define FA_INT int
    #if defined(__AVX__)
    #define FA_TRANSPOSE_BLOCK fastops_transpose8f
    #define FA_TB 8
    #endif
    #include "attention_head.h"
    #undef FA_REAL
    #undef FA_NAME
    #undef FA_DOT
    #undef FA_VEXP
    #undef FA_INT
    #undef FA_TRANSPOSE_BLOCK
    #undef FA_TB
    #define FA_REAL double
    #define FA_NAME(x) fastops_d_##x
    #define FA_DOT fastops_ddot
    #if defined(__AVX__)
    #define FA_TRANSPOSE_BLOCK fastops_transpose4d
    #define FA_TB 4
    #endif
    #include "attention_head.h"
    #undef FA_REAL
    #undef FA_NAME
    #undef FA_DOT
    #undef FA_TRANSPOSE_BLOCK
    #undef FA_TB
    """
    int fastops_s_attention_forward_head(float*, float*, const float*, const float*,
                                         const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                         Py_ssize_t, float) noexcept nogil
    int fastops_d_attention_forward_head(double*, double*, const double*, const double*,
                                         const double*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                         Py_ssize_t, double) noexcept nogil
    int fastops_s_attention_backward_head(float*, float*, float*, const float*, const float*,
                                          const float*, const float*, const float*, Py_ssize_t,
                                          Py_ssize_t, Py_ssize_t, Py_ssize_t, float) noexcept nogil
    int fastops_d_attention_backward_head(double*, double*, double*, const double*,
                                          const double*, const double*, const double*,
                                          const double*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                          Py_ssize_t, double) noexcept nogil


cdef void _attention_forward_head_blas(real* out, real* att, const real* q, const real* k,
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
        if real is float:
            fastops_softmax_rowf(row, n + 1, scale)
        else:
            mx = row[0]
            for s in range(1, n + 1):
                if row[s] > mx:
                    mx = row[s]
            total = 0
            for s in range(n + 1):
                row[s] = exp((row[s] - mx) * scale)
                total += row[s]
            total = 1 / total
            for s in range(n + 1):
                row[s] *= total
        for s in range(n + 1, T):
            row[s] = 0
    _blas(NO_TRANS, NO_TRANS, T, hd, T, att, att_sn, v + off, C, 0.0, out + off, C)


cdef void _attention_backward_head_blas(real* dq, real* dk, real* dv, real* dp, const real* dout,
                                   const real* q, const real* k, const real* v, const real* att,
                                   Py_ssize_t start, Py_ssize_t T, Py_ssize_t h, Py_ssize_t C,
                                   Py_ssize_t hd, Py_ssize_t att_sn, real scale) noexcept nogil:
    """Backward of _attention_forward_head_blas; dp is (T, T) scratch. dq, dk, dv += (T, hd)."""
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


# The shortest sequences (single names) run faster in the plain loops than in the tiles, whose
# scratch, packing and part-filled diagonal tiles cost more than such a head's whole work.
# Measured one after the other per (sequence, head), head sizes 4 to 32: the backward's loops
# took 0.35-0.75x the tiles' time at T = 5 and 7 (both dtypes) and 0.55-1.05x at T = 8 to 10;
# from T = 12 the tiles took 0.55-0.75x the loops' (except at head size 4, float64, where the
# loops still won at T = 16). The float64 forward's loops took 0.7-0.95x the tiles' at T <= 7,
# but the float32 forward's tiles, whose exponentials run on whole vectors, won at every T.
cdef enum:
    ATTENTION_TILES_MIN_T = 10          # backward, both dtypes
    ATTENTION_TILES_MIN_T_FORWARD = 8   # forward, float64 (float32: always the tiles)


# With threads, attention splits by sequence along the rows the matrix products gave each thread
# (thread c: the sequences that start in its slab of ceil(N / nthreads) tokens), so the q, k, v
# a thread reads and the rows it writes are mostly in its own core's cache, and no two threads
# write one row. With a task per (sequence, head) instead, the data moved between cores: at e64
# the backward's loops took twice their one-thread CPU time on two threads (perf samples).

cdef inline Py_ssize_t _thread_first_sequence(const int64_t* cu_seqlens, Py_ssize_t B,
                                              int nthreads, Py_ssize_t c) noexcept nogil:
    """Thread c's first sequence: the first that starts at or after its slab of
    ceil(N / nthreads) tokens begins (B for c == nthreads, the end of the last thread's range)."""
    cdef Py_ssize_t b = 0, token
    if c >= nthreads:
        return B
    token = c * ((cu_seqlens[B] + nthreads - 1) // nthreads)
    while b < B and cu_seqlens[b] < token:
        b += 1
    return b


cdef inline bint _by_token_slabs(Py_ssize_t B, int nthreads) noexcept nogil:
    """True when a step's sequences are enough to give each thread its own (B >= 2 threads)."""
    return B >= 2 * nthreads


cdef void _attention_forward_head(real* out, real* att, const real* q, const real* k,
                                  const real* v, Py_ssize_t start, Py_ssize_t T, Py_ssize_t h,
                                  Py_ssize_t C, Py_ssize_t hd, Py_ssize_t att_sn, real scale,
                                  bint blas) noexcept nogil:
    """One head over tokens start..start+T-1 (att: its first row, row stride att_sn): BLAS'
    products of the full square when `blas`, else our register tiles of the triangle (or, for
    the shortest sequences or if their scratch cannot be allocated, the plain loops of
    _attention_row)."""
    cdef Py_ssize_t n, s, off = start * C + h * hd
    cdef int failed = 1  # the loops, unless the tiles run
    if blas:
        _attention_forward_head_blas(out, att, q, k, v, start, T, h, C, hd, att_sn, scale)
        return
    if real is float:  # float32: the tiles at every T (see ATTENTION_TILES_MIN_T_FORWARD)
        failed = fastops_s_attention_forward_head(out + off, att, q + off, k + off, v + off, T, C,
                                                  hd, att_sn, scale)
    elif T >= ATTENTION_TILES_MIN_T_FORWARD:
        failed = fastops_d_attention_forward_head(out + off, att, q + off, k + off, v + off, T, C,
                                                  hd, att_sn, scale)
    if failed:
        for n in range(start, start + T):
            _attention_row(out, att + (n - start) * att_sn, q, k, v, n, start, h, C, hd, scale)
            for s in range(n - start + 1, T):  # zeros above the diagonal, as the tiles write
                att[(n - start) * att_sn + s] = 0


cdef void attention_forward(real* out,                   # (N, C)
                            real* att,                   # softmax weights, strides att_sn, att_sh
                            const real* q,               # (N, C), head h in columns h*hd..
                            const real* k,               # (N, C)
                            const real* v,               # (N, C)
                            const int64_t* cu_seqlens,   # (B+1,)
                            Py_ssize_t B, Py_ssize_t N, Py_ssize_t C, Py_ssize_t NH,
                            Py_ssize_t att_sn, Py_ssize_t att_sh, int nthreads) noexcept nogil:
    """Token n of sequence b (tokens cu_seqlens[b] .. cu_seqlens[b+1]-1) attends to the tokens
    of its sequence up to itself; (sequence, head) by (sequence, head), in our register tiles or
    (long sequences) BLAS; with threads, each thread takes whole sequences (see above).
    """
    cdef Py_ssize_t h, b, task, t0, c
    cdef Py_ssize_t hd = C // NH
    cdef real scale = <real>(1.0 / sqrt(<double>hd))
    cdef bint blas = _attn_blas(q, cu_seqlens, B, hd)
    if nthreads > 1 and _by_token_slabs(B, nthreads) and N * att_sh * C >= _parallel_min_flops:
        for c in prange(nthreads, num_threads=nthreads, schedule="static"):
            for b in range(_thread_first_sequence(cu_seqlens, B, nthreads, c),
                           _thread_first_sequence(cu_seqlens, B, nthreads, c + 1)):
                t0 = cu_seqlens[b]
                for h in range(NH):
                    _attention_forward_head(out, att + t0 * att_sn + h * att_sh, q, k, v, t0,
                                            cu_seqlens[b + 1] - t0, h, C, hd, att_sn, scale,
                                            blas)
    elif nthreads > 1 and B * NH > 1 and N * att_sh * C >= _parallel_min_flops:
        for task in prange(B * NH, num_threads=nthreads, schedule="dynamic"):
            b = task // NH
            h = task % NH
            t0 = cu_seqlens[b]
            _attention_forward_head(out, att + t0 * att_sn + h * att_sh, q, k, v, t0,
                                    cu_seqlens[b + 1] - t0, h, C, hd, att_sn, scale, blas)
    else:
        for task in range(B * NH):
            b = task // NH
            h = task % NH
            t0 = cu_seqlens[b]
            _attention_forward_head(out, att + t0 * att_sn + h * att_sh, q, k, v, t0,
                                    cu_seqlens[b + 1] - t0, h, C, hd, att_sn, scale, blas)


cdef void _attention_backward_loops(real* dq, real* dk, real* dv, real* dpre, const real* dout,
                                    const real* q, const real* k, const real* v, const real* att,
                                    Py_ssize_t start, Py_ssize_t end, Py_ssize_t h, Py_ssize_t C,
                                    Py_ssize_t hd, Py_ssize_t att_sn, real scale) noexcept nogil:
    """Backward of one head over one sequence (tokens start..end-1; att: its first row) in plain
    loops, token by token; dpre is (T,) scratch."""
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
        a = att + (n - start) * att_sn
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


cdef void _attention_backward_head(real* dq, real* dk, real* dv, real* dpre, const real* dout,
                                   const real* q, const real* k, const real* v, const real* att,
                                   Py_ssize_t start, Py_ssize_t T, Py_ssize_t h, Py_ssize_t C,
                                   Py_ssize_t hd, Py_ssize_t att_sn, real scale,
                                   bint blas) noexcept nogil:
    """Backward of _attention_forward_head (blas as there; the plain loops below
    ATTENTION_TILES_MIN_T tokens); dpre is (T, T) scratch."""
    cdef Py_ssize_t off = start * C + h * hd
    cdef int failed = 1  # the loops, unless the tiles run
    if blas:
        _attention_backward_head_blas(dq, dk, dv, dpre, dout, q, k, v, att, start, T, h, C, hd,
                                      att_sn, scale)
        return
    if T >= ATTENTION_TILES_MIN_T:
        if real is float:
            failed = fastops_s_attention_backward_head(dq + off, dk + off, dv + off, dout + off,
                                                       q + off, k + off, v + off, att, T, C, hd,
                                                       att_sn, scale)
        else:
            failed = fastops_d_attention_backward_head(dq + off, dk + off, dv + off, dout + off,
                                                       q + off, k + off, v + off, att, T, C, hd,
                                                       att_sn, scale)
    if failed:
        _attention_backward_loops(dq, dk, dv, dpre, dout, q, k, v, att, start, start + T, h, C,
                                  hd, att_sn, scale)


cdef void attention_backward(real* dq,                  # (N, C), added to
                             real* dk,                  # (N, C), added to
                             real* dv,                  # (N, C), added to
                             real* dpre,                # (B*NH, block*block) scratch
                             const real* dout,          # (N, C)
                             const real* q,             # (N, C)
                             const real* k,             # (N, C)
                             const real* v,             # (N, C)
                             const real* att,           # as attention_forward left it
                             const int64_t* cu_seqlens,  # (B+1,)
                             Py_ssize_t B, Py_ssize_t C, Py_ssize_t NH, Py_ssize_t block,
                             Py_ssize_t att_sn, Py_ssize_t att_sh, int nthreads) noexcept nogil:
    """Gradients through attention, (sequence, head) by (sequence, head), each with its own
    (block, block) slab of dpre scratch, so no two threads write the same element."""
    cdef Py_ssize_t task, b, h, t0, c, hd = C // NH
    cdef real scale = <real>(1.0 / sqrt(<double>hd))
    cdef Py_ssize_t N = cu_seqlens[B]
    cdef bint blas = _attn_blas(q, cu_seqlens, B, hd)
    if nthreads > 1 and _by_token_slabs(B, nthreads) and N * block * C >= _parallel_min_flops:
        for c in prange(nthreads, num_threads=nthreads, schedule="static"):
            for b in range(_thread_first_sequence(cu_seqlens, B, nthreads, c),
                           _thread_first_sequence(cu_seqlens, B, nthreads, c + 1)):
                t0 = cu_seqlens[b]
                for h in range(NH):
                    _attention_backward_head(dq, dk, dv, dpre + (b * NH + h) * block * block,
                                             dout, q, k, v, att + t0 * att_sn + h * att_sh, t0,
                                             cu_seqlens[b + 1] - t0, h, C, hd, att_sn, scale,
                                             blas)
    elif nthreads > 1 and B * NH > 1 and N * block * C >= _parallel_min_flops:
        for task in prange(B * NH, num_threads=nthreads, schedule="dynamic"):
            b = task // NH
            h = task % NH
            t0 = cu_seqlens[b]
            _attention_backward_head(dq, dk, dv, dpre + task * block * block, dout, q, k, v,
                                     att + t0 * att_sn + h * att_sh, t0, cu_seqlens[b + 1] - t0,
                                     h, C, hd, att_sn, scale, blas)
    else:
        for task in range(B * NH):
            b = task // NH
            h = task % NH
            t0 = cu_seqlens[b]
            _attention_backward_head(dq, dk, dv, dpre, dout, q, k, v,
                                     att + t0 * att_sn + h * att_sh, t0, cu_seqlens[b + 1] - t0,
                                     h, C, hd, att_sn, scale, blas)


# ----------------------------------------------------------------------------------------------
# residual: the skip connection around each block. Its backward is the identity: the gradient
# flows on unchanged, which rmsnorm_backward gets by adding (+=) into dx.

cdef inline void residual_forward(real* out,      # (n,), added to
                                  const real* x,  # (n,)
                                  Py_ssize_t n) noexcept nogil:
    """out += x."""
    cdef Py_ssize_t i
    for i in range(n):
        out[i] += x[i]


# ----------------------------------------------------------------------------------------------
# relu, elementwise over n numbers (the MLP's (N, 4C) hidden layer).

cdef void relu_forward(real* out,      # (n,)
                       const real* x,  # (n,)
                       Py_ssize_t n) noexcept nogil:
    """out = max(x, 0) (may be done in place)."""
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = x[i] if x[i] > 0 else 0


cdef void relu_backward(real* dx,          # (n,)
                        const real* dout,  # (n,)
                        const real* out,   # (n,), relu's output
                        Py_ssize_t n) noexcept nogil:
    """dx = dout where the output was positive, else 0 (may be done in place)."""
    cdef Py_ssize_t i
    for i in range(n):
        dx[i] = dout[i] if out[i] > 0 else 0


# ----------------------------------------------------------------------------------------------
# softmax_crossentropy: the loss of each token's prediction of the next.

cdef double softmax_crossentropy_forward(real* probs,             # (N, V)
                                         real* losses,            # (N,)
                                         const real* logits,      # (N, V)
                                         const int64_t* targets,  # (N,) ids in 0..V-1
                                         Py_ssize_t N, Py_ssize_t V) noexcept nogil:
    """probs = softmax(logits) row by row (max-subtracted); losses[n] = -log probs[n, target];
    returns the sum of the losses."""
    cdef Py_ssize_t n, i
    cdef real mx
    cdef double total, loss_sum = 0.0
    for n in range(N):
        if real is float:  # float32: exp on whole vectors; the loss from the log of the sum
            memcpy(probs + n * V, logits + n * V, V * sizeof(float))
            losses[n] = <real>(fastops_softmax_rowf(probs + n * V, V, 1.0)
                               - logits[n * V + targets[n]])
        else:
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


cdef void softmax_crossentropy_backward(real* dlogits,           # (N, V)
                                        const real* probs,       # (N, V)
                                        const int64_t* targets,  # (N,)
                                        real dloss,              # d(loss)/d(each token's loss)
                                        Py_ssize_t N, Py_ssize_t V) noexcept nogil:
    """dlogits[n] = dloss * (probs[n] - onehot(target[n])), the same dloss for every row."""
    cdef Py_ssize_t n, i
    for n in range(N):
        for i in range(V):
            dlogits[n * V + i] = dloss * probs[n * V + i]
        dlogits[n * V + targets[n]] -= dloss


# ----------------------------------------------------------------------------------------------
# AdamW over the flat buffers (params, grads, m, v: (n,) each, one layout), and the gradient's
# norm for clipping.

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


cdef void adamw(real* params, const real* grads, real* m, real* v, Py_ssize_t n, int64_t t,
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


cdef void adamw_columns(real* params, const real* grads, real* m, real* v, Py_ssize_t rows,
                        Py_ssize_t cols, Py_ssize_t c0, Py_ssize_t c1, int64_t t, double lr,
                        double beta1, double beta2, double eps,
                        double weight_decay) noexcept nogil:
    """adamw (one thread, no gradient scale) on columns c0..c1-1 of a (rows, cols) block of the
    buffers: the channels of an embedding table whose gradient one thread summed."""
    cdef Py_ssize_t r
    cdef real step = lr / (1.0 - beta1 ** t)
    cdef real inv_sqrt_c2 = 1.0 / sqrt(1.0 - beta2 ** t)
    cdef real decay = 1.0 - lr * weight_decay
    for r in range(rows):
        _adamw_range(params, grads, m, v, r * cols + c0, r * cols + c1, beta1, beta2, 1.0, step,
                     inv_sqrt_c2, eps, decay)


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
# Threads for the element-wise layers. Every layer above except the encoder's backward (a
# scatter-add over tokens, shared by channels instead) works row by row, so with threads each one
# takes a contiguous slab of rows and runs the same kernel on it: the numbers are those of one
# thread. A slab per thread, not
# many small tasks, because each parallel region costs its threads a meeting at the start and the
# end; for the same reason, a residual add and the rmsnorm that reads its result share a region.
# Below _parallel_min_flops // 16 numbers (8192 by default, as for AdamW) a layer stays on one
# thread.

cdef inline bint _rows_parallel(Py_ssize_t N, Py_ssize_t width, int nthreads) noexcept nogil:
    """True when an element-wise layer over (N, width) numbers is worth splitting in threads."""
    return nthreads > 1 and N > 1 and N * width >= _parallel_min_flops // 16


cdef void encoder_backward_threads(real* dwte, real* dwpe, const real* dout,
                                   const int64_t* tokens, const int64_t* pos, Py_ssize_t N,
                                   Py_ssize_t C, int nthreads) noexcept nogil:
    """encoder_backward, a slab of channels per thread: tokens cannot be split (two tokens may add
    into one row of a table), channels can, and each channel's sums run in token order as on one
    thread."""
    cdef Py_ssize_t c, c0, part = (C + nthreads - 1) // nthreads
    if _rows_parallel(N, C, nthreads) and C >= 8 * nthreads:
        for c in prange(nthreads, num_threads=nthreads, schedule="static"):
            c0 = c * part
            if c0 < C:
                _encoder_backward_channels(dwte, dwpe, dout, tokens, pos, N, C, c0,
                                           min(C, c0 + part))
    else:
        encoder_backward(dwte, dwpe, dout, tokens, pos, N, C)


cdef void zero_threads(real* x, Py_ssize_t n, int nthreads) noexcept nogil:
    """x[0..n) = 0, a contiguous slab per thread."""
    cdef Py_ssize_t c, i0, part = (n + nthreads - 1) // nthreads
    if _rows_parallel(n, 1, nthreads):
        for c in prange(nthreads, num_threads=nthreads, schedule="static"):
            i0 = c * part
            if i0 < n:
                memset(x + i0, 0, min(part, n - i0) * sizeof(real))
    else:
        memset(x, 0, n * sizeof(real))


cdef void embed_norm_forward_threads(real* emb, real* out, real* rstd, const int64_t* tokens,
                                     const int64_t* pos, const real* wte, const real* wpe,
                                     Py_ssize_t N, Py_ssize_t C, int nthreads) noexcept nogil:
    """emb = encoder_forward(tokens, pos); out, rstd = rmsnorm_forward(emb): one region."""
    cdef Py_ssize_t c, r0, part = (N + nthreads - 1) // nthreads
    if _rows_parallel(N, C, nthreads):
        for c in prange(nthreads, num_threads=nthreads, schedule="static"):
            r0 = c * part
            if r0 < N:
                encoder_forward(emb + r0 * C, tokens + r0, pos + r0, wte, wpe, min(part, N - r0),
                                C)
                rmsnorm_forward(out + r0 * C, rstd + r0, emb + r0 * C, min(part, N - r0), C)
    else:
        encoder_forward(emb, tokens, pos, wte, wpe, N, C)
        rmsnorm_forward(out, rstd, emb, N, C)


cdef void residual_norm_forward_threads(real* res,      # (N, C), added to
                                        const real* x,  # (N, C)
                                        real* out,      # (N, C) or NULL: no norm
                                        real* rstd,     # (N,) or NULL
                                        Py_ssize_t N, Py_ssize_t C, int nthreads) noexcept nogil:
    """res += x; then, unless out is NULL, out, rstd = rmsnorm_forward(res): one region."""
    cdef Py_ssize_t c, r0, n, part = (N + nthreads - 1) // nthreads
    if _rows_parallel(N, C, nthreads):
        for c in prange(nthreads, num_threads=nthreads, schedule="static"):
            r0 = c * part
            if r0 < N:
                n = min(part, N - r0)
                residual_forward(res + r0 * C, x + r0 * C, n * C)
                if out != NULL:
                    rmsnorm_forward(out + r0 * C, rstd + r0, res + r0 * C, n, C)
    else:
        residual_forward(res, x, N * C)
        if out != NULL:
            rmsnorm_forward(out, rstd, res, N, C)


cdef void rmsnorm_forward_threads(real* out, real* rstd, const real* x, Py_ssize_t N,
                                  Py_ssize_t C, int nthreads) noexcept nogil:
    """rmsnorm_forward, a slab of rows per thread."""
    cdef Py_ssize_t c, r0, part = (N + nthreads - 1) // nthreads
    if _rows_parallel(N, C, nthreads):
        for c in prange(nthreads, num_threads=nthreads, schedule="static"):
            r0 = c * part
            if r0 < N:
                rmsnorm_forward(out + r0 * C, rstd + r0, x + r0 * C, min(part, N - r0), C)
    else:
        rmsnorm_forward(out, rstd, x, N, C)


cdef void rmsnorm_backward_threads(real* dx, const real* dout, const real* x, const real* rstd,
                                   Py_ssize_t N, Py_ssize_t C, int nthreads) noexcept nogil:
    """rmsnorm_backward, a slab of rows per thread."""
    cdef Py_ssize_t c, r0, part = (N + nthreads - 1) // nthreads
    if _rows_parallel(N, C, nthreads):
        for c in prange(nthreads, num_threads=nthreads, schedule="static"):
            r0 = c * part
            if r0 < N:
                rmsnorm_backward(dx + r0 * C, dout + r0 * C, x + r0 * C, rstd + r0,
                                 min(part, N - r0), C)
    else:
        rmsnorm_backward(dx, dout, x, rstd, N, C)


cdef void relu_forward_threads(real* out, const real* x, Py_ssize_t n,
                               int nthreads) noexcept nogil:
    """relu_forward, a slab per thread."""
    cdef Py_ssize_t c, i0, part = (n + nthreads - 1) // nthreads
    if _rows_parallel(n, 1, nthreads):
        for c in prange(nthreads, num_threads=nthreads, schedule="static"):
            i0 = c * part
            if i0 < n:
                relu_forward(out + i0, x + i0, min(part, n - i0))
    else:
        relu_forward(out, x, n)


cdef void relu_backward_threads(real* dx, const real* dout, const real* out, Py_ssize_t n,
                                int nthreads) noexcept nogil:
    """relu_backward, a slab per thread."""
    cdef Py_ssize_t c, i0, part = (n + nthreads - 1) // nthreads
    if _rows_parallel(n, 1, nthreads):
        for c in prange(nthreads, num_threads=nthreads, schedule="static"):
            i0 = c * part
            if i0 < n:
                relu_backward(dx + i0, dout + i0, out + i0, min(part, n - i0))
    else:
        relu_backward(dx, dout, out, n)


cdef double softmax_crossentropy_forward_threads(real* probs, real* losses, const real* logits,
                                                 const int64_t* targets, Py_ssize_t N,
                                                 Py_ssize_t V, int nthreads) noexcept nogil:
    """softmax_crossentropy_forward, a slab of rows per thread; the slabs' sums are added in
    slab order, so a given thread count always gives the same total."""
    cdef Py_ssize_t c, r0, part = (N + nthreads - 1) // nthreads
    cdef double sums[256]  # MAX_THREADS
    cdef double total = 0.0
    if not _rows_parallel(N, V, nthreads):
        return softmax_crossentropy_forward(probs, losses, logits, targets, N, V)
    for c in prange(nthreads, num_threads=nthreads, schedule="static"):
        r0 = c * part
        sums[c] = 0.0
        if r0 < N:
            sums[c] = softmax_crossentropy_forward(probs + r0 * V, losses + r0, logits + r0 * V,
                                                   targets + r0, min(part, N - r0), V)
    for c in range(nthreads):
        total += sums[c]
    return total


cdef void softmax_crossentropy_backward_threads(real* dlogits, const real* probs,
                                                const int64_t* targets, real dloss,
                                                Py_ssize_t N, Py_ssize_t V,
                                                int nthreads) noexcept nogil:
    """softmax_crossentropy_backward, a slab of rows per thread."""
    cdef Py_ssize_t c, r0, part = (N + nthreads - 1) // nthreads
    if _rows_parallel(N, V, nthreads):
        for c in prange(nthreads, num_threads=nthreads, schedule="static"):
            r0 = c * part
            if r0 < N:
                softmax_crossentropy_backward(dlogits + r0 * V, probs + r0 * V, targets + r0,
                                              dloss, min(part, N - r0), V)
    else:
        softmax_crossentropy_backward(dlogits, probs, targets, dloss, N, V)
