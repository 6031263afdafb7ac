# Python twins of the layer kernels, one per kernel, with chapter 4's names and shapes (a single
# sequence, (T, C)): each C kernel can be tested against its NumPy twin, and chapter 5 times them.
# The training step never calls these. fastops exports them without the `py_` prefix
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


def py_attention_forward(const real[:, ::1] q, const real[:, ::1] k, const real[:, ::1] v,
                         int64_t n_head):
    """Causal attention of one sequence: (out (T, C), att (n_head, T, T))."""
    cdef Py_ssize_t T = q.shape[0], C = q.shape[1]
    _need(k.shape[0] == v.shape[0] == T and k.shape[1] == v.shape[1] == C,
          "attention_forward: q, k, v must have one shape")
    _need(n_head > 0 and C % n_head == 0, f"n_head {n_head} does not divide {C}")
    _need(T > 0 and C > 0, "attention_forward: q, k, v must not be empty")
    dtype = np.float32 if real is float else np.float64
    out = np.empty((T, C), dtype=dtype)
    att = np.empty((n_head, T, T), dtype=dtype)  # every element is written, zeros included
    cdef real[:, ::1] o = out
    cdef real[:, :, ::1] a = att
    cdef int64_t cu[2]
    cu[0], cu[1] = 0, T
    attention_forward(&o[0, 0], &a[0, 0, 0], &q[0, 0], &k[0, 0], &v[0, 0], cu, 1, T, C, n_head,
                      T, T * T, 1)
    return out, att


def py_attention_backward(const real[:, ::1] dout, const real[:, ::1] q, const real[:, ::1] k,
                          const real[:, ::1] v, const real[:, :, ::1] att, int64_t n_head):
    """(dq, dk, dv), each (T, C), of attention_forward."""
    cdef Py_ssize_t T = q.shape[0], C = q.shape[1]
    _need(dout.shape[0] == k.shape[0] == v.shape[0] == T
          and dout.shape[1] == k.shape[1] == v.shape[1] == C,
          "attention_backward: dout, q, k, v must have one shape")
    _need(n_head > 0 and C % n_head == 0, f"n_head {n_head} does not divide {C}")
    _need(att.shape[0] == n_head and att.shape[1] == T and att.shape[2] == T,
          "att must be (n_head, T, T)")
    _need(T > 0 and C > 0, "attention_backward: q, k, v must not be empty")
    dtype = np.float32 if real is float else np.float64
    dq, dk, dv = (np.zeros((T, C), dtype=dtype) for _ in range(3))
    dpre = np.empty(T * T, dtype=dtype)
    cdef real[:, ::1] a_dq = dq, a_dk = dk, a_dv = dv
    cdef real[::1] a_dpre = dpre
    cdef int64_t cu[2]
    cu[0], cu[1] = 0, T
    attention_backward(&a_dq[0, 0], &a_dk[0, 0], &a_dv[0, 0], &a_dpre[0], &dout[0, 0], &q[0, 0],
                       &k[0, 0], &v[0, 0], &att[0, 0, 0], cu, 1, C, n_head, T, T, T * T, 1)
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

