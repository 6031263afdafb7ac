# Python entry points: the training step, the loss, AdamW, and the layouts the Python side reads.
#
# Each entry point checks everything it is given before any C runs, and raises ValueError (or
# OverflowError for sizes past 64 bits) otherwise: a rejected call changes no buffer. The integer
# inputs (tokens, targets, cu_seqlens) are copied once checked, so the kernels index only with
# numbers that were checked, whatever happens to the caller's arrays meanwhile.
#
# Thread safety: a call releases the GIL while it computes. Two threads may call fastops at once
# on separate buffers; two calls that write the same buffers (one model shared between threads)
# give wrong numbers, never a crash.

MAX_THREADS = 256  # more OpenMP threads than this is a mistake (and can exhaust memory)


cdef int _check_threads(int64_t num_threads) except -1:
    if not 1 <= num_threads <= MAX_THREADS:
        raise ValueError(f"num_threads must be 1..{MAX_THREADS}, got {num_threads}")
    return 0


cdef int _check_adamw(int64_t t, double lr, double beta1, double beta2, double eps,
                      double weight_decay, double clip_norm) except -1:
    """AdamW's settings: ValueError for one that has no meaning (or is not a finite number)."""
    if t < 1:
        raise ValueError(f"the step count t starts at 1, got {t}")
    if not (isfinite(lr) and lr >= 0):
        raise ValueError(f"lr must be a finite number >= 0, got {lr}")
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
        raise ValueError(f"betas must be in [0, 1), got ({beta1}, {beta2})")
    if not (isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps}")
    if not (isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
    if not (isfinite(clip_norm) and clip_norm >= 0):
        raise ValueError(f"clip_norm must be a finite number >= 0 (0: no clipping), "
                         f"got {clip_norm}")
    return 0


cdef int _check_separate(tuple names, const char** starts, const int64_t* nbytes,
                         int n) except -1:
    """ValueError when two of the n buffers share memory (outputs must not overlap)."""
    cdef int i, j
    for i in range(n):
        for j in range(i + 1, n):
            if starts[i] < starts[j] + nbytes[j] and starts[j] < starts[i] + nbytes[i]:
                raise ValueError(f"{names[i]} and {names[j]} share memory: pass separate arrays")
    return 0


cdef int _check_batch_shape(const int64_t[::1] tokens, const int64_t[::1] targets,
                            const int64_t[::1] cu_seqlens) except -1:
    if tokens.shape[0] == 0 or cu_seqlens.shape[0] < 2:
        raise ValueError("the batch holds no tokens")
    if targets.shape[0] != tokens.shape[0]:
        raise ValueError(f"tokens ({tokens.shape[0]}) and targets ({targets.shape[0]}) differ "
                         "in length")
    return 0


cdef int64_t* _checked_batch(const int64_t[::1] tokens, const int64_t[::1] targets,
                             const int64_t[::1] cu_seqlens, const GPT* g) except NULL:
    """Checked copies of the batch and each token's position, in one malloc'd block (the caller
    frees it): tokens at [0, N), targets at [N, 2N), positions at [2N, 3N), cu_seqlens after."""
    cdef int64_t n, b, N = g.N, B = g.B, V = g.V
    cdef int64_t* batch = <int64_t*>malloc((3 * N + B + 1) * sizeof(int64_t))
    if batch == NULL:
        raise MemoryError()
    cdef int64_t* tok = batch
    cdef int64_t* tgt = batch + N
    cdef int64_t* pos = batch + 2 * N
    cdef int64_t* cu = batch + 3 * N
    memcpy(tok, &tokens[0], N * sizeof(int64_t))
    memcpy(tgt, &targets[0], N * sizeof(int64_t))
    memcpy(cu, &cu_seqlens[0], (B + 1) * sizeof(int64_t))
    try:
        if cu[0] != 0 or cu[B] != N:
            raise ValueError(f"cu_seqlens must run from 0 to the number of tokens {N}")
        for b in range(B):  # cu[b] is in 0..N here, so cu[b+1] - cu[b] cannot overflow
            if not (cu[b] < cu[b + 1] and cu[b + 1] - cu[b] <= g.block):
                raise ValueError(f"sequence {b} has {cu[b + 1] - cu[b]} tokens; each needs "
                                 f"1..block_size={g.block}")
        for n in range(N):
            if not (0 <= tok[n] < V and 0 <= tgt[n] < V):
                raise ValueError(f"token id {tok[n]} or target {tgt[n]} at {n} is outside the "
                                 f"vocabulary 0..{V - 1}")
    except BaseException:
        free(batch)
        raise
    for b in range(B):
        for n in range(cu[b], cu[b + 1]):
            pos[n] = n - cu[b]
    return batch


cdef int _check_model_buffers(const GPT* g, int64_t n_params, int64_t n_acts) except -1:
    if n_params != g.params.total:
        raise ValueError(f"the parameter buffer holds {n_params} numbers, this model needs "
                         f"{g.params.total}")
    if n_acts < g.acts.total:
        raise ValueError(f"the workspace holds {n_acts} numbers, this batch needs "
                         f"{g.acts.total} (see workspace_size)")
    return 0


def pack_padded_batch(const int64_t[:, ::1] tokens, const int64_t[:, ::1] targets,
                      const double[:, ::1] mask, int64_t vocab_size, int64_t block_size) -> tuple:
    """Packed (tokens, targets, cu_seqlens) of a right-padded (B, T) batch, checked first: the
    checks and errors of microgpt_lib.batches.check_batch, then its `pack`, in one pass in C.

    tokens, targets: (B, T) int64; mask: (B, T) float64, 1.0 for a real position, 0.0 for
    padding. ValueError (nothing returned) for shapes other than one (B, T) with B >= 1 and
    1 <= T <= block_size, ids outside 0..vocab_size-1 (padding included), mask values other than
    exactly 0 and 1, a row whose real positions do not come first, or a row with none. (NumPy's
    check and pack take about 0.1 ms, a tenth of a batched e64 step on two threads.)
    """
    cdef Py_ssize_t B = tokens.shape[0], T = tokens.shape[1], b, t, n = 0, first_empty = -1
    cdef bint bad_value = False, bad_order = False, bad_tokens = False, bad_targets = False
    cdef double x
    if not (targets.shape[0] == mask.shape[0] == B and targets.shape[1] == mask.shape[1] == T):
        raise ValueError(f"tokens {(B, T)}, targets {(targets.shape[0], targets.shape[1])} and "
                         f"mask {(mask.shape[0], mask.shape[1])} must be one (B, T) shape")
    if B < 1 or not 1 <= T <= block_size:
        raise ValueError(f"a batch needs at least one row and 1..block_size ({block_size}) "
                         f"positions, got shape {(B, T)}")
    cu = np.empty(B + 1, dtype=np.int64)
    cdef int64_t[::1] cu_ = cu
    with nogil:
        for b in range(B):
            cu_[b] = n
            for t in range(T):
                bad_tokens |= not 0 <= tokens[b, t] < vocab_size
                bad_targets |= not 0 <= targets[b, t] < vocab_size
                x = mask[b, t]
                if x == 1.0:
                    bad_order |= t > 0 and mask[b, t - 1] != 1.0
                    n += 1
                elif x != 0.0:
                    bad_value = True
            if n == cu_[b] and first_empty < 0:
                first_empty = b
        cu_[B] = n
    for name, bad in (("tokens", bad_tokens), ("targets", bad_targets)):
        if bad:
            raise ValueError(f"{name} hold ids outside the vocabulary 0..{vocab_size - 1}")
    if bad_value:
        raise ValueError("mask values must be exactly 0 (padding) or 1 (real)")
    if bad_order:
        raise ValueError("each row of the mask must mark its real tokens first, then padding")
    if first_empty >= 0:
        raise ValueError(f"row {first_empty} of the batch has no real position")
    packed_tokens = np.empty(n, dtype=np.int64)
    packed_targets = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] tok = packed_tokens
    cdef int64_t[::1] tgt = packed_targets
    with nogil:
        for b in range(B):
            n = cu_[b + 1] - cu_[b]
            memcpy(&tok[cu_[b]], &tokens[b, 0], n * sizeof(int64_t))
            memcpy(&tgt[cu_[b]], &targets[b, 0], n * sizeof(int64_t))
    return packed_tokens, packed_targets, cu


def workspace_size(int64_t n_tokens, int64_t n_seqs, int64_t n_embd, int64_t n_head,
                   int64_t n_layer, int64_t vocab_size, int64_t block_size) -> int:
    """Elements of the activation workspace for n_tokens packed tokens in n_seqs sequences."""
    cdef GPT g
    gpt_layout(&g, n_tokens, n_seqs, n_embd, n_head, n_layer, vocab_size, block_size)
    return g.acts.total


def activation_offsets(int64_t n_tokens, int64_t n_seqs, int64_t n_embd, int64_t n_head,
                       int64_t n_layer, int64_t vocab_size, int64_t block_size) -> dict:
    """Where the model-wide activations start in the workspace: name -> element offset
    (e.g. "logits": the (N, V) logits of the last forward)."""
    cdef GPT g
    gpt_layout(&g, n_tokens, n_seqs, n_embd, n_head, n_layer, vocab_size, block_size)
    cdef dict acts = g.acts  # the struct as a dict: name -> {"offset", "rows", "cols"}, or a size
    return {name: t["offset"] for name, t in acts.items()
            if isinstance(t, dict) and "offset" in t}


def param_layout(int64_t n_embd, int64_t n_layer, int64_t vocab_size,
                 int64_t block_size) -> dict:
    """Every weight matrix of the flat parameter buffer, in order: name -> (offset, (rows,
    cols)), with the names of the Python side ("wte", ..., "layer0.attn_wq", ...)."""
    cdef GPT g
    gpt_layout(&g, 0, 0, n_embd, 1, n_layer, vocab_size, block_size)
    cdef dict params = g.params  # the struct as a dict
    layout = {}
    for name, t in params.items():
        if name == "layer":
            for layer in range(n_layer):
                shift = layer * params["layer_size"]
                for weight, u in t.items():
                    layout[f"layer{layer}.{weight}"] = (u["offset"] + shift, (u["rows"], u["cols"]))
        elif isinstance(t, dict):
            layout[name] = (t["offset"], (t["rows"], t["cols"]))
    return dict(sorted(layout.items(), key=lambda item: item[1][0]))


def gpt_loss(real[::1] params, real[::1] grads, real[::1] acts, const int64_t[::1] tokens,
             const int64_t[::1] targets, const int64_t[::1] cu_seqlens, int64_t n_embd,
             int64_t n_head, int64_t n_layer, int64_t vocab_size, int64_t block_size,
             bint backward=True, int64_t num_threads=1) -> float:
    """Mean cross-entropy of a packed batch; with backward, grads += its gradient.

    params, grads: (num_params,) flat (param_layout order); acts: (workspace_size(...),) scratch
    that keeps the caches (logits, probs, att, ...); tokens, targets: (N,) int64; cu_seqlens:
    (B+1,) int64 offsets of the sequences in the packed tokens.
    """
    cdef GPT g
    cdef const char* starts[3]
    cdef int64_t nbytes[3]
    _check_threads(num_threads)
    if grads.shape[0] != params.shape[0]:
        raise ValueError(f"grads ({grads.shape[0]}) and params ({params.shape[0]}) differ")
    _check_batch_shape(tokens, targets, cu_seqlens)
    gpt_layout(&g, tokens.shape[0], cu_seqlens.shape[0] - 1, n_embd, n_head, n_layer,
               vocab_size, block_size)
    _check_model_buffers(&g, params.shape[0], acts.shape[0])
    starts[0], starts[1], starts[2] = <char*>&params[0], <char*>&grads[0], <char*>&acts[0]
    nbytes[0] = nbytes[1] = params.shape[0] * sizeof(real)
    nbytes[2] = acts.shape[0] * sizeof(real)
    _check_separate(("params", "grads", "acts"), starts, nbytes, 3)
    cdef int64_t* batch = _checked_batch(tokens, targets, cu_seqlens, &g)
    cdef int64_t N = g.N
    cdef double loss
    cdef int blas_threads
    with nogil:
        blas_threads = _blas_threads_off(num_threads)
        loss = gpt_forward(&params[0], &acts[0], batch, batch + N, batch + 2 * N, batch + 3 * N,
                           &g, num_threads)
        if backward:
            gpt_backward(&params[0], &grads[0], &acts[0], batch, batch + N, batch + 2 * N,
                         batch + 3 * N, &g, num_threads)
        _blas_threads_restore(blas_threads)
    free(batch)
    return loss / N


cdef int _check_optimiser_buffers(real[::1] params, real[::1] grads, real[::1] m,
                                  real[::1] v) except -1:
    cdef int64_t n = params.shape[0]
    cdef const char* starts[4]
    cdef int64_t nbytes[4]
    if grads.shape[0] != n or m.shape[0] != n or v.shape[0] != n:
        raise ValueError(f"params, grads, m, v must have one length, got "
                         f"{n}, {grads.shape[0]}, {m.shape[0]}, {v.shape[0]}")
    starts[0], starts[1], starts[2], starts[3] = (<char*>&params[0], <char*>&grads[0],
                                                  <char*>&m[0], <char*>&v[0])
    nbytes[0] = nbytes[1] = nbytes[2] = nbytes[3] = n * sizeof(real)
    _check_separate(("params", "grads", "m", "v"), starts, nbytes, 4)
    return 0


def adamw_update(real[::1] params, real[::1] grads, real[::1] m, real[::1] v, int64_t t,
                 double lr, double beta1, double beta2, double eps, double weight_decay=0.0,
                 double clip_norm=0.0) -> float:
    """AdamW step over flat buffers (grads kept); clip_norm > 0 rescales the gradient to at most
    that global norm first, as torch.nn.utils.clip_grad_norm_. Returns the gradient's norm."""
    _check_optimiser_buffers(params, grads, m, v)
    _check_adamw(t, lr, beta1, beta2, eps, weight_decay, clip_norm)
    cdef int64_t n = params.shape[0]
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
               const int64_t[::1] cu_seqlens, int64_t n_embd, int64_t n_head, int64_t n_layer,
               int64_t vocab_size, int64_t block_size, int64_t t, double lr, double beta1,
               double beta2, double eps, double weight_decay=0.0, double clip_norm=0.0,
               int64_t num_threads=1) -> float:
    """Forward, backward and AdamW in one call with no Python in between; returns the mean loss.
    grads is overwritten with this batch's gradient (before clipping)."""
    cdef GPT g
    cdef const char* starts[5]
    cdef int64_t nbytes[5]
    _check_threads(num_threads)
    _check_optimiser_buffers(params, grads, m, v)
    _check_adamw(t, lr, beta1, beta2, eps, weight_decay, clip_norm)
    _check_batch_shape(tokens, targets, cu_seqlens)
    gpt_layout(&g, tokens.shape[0], cu_seqlens.shape[0] - 1, n_embd, n_head, n_layer,
               vocab_size, block_size)
    _check_model_buffers(&g, params.shape[0], acts.shape[0])
    cdef int64_t P = params.shape[0], N = g.N
    starts[0], starts[1], starts[2], starts[3], starts[4] = (
        <char*>&params[0], <char*>&grads[0], <char*>&m[0], <char*>&v[0], <char*>&acts[0])
    nbytes[0] = nbytes[1] = nbytes[2] = nbytes[3] = P * sizeof(real)
    nbytes[4] = acts.shape[0] * sizeof(real)
    _check_separate(("params", "grads", "m", "v", "acts"), starts, nbytes, 5)
    cdef int64_t* batch = _checked_batch(tokens, targets, cu_seqlens, &g)
    cdef double loss, norm, scale = 1.0
    cdef int blas_threads
    cdef AdamWStep opt
    opt.t, opt.lr, opt.beta1, opt.beta2, opt.eps, opt.weight_decay = (t, lr, beta1, beta2, eps,
                                                                      weight_decay)
    # Without clipping, the backward updates each weight as soon as its gradient is complete: on
    # one thread, or with threads that own slabs of rows (each updates the rows it computed).
    # Clipping needs the whole gradient's norm first; with threads sharing every kernel, one
    # update per weight would be one parallel region per weight.
    cdef bint fused = clip_norm == 0 and (num_threads == 1 or _row_slabs(N, g.C, num_threads))
    cdef bint slabs = num_threads > 1 and _row_slabs(N, g.C, num_threads)
    cdef double busy[256]  # MAX_THREADS
    cdef fastops_cpu_place caller
    cdef bint balance = slabs and _balance
    if balance:  # the threads' shares of rows, from their speeds in the steps before
        memset(busy, 0, sizeof(busy))
        _plan_slabs(&g, num_threads)
        g.busy = busy
    if slabs:
        fastops_cpu_here(&caller)  # no other thread of ours on this CPU (see model.pxi)
        g.caller = &caller
    with nogil:
        blas_threads = _blas_threads_off(num_threads)
        loss = gpt_forward(&params[0], &acts[0], batch, batch + N, batch + 2 * N, batch + 3 * N,
                           &g, num_threads)
        if fused:
            gpt_backward(&params[0], &grads[0], &acts[0], batch, batch + N, batch + 2 * N,
                         batch + 3 * N, &g, num_threads, True, &opt, &m[0], &v[0])
        else:
            gpt_backward(&params[0], &grads[0], &acts[0], batch, batch + N, batch + 2 * N,
                         batch + 3 * N, &g, num_threads, True)
            if clip_norm > 0:
                norm = grad_norm(&grads[0], P, num_threads)
                if norm > clip_norm:
                    scale = clip_norm / (norm + 1e-6)
            adamw(&params[0], &grads[0], &m[0], &v[0], P, t, lr, beta1, beta2, eps,
                  weight_decay, scale, num_threads)
        _blas_threads_restore(blas_threads)
        if balance:
            _learn_shares(&g, busy, num_threads)
    free(batch)
    return loss / N
