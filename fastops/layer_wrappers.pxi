# Python twins of the layer kernels, one per kernel, with chapter 4's names and shapes (a single
# sequence, (T, C); attention also takes a packed batch of sequences, as the step calls it): each
# C kernel can be tested against its NumPy twin, and chapter 5 times them. The training step never
# calls these. fastops exports them without the `py_` prefix
# (`fastops.matmul_forward` is `py_matmul_forward`): in C, the name belongs to the kernel.

def _need(bint ok, str message):
    if not ok:
        raise ValueError(message)


cdef int64_t[::1] _checked_ids(const int64_t[::1] ids, Py_ssize_t V, str what):
    """A copy of token ids, each checked to be in 0..V-1 (the kernel indexes with the copy)."""
    cdef int64_t[::1] copy = np.array(ids, dtype=np.int64)
    cdef Py_ssize_t n
    for n in range(copy.shape[0]):
        _need(0 <= copy[n] < V, f"{what} {copy[n]} outside the vocabulary 0..{V - 1}")
    return copy


def py_encoder_forward(const int64_t[::1] tokens, const real[:, ::1] wte, const real[:, ::1] wpe):
    """x (T, C) = wte[tokens] + wpe[:T]; tokens (T,) int64, wte (V, C), wpe (block, C)."""
    cdef Py_ssize_t T = tokens.shape[0], C = wte.shape[1]
    _need(wpe.shape[1] == C and C > 0, f"wte has {C} columns, wpe {wpe.shape[1]}")
    _need(0 < T <= wpe.shape[0], f"{T} tokens do not fit block_size {wpe.shape[0]}")
    cdef int64_t[::1] ids = _checked_ids(tokens, wte.shape[0], "token id")
    dtype = np.float32 if real is float else np.float64
    out = np.empty((T, C), dtype=dtype)
    cdef real[:, ::1] o = out
    cdef int64_t[::1] pos = np.arange(T, dtype=np.int64)
    encoder_forward(&o[0, 0], &ids[0], &pos[0], &wte[0, 0], &wpe[0, 0], T, C)
    return out


def py_encoder_backward(real[:, ::1] dwte, real[:, ::1] dwpe, const real[:, ::1] dx,
                        const int64_t[::1] tokens):
    """dwte[tokens[t]] += dx[t]; dwpe[t] += dx[t]."""
    cdef Py_ssize_t T = tokens.shape[0], C = dx.shape[1]
    _need(dx.shape[0] == T and dwte.shape[1] == C and dwpe.shape[1] == C and 0 < T <= dwpe.shape[0]
          and C > 0, "encoder_backward: shapes do not agree")
    cdef int64_t[::1] ids = _checked_ids(tokens, dwte.shape[0], "token id")
    cdef int64_t[::1] pos = np.arange(T, dtype=np.int64)
    encoder_backward(&dwte[0, 0], &dwpe[0, 0], &dx[0, 0], &ids[0], &pos[0], T, C)


def py_rmsnorm_forward(const real[:, ::1] x):
    """(out (T, C), rstd (T,)) with out = x * rstd."""
    _need(x.shape[0] > 0 and x.shape[1] > 0, "rmsnorm_forward: x is empty")
    dtype = np.float32 if real is float else np.float64
    out = np.empty((x.shape[0], x.shape[1]), dtype=dtype)
    rstd = np.empty(x.shape[0], dtype=dtype)
    cdef real[:, ::1] o = out
    cdef real[::1] r = rstd
    rmsnorm_forward(&o[0, 0], &r[0], &x[0, 0], x.shape[0], x.shape[1])
    return out, rstd


def py_rmsnorm_backward(const real[:, ::1] dout, const real[:, ::1] x, const real[::1] rstd):
    """dx (T, C) of out = rmsnorm(x)."""
    _need(dout.shape[0] == x.shape[0] == rstd.shape[0] and dout.shape[1] == x.shape[1],
          "rmsnorm_backward: dout, x and rstd do not agree")
    _need(x.shape[0] > 0 and x.shape[1] > 0, "rmsnorm_backward: x is empty")
    dx = np.zeros((x.shape[0], x.shape[1]), dtype=np.float32 if real is float else np.float64)
    cdef real[:, ::1] d = dx
    rmsnorm_backward(&d[0, 0], &dout[0, 0], &x[0, 0], &rstd[0], x.shape[0], x.shape[1])
    return dx


def py_matmul_forward(const real[:, ::1] x, const real[:, ::1] w):
    """out (T, Cout) = x (T, Cin) @ w (Cout, Cin)^T."""
    cdef Py_ssize_t T = x.shape[0], Cin = x.shape[1], Cout = w.shape[0]
    _need(w.shape[1] == Cin, f"x has {Cin} columns but w is {Cout}x{w.shape[1]}")
    _need(T > 0 and Cin > 0 and Cout > 0, "matmul_forward: x and w must not be empty")
    dtype = np.float32 if real is float else np.float64
    out = np.empty((T, Cout), dtype=dtype)
    cdef real[:, ::1] o = out
    matmul_forward(&o[0, 0], &x[0, 0], &w[0, 0], T, Cin, Cout, 1)
    return out


def py_matmul_backward(const real[:, ::1] dout, const real[:, ::1] x, const real[:, ::1] w,
                       real[:, ::1] dw):
    """dw += dout^T @ x (in place); returns dx = dout @ w."""
    cdef Py_ssize_t T = x.shape[0], Cin = x.shape[1], Cout = w.shape[0]
    _need(w.shape[1] == Cin and dout.shape[0] == T and dout.shape[1] == Cout
          and dw.shape[0] == Cout and dw.shape[1] == Cin, "matmul_backward: shapes do not agree")
    _need(T > 0 and Cin > 0 and Cout > 0, "matmul_backward: x and w must not be empty")
    dx = np.empty((T, Cin), dtype=np.float32 if real is float else np.float64)
    cdef real[:, ::1] d = dx
    matmul_backward(&d[0, 0], &dw[0, 0], &dout[0, 0], &x[0, 0], &w[0, 0], T, Cin, Cout, False, 1)
    return dx


cdef int64_t[::1] _checked_cu_seqlens(object cu_seqlens, Py_ssize_t N, str what):
    """A copy of cu_seqlens (B + 1 sequence starts, then N) as int64, checked: it starts at 0,
    never decreases and ends at N, the number of rows of q (the kernel indexes with the copy)."""
    cdef int64_t[::1] cu = np.array(cu_seqlens, dtype=np.int64, ndmin=1).ravel()
    cdef Py_ssize_t b
    _need(cu.shape[0] >= 2, f"{what}: cu_seqlens needs at least two entries (0 and N)")
    _need(cu[0] == 0, f"{what}: cu_seqlens must start at 0, not {cu[0]}")
    for b in range(cu.shape[0] - 1):
        _need(cu[b + 1] >= cu[b], f"{what}: cu_seqlens decreases at entry {b + 1}")
    _need(cu[cu.shape[0] - 1] == N,
          f"{what}: cu_seqlens must end at {N} (the rows of q), not {cu[cu.shape[0] - 1]}")
    return cu


cdef Py_ssize_t _longest(const int64_t[::1] cu, bint shortest=False):
    """The length of the longest (or shortest) sequence of cu_seqlens."""
    cdef Py_ssize_t b, T = cu[1] - cu[0]
    for b in range(1, cu.shape[0] - 1):
        T = min(T, cu[b + 1] - cu[b]) if shortest else max(T, cu[b + 1] - cu[b])
    return T


def py_attention_forward(const real[:, ::1] q, const real[:, ::1] k, const real[:, ::1] v,
                         int64_t n_head, cu_seqlens=None):
    """Causal attention: (out (N, C), att).

    One sequence (cu_seqlens None): q, k, v are (T, C) and att is (n_head, T, T). Several
    sequences packed one after the other, as the training step calls the kernel: sequence b is
    rows cu_seqlens[b]..cu_seqlens[b+1]-1 of q, k, v, and att is (N, n_head, T_max), row n's
    weights over the keys of its own sequence from its first token on (zeros after row n's
    token, and in columns past its sequence's length)."""
    cdef Py_ssize_t N = q.shape[0], C = q.shape[1], T, B
    _need(k.shape[0] == v.shape[0] == N and k.shape[1] == v.shape[1] == C,
          "attention_forward: q, k, v must have one shape")
    _need(n_head > 0 and C % n_head == 0, f"n_head {n_head} does not divide {C}")
    _need(N > 0 and C > 0, "attention_forward: q, k, v must not be empty")
    dtype = np.float32 if real is float else np.float64
    cdef int64_t[::1] cu
    if cu_seqlens is None:
        cu = np.array([0, N], dtype=np.int64)
        T = N
        att = np.empty((n_head, T, T), dtype=dtype)  # every element is written, zeros included
    else:
        cu = _checked_cu_seqlens(cu_seqlens, N, "attention_forward")
        T = _longest(cu)
        # columns past a shorter sequence's length are never written: zeros from the start
        att = (np.zeros if _longest(cu, True) < T else np.empty)((N, n_head, T), dtype=dtype)
    B = cu.shape[0] - 1
    out = np.empty((N, C), dtype=dtype)
    cdef real[:, ::1] o = out
    cdef real[:, :, ::1] a = att
    # strides of att: (token, head) = (T, T * T) for one sequence, (n_head * T, T) packed
    cdef Py_ssize_t att_sn = T if cu_seqlens is None else n_head * T
    cdef Py_ssize_t att_sh = T * T if cu_seqlens is None else T
    attention_forward(&o[0, 0], &a[0, 0, 0], &q[0, 0], &k[0, 0], &v[0, 0], &cu[0], B, N, C,
                      n_head, att_sn, att_sh, 1)
    return out, att


def py_attention_backward(const real[:, ::1] dout, const real[:, ::1] q, const real[:, ::1] k,
                          const real[:, ::1] v, const real[:, :, ::1] att, int64_t n_head,
                          cu_seqlens=None):
    """(dq, dk, dv), each (N, C), of attention_forward (cu_seqlens and att as there)."""
    cdef Py_ssize_t N = q.shape[0], C = q.shape[1], T, B
    _need(dout.shape[0] == k.shape[0] == v.shape[0] == N
          and dout.shape[1] == k.shape[1] == v.shape[1] == C,
          "attention_backward: dout, q, k, v must have one shape")
    _need(n_head > 0 and C % n_head == 0, f"n_head {n_head} does not divide {C}")
    _need(N > 0 and C > 0, "attention_backward: q, k, v must not be empty")
    cdef int64_t[::1] cu
    if cu_seqlens is None:
        cu = np.array([0, N], dtype=np.int64)
        T = N
        _need(att.shape[0] == n_head and att.shape[1] == T and att.shape[2] == T,
              "att must be (n_head, T, T)")
    else:
        cu = _checked_cu_seqlens(cu_seqlens, N, "attention_backward")
        T = _longest(cu)
        _need(att.shape[0] == N and att.shape[1] == n_head and att.shape[2] == T,
              f"att must be (N, n_head, longest sequence) = ({N}, {n_head}, {T})")
    B = cu.shape[0] - 1
    dtype = np.float32 if real is float else np.float64
    dq, dk, dv = (np.zeros((N, C), dtype=dtype) for _ in range(3))
    dpre = np.empty(max(T * T, 1), dtype=dtype)
    cdef real[:, ::1] a_dq = dq, a_dk = dk, a_dv = dv
    cdef real[::1] a_dpre = dpre
    cdef Py_ssize_t att_sn = T if cu_seqlens is None else n_head * T
    cdef Py_ssize_t att_sh = T * T if cu_seqlens is None else T
    attention_backward(&a_dq[0, 0], &a_dk[0, 0], &a_dv[0, 0], &a_dpre[0], &dout[0, 0], &q[0, 0],
                       &k[0, 0], &v[0, 0], &att[0, 0, 0], &cu[0], B, C, n_head, T, att_sn,
                       att_sh, 1)
    return dq, dk, dv


def py_relu_forward(const real[::1] x):
    """max(x, 0) of a flat array (pass x.ravel() for matrices)."""
    out = np.empty(x.shape[0], dtype=np.float32 if real is float else np.float64)
    cdef real[::1] o = out
    relu_forward(&o[0], &x[0], x.shape[0])
    return out


def py_relu_backward(const real[::1] dout, const real[::1] out):
    """dout where relu's output was positive, else 0."""
    _need(dout.shape[0] == out.shape[0], "relu_backward: dout and out differ in length")
    dx = np.empty(out.shape[0], dtype=np.float32 if real is float else np.float64)
    cdef real[::1] d = dx
    relu_backward(&d[0], &dout[0], &out[0], out.shape[0])
    return dx


def py_softmax_crossentropy_forward(const real[:, ::1] logits, const int64_t[::1] targets):
    """(losses (T,), probs (T, V)) of -log softmax(logits)[target]."""
    cdef Py_ssize_t T = logits.shape[0], V = logits.shape[1]
    _need(targets.shape[0] == T, f"{T} rows of logits but {targets.shape[0]} targets")
    _need(T > 0, "softmax_crossentropy_forward: no logits")
    cdef int64_t[::1] ids = _checked_ids(targets, V, "target")
    dtype = np.float32 if real is float else np.float64
    probs = np.empty((T, V), dtype=dtype)
    losses = np.empty(T, dtype=dtype)
    cdef real[:, ::1] p = probs
    cdef real[::1] l = losses
    softmax_crossentropy_forward(&p[0, 0], &l[0], &logits[0, 0], &ids[0], T, V)
    return losses, probs


def py_softmax_crossentropy_backward(const real[:, ::1] probs, const int64_t[::1] targets,
                                     const real[::1] dlosses):
    """dlogits (T, V) = dlosses[t] * (probs[t] - onehot(targets[t]))."""
    cdef Py_ssize_t T = probs.shape[0], V = probs.shape[1], n
    _need(targets.shape[0] == T == dlosses.shape[0], "targets, dlosses and probs disagree")
    _need(T > 0, "softmax_crossentropy_backward: no probabilities")
    cdef int64_t[::1] ids = _checked_ids(targets, V, "target")
    dlogits = np.empty((T, V), dtype=np.float32 if real is float else np.float64)
    cdef real[:, ::1] d = dlogits
    for n in range(T):  # one row at a time: each row has its own dloss
        softmax_crossentropy_backward(&d[n, 0], &probs[n, 0], &ids[n], dlosses[n], 1, V)
    return dlogits

