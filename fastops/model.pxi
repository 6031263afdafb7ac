# The model: where every tensor lives, defined once, and the forward and backward over all layers.
#
# As in llm.c, the parameters are one flat buffer (and the gradients and both Adam moments are
# three more of the same layout), the activations another; a struct names every tensor in each
# (`ParameterTensors`, `ActivationTensors`) and the layer loop gives each of its tensors a name
# once. The parameter order is the one the Python side and saved records use: wte, wpe, lm_head,
# then for each layer attn_wq, attn_wk, attn_wv, attn_wo, mlp_fc1, mlp_fc2. Python reads it from
# here (`param_layout`). Every size is a 64-bit integer, checked for overflow when the layout is
# made: sizes too large for memory raise OverflowError instead of wrapping around.

cdef struct Tensor:
    int64_t offset  # where it starts in its flat buffer, in elements
    int64_t rows    # its shape: (rows, cols), cols = 1 for a vector
    int64_t cols

cdef struct LayerWeights:   # one transformer block; the offsets are layer 0's
    Tensor attn_wq  # (C, C)
    Tensor attn_wk  # (C, C)
    Tensor attn_wv  # (C, C)
    Tensor attn_wo  # (C, C)
    Tensor mlp_fc1  # (4C, C)
    Tensor mlp_fc2  # (C, 4C)

cdef struct ParameterTensors:
    Tensor wte          # (V, C) token embeddings
    Tensor wpe          # (block, C) position embeddings
    Tensor lm_head      # (V, C) output layer
    LayerWeights layer  # layer 0's weights; layer l's are l * layer_size further on
    int64_t layer_size  # 12 C^2
    int64_t total       # the length of params, grads, m and v

cdef struct LayerActivations:  # what one block keeps for its backward; layer 0's offsets
    Tensor resid    # (N, C) the block's input: the residual stream (layer 0: rmsnorm(emb))
    Tensor ln1      # (N, C) rmsnorm(resid)
    Tensor rstd1    # (N, 1)
    Tensor q        # (N, C) ln1 @ attn_wq^T
    Tensor k        # (N, C)
    Tensor v        # (N, C)
    Tensor att      # (N, NH * block) softmax weights, token n, head h, key s at [n, h*block + s]
    Tensor atty     # (N, C) attention output, before attn_wo
    Tensor res_mid  # (N, C) resid + atty @ attn_wo^T
    Tensor ln2      # (N, C) rmsnorm(res_mid)
    Tensor rstd2    # (N, 1)
    Tensor fch      # (N, 4C) relu(ln2 @ mlp_fc1^T)

cdef struct ActivationTensors:
    Tensor emb      # (N, C) wte[tokens] + wpe[pos]
    Tensor rstd0    # (N, 1)
    Tensor logits   # (N, V) (the backward reuses it for dlogits)
    Tensor probs    # (N, V)
    Tensor losses   # (N, 1)
    LayerActivations layer  # layer 0's; layer l's are l * layer_size further on
    int64_t layer_size
    Tensor res_out  # (N, C) the last block's output
    # the backward's scratch, shared by all layers
    Tensor dres     # (N, C) gradient of the residual stream
    Tensor dres2    # (N, C) the same, every other layer, when threads own slabs of rows
    Tensor dln      # (N, C) gradient of a norm's output
    Tensor dq       # (N, C)
    Tensor dk       # (N, C)
    Tensor dv       # (N, C)
    Tensor datty    # (N, C)
    Tensor dfch     # (N, 4C)
    Tensor dpre     # (B * NH, block * block) attention scratch, one slab per (sequence, head)
    int64_t total   # the workspace's length

cdef struct GPT:
    int64_t N, B, C, NH, L, V, block  # tokens, sequences, n_embd, n_head, n_layer, vocab, block
    ParameterTensors params
    ActivationTensors acts
    int shared_by      # the thread count `share` is for (0: equal slabs, ceil(n / threads) each)
    double share[257]  # thread c's slab of any n rows: from n * share[c] to n * share[c + 1]
    double* busy       # (threads,) seconds each thread worked in the slab regions, or NULL
    const fastops_cpu_place* caller  # where the calling thread runs (train_step), or NULL


cdef int64_t _mul(int64_t a, int64_t b) except -1:
    """a * b for sizes (a, b >= 0), or OverflowError past 2**63 - 1."""
    if a != 0 and b > INT64_MAX // a:
        raise OverflowError("size overflow")
    return a * b


cdef int _place(Tensor* t, int64_t* end, int64_t rows, int64_t cols) except -1:
    """Put a (rows, cols) tensor at *end and move *end past it."""
    cdef int64_t size = _mul(rows, cols)
    if size > INT64_MAX - end[0]:
        raise OverflowError("size overflow")
    t.offset, t.rows, t.cols = end[0], rows, cols
    end[0] += size
    return 0


cdef int parameter_tensors(ParameterTensors* p, int64_t C, int64_t L, int64_t V,
                           int64_t block) except -1:
    """The parameter layout (sizes checked positive by the caller)."""
    cdef int64_t end = 0, layer0
    _place(&p.wte, &end, V, C)
    _place(&p.wpe, &end, block, C)
    _place(&p.lm_head, &end, V, C)
    layer0 = end
    _place(&p.layer.attn_wq, &end, C, C)
    _place(&p.layer.attn_wk, &end, C, C)
    _place(&p.layer.attn_wv, &end, C, C)
    _place(&p.layer.attn_wo, &end, C, C)
    _place(&p.layer.mlp_fc1, &end, _mul(4, C), C)
    _place(&p.layer.mlp_fc2, &end, C, _mul(4, C))
    p.layer_size = end - layer0
    p.total = end
    end = _mul(p.layer_size, L - 1)  # layers 1..L-1
    if end > INT64_MAX - p.total:
        raise OverflowError("size overflow")
    p.total += end
    return 0


cdef int activation_tensors(ActivationTensors* a, int64_t N, int64_t B, int64_t C, int64_t NH,
                            int64_t L, int64_t V, int64_t block) except -1:
    """The workspace layout for N packed tokens in B sequences."""
    cdef int64_t end = 0, layer0, rest
    _place(&a.emb, &end, N, C)
    _place(&a.rstd0, &end, N, 1)
    _place(&a.logits, &end, N, V)
    _place(&a.probs, &end, N, V)
    _place(&a.losses, &end, N, 1)
    layer0 = end
    _place(&a.layer.resid, &end, N, C)
    _place(&a.layer.ln1, &end, N, C)
    _place(&a.layer.rstd1, &end, N, 1)
    _place(&a.layer.q, &end, N, C)
    _place(&a.layer.k, &end, N, C)
    _place(&a.layer.v, &end, N, C)
    _place(&a.layer.att, &end, N, _mul(NH, block))
    _place(&a.layer.atty, &end, N, C)
    _place(&a.layer.res_mid, &end, N, C)
    _place(&a.layer.ln2, &end, N, C)
    _place(&a.layer.rstd2, &end, N, 1)
    _place(&a.layer.fch, &end, N, _mul(4, C))
    a.layer_size = end - layer0
    rest = _mul(a.layer_size, L - 1)  # layers 1..L-1
    if rest > INT64_MAX - end:
        raise OverflowError("size overflow")
    end += rest
    _place(&a.res_out, &end, N, C)
    _place(&a.dres, &end, N, C)
    _place(&a.dres2, &end, N, C)
    _place(&a.dln, &end, N, C)
    _place(&a.dq, &end, N, C)  # dq, dk, dv one after another: the backward zeroes them at once
    _place(&a.dk, &end, N, C)
    _place(&a.dv, &end, N, C)
    _place(&a.datty, &end, N, C)
    _place(&a.dfch, &end, N, _mul(4, C))
    _place(&a.dpre, &end, _mul(B, NH), _mul(block, block))
    a.total = end
    return 0


cdef int gpt_layout(GPT* g, int64_t N, int64_t B, int64_t C, int64_t NH, int64_t L, int64_t V,
                    int64_t block) except -1:
    """Check the sizes and lay out the parameters and the workspace: ValueError for a size that
    makes no model, OverflowError for one whose buffers could not be indexed in 64 bits."""
    if C < 1 or NH < 1 or L < 1 or V < 1 or block < 1 or C % NH:
        raise ValueError(f"bad model sizes: n_embd={C}, n_head={NH}, n_layer={L}, "
                         f"vocab_size={V}, block_size={block} (each >= 1, n_head divides n_embd)")
    if N < 0 or B < 0:
        raise ValueError(f"bad batch sizes: {N} tokens in {B} sequences")
    g.N, g.B, g.C, g.NH, g.L, g.V, g.block = N, B, C, NH, L, V, block
    g.shared_by, g.busy, g.caller = 0, NULL, NULL
    try:
        parameter_tensors(&g.params, C, L, V, block)
        activation_tensors(&g.acts, N, B, C, NH, L, V, block)
    except OverflowError:
        raise OverflowError(
            f"n_embd={C}, n_head={NH}, n_layer={L}, vocab_size={V}, block_size={block} with "
            f"{N} tokens in {B} sequences need buffers of more than 2**63-1 numbers") from None
    return 0


# A waiting thread spins (fastops/__init__), so two of our threads on one CPU are far worse than
# one thread: each spins through the other's time slices at every meeting (a step at e64 took
# 6x one thread's time, seen on a virtual machine whose scheduler put the OpenMP thread on the
# caller's CPU and left the other idle). Once per step, a thread that finds itself on the
# caller's CPU moves to the caller's other CPUs (Linux; elsewhere nothing happens).
cdef extern from *:
    """
    #ifdef __linux__
    #include <sched.h>
    #endif
    #if defined(__linux__) && defined(CPU_SET)
    typedef struct { int cpu; cpu_set_t allowed; } fastops_cpu_place;
    /* The calling thread's CPU and the CPUs it may run on. */
    static void fastops_cpu_here(fastops_cpu_place* p) {
        p->cpu = sched_getcpu();
        if (p->cpu < 0 || sched_getaffinity(0, sizeof(p->allowed), &p->allowed) != 0)
            p->cpu = -1;
    }
    /* If this thread runs on p's CPU: run it on p's other CPUs, if there are any. */
    static void fastops_cpu_leave(const fastops_cpu_place* p) {
        cpu_set_t other;
        if (p->cpu < 0 || sched_getcpu() != p->cpu) return;
        other = p->allowed;
        CPU_CLR(p->cpu, &other);
        if (CPU_COUNT(&other) > 0) sched_setaffinity(0, sizeof(other), &other);
    }
    #else
    typedef struct { int cpu; } fastops_cpu_place;
    static void fastops_cpu_here(fastops_cpu_place* p) { p->cpu = -1; }
    static void fastops_cpu_leave(const fastops_cpu_place* p) { (void)p; }
    #endif
    """
    ctypedef struct fastops_cpu_place:
        int cpu
    void fastops_cpu_here(fastops_cpu_place* p) noexcept nogil
    void fastops_cpu_leave(const fastops_cpu_place* p) noexcept nogil


cdef inline void _slab(const GPT* g, Py_ssize_t n, Py_ssize_t c, int slabs, Py_ssize_t* lo,
                       Py_ssize_t* hi) noexcept nogil:
    """Thread c's slab [lo, hi) of n rows (tokens, or rows of a weight) shared among `slabs`
    threads: its share (g.share, learnt from the threads' speeds), or ceil(n / slabs)."""
    cdef Py_ssize_t part
    if g.shared_by == slabs:  # in whole blocks of 16 rows, BLAS' tiles: odd slabs cost it more
        lo[0] = min(n, 16 * <Py_ssize_t>(n * g.share[c] / 16 + 0.5))
        hi[0] = n if c + 1 == slabs else min(n, 16 * <Py_ssize_t>(n * g.share[c + 1] / 16 + 0.5))
    else:
        part = (n + slabs - 1) // slabs
        lo[0] = min(n, c * part)
        hi[0] = min(n, c * part + part)


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + 1e-9 * ts.tv_nsec


# Threads' shares of the rows. Equal slabs assume equal cores; a core that another program (or
# another virtual machine) slows down makes its thread finish last in every region, and the other
# waits. So train_step times each thread's work in the slab regions and gives the next step's
# slabs in proportion to the speeds it saw (averaged with the shares before, and kept within
# 1/4 and 7/4 of an equal share). Our loops do a row's arithmetic the same way on any thread and
# gpt_forward sums the loss over the rows in order, as one thread does; but BLAS may round a row
# differently with the number of rows per call, so balanced runs can differ in the last bits from
# run to run. Reproducible runs come first: balancing is opt-in (set_thread_balance(True)), for
# machines whose cores run at different speeds. Process-wide: the speeds are the machine's,
# whichever model runs.
cdef double _learnt_share[257]
cdef int _learnt_by = 0
cdef bint _balance = False  # set_thread_balance


def set_thread_balance(bint on) -> None:
    """Share a step's rows among threads by their measured speeds (True), or in equal slabs
    (False, the default). Balanced runs on several threads can differ in the last bits from run
    to run (BLAS rounds a row differently with the rows per call); equal slabs repeat exactly."""
    global _balance, _learnt_by
    _balance = on
    _learnt_by = 0  # start again from equal slabs


def get_thread_balance() -> bool:
    """Whether threads share a step's rows by their measured speeds (set_thread_balance)."""
    return _balance


cdef void _plan_slabs(GPT* g, int nthreads) noexcept nogil:
    """Give g the shares learnt for nthreads threads, if any. Steps running at once in two
    Python threads may read them while the other writes: any shares that still run from 0 up to
    1 split the rows correctly (every row to one thread), and others are not used."""
    cdef int c
    if not (nthreads > 1 and _learnt_by == nthreads):
        return
    for c in range(nthreads + 1):
        g.share[c] = _learnt_share[c]
    if g.share[0] != 0.0 or g.share[nthreads] != 1.0:
        return
    for c in range(nthreads):
        if not g.share[c] <= g.share[c + 1]:
            return
    g.shared_by = nthreads


cdef void _learn_shares(const GPT* g, const double* busy, int nthreads) noexcept nogil:
    """Next step's shares from this step's: each thread's rows per second of work, averaged
    with the shares it had."""
    global _learnt_by
    cdef int c
    cdef double speed[256]  # MAX_THREADS
    cdef double old, total = 0.0, lo = 0.25 / nthreads, hi = 1.75 / nthreads
    for c in range(nthreads):
        if not busy[c] > 0:  # a thread that measured nothing: keep what we had
            return
        old = g.share[c + 1] - g.share[c] if g.shared_by == nthreads else 1.0 / nthreads
        speed[c] = old / busy[c]
        total += speed[c]
    for c in range(nthreads):
        old = g.share[c + 1] - g.share[c] if g.shared_by == nthreads else 1.0 / nthreads
        speed[c] = min(hi, max(lo, 0.5 * old + 0.5 * speed[c] / total))
    total = 0.0
    for c in range(nthreads):
        total += speed[c]
    _learnt_share[0] = 0.0
    for c in range(nthreads):
        _learnt_share[c + 1] = _learnt_share[c] + speed[c] / total
    _learnt_share[nthreads] = 1.0
    _learnt_by = nthreads


cdef bint _row_slabs(Py_ssize_t N, Py_ssize_t C, int nthreads) noexcept nogil:
    """True when a step's N tokens are enough to give each thread a slab of at least 8 rows for
    the whole forward (and the products are worth sharing at all)."""
    return nthreads > 1 and N >= 8 * nthreads and N * C * C >= _parallel_min_flops


cdef double _forward_rows(real* params, real* acts, const int64_t* tokens,
                          const int64_t* targets, const int64_t* pos, const GPT* g, int64_t stage,
                          Py_ssize_t r0, Py_ssize_t r1, int nthreads) noexcept nogil:
    """Rows r0..r1 of everything the forward computes row by row between two attentions: stage 0
    embeds, normalises and projects layer 0's q, k, v; stage l + 1 finishes layer l after its
    attention (attn_wo, residual, norm, MLP, residual, the next norm) and projects layer l + 1's
    q, k, v, or, after the last layer, the logits and the loss. Returns the rows' summed loss
    (0 before the last stage). One thread per slab of rows (nthreads 1), or all rows with
    nthreads sharing each layer: no row needs another's, so a slab needs no meeting of threads
    until the next attention."""
    cdef const ParameterTensors* P = &g.params
    cdef const ActivationTensors* A = &g.acts
    cdef Py_ssize_t N = g.N, C = g.C, n = r1 - r0, l
    cdef real* p = params
    cdef real* a
    cdef real* l_ln1
    cdef real* l_out
    cdef real* l_next_rstd1
    if n <= 0:
        return 0.0
    if stage == 0:
        a = acts
        embed_norm_forward_threads(acts + A.emb.offset + r0 * C, a + A.layer.resid.offset + r0 * C,
                                   acts + A.rstd0.offset + r0, tokens + r0, pos + r0,
                                   params + P.wte.offset, params + P.wpe.offset, n, C, nthreads)
        rmsnorm_forward_threads(a + A.layer.ln1.offset + r0 * C, a + A.layer.rstd1.offset + r0,
                                a + A.layer.resid.offset + r0 * C, n, C, nthreads)
    else:
        l = stage - 1  # finish layer l
        p = params + l * P.layer_size
        a = acts + l * A.layer_size
        matmul_forward_rows(a + A.layer.res_mid.offset, a + A.layer.atty.offset,
                            p + P.layer.attn_wo.offset, r0, r1, N, C, C, nthreads)
        residual_norm_forward_threads(a + A.layer.res_mid.offset + r0 * C,
                                      a + A.layer.resid.offset + r0 * C,
                                      a + A.layer.ln2.offset + r0 * C,
                                      a + A.layer.rstd2.offset + r0, n, C, nthreads)
        matmul_forward_rows(a + A.layer.fch.offset, a + A.layer.ln2.offset,
                            p + P.layer.mlp_fc1.offset, r0, r1, N, C, 4 * C, nthreads)
        relu_forward_threads(a + A.layer.fch.offset + r0 * 4 * C,
                             a + A.layer.fch.offset + r0 * 4 * C, n * 4 * C, nthreads)
        # the block's output is the next block's input, and its norm the next block's first
        if l + 1 < g.L:
            l_out = a + A.layer_size + A.layer.resid.offset
            l_ln1 = a + A.layer_size + A.layer.ln1.offset + r0 * C
            l_next_rstd1 = a + A.layer_size + A.layer.rstd1.offset + r0
        else:
            l_out = acts + A.res_out.offset
            l_ln1 = l_next_rstd1 = NULL
        matmul_forward_rows(l_out, a + A.layer.fch.offset, p + P.layer.mlp_fc2.offset, r0, r1, N,
                            4 * C, C, nthreads)
        residual_norm_forward_threads(l_out + r0 * C, a + A.layer.res_mid.offset + r0 * C, l_ln1,
                                      l_next_rstd1, n, C, nthreads)
        if l + 1 == g.L:
            matmul_forward_rows(acts + A.logits.offset, acts + A.res_out.offset,
                                params + P.lm_head.offset, r0, r1, N, C, g.V, nthreads)
            return softmax_crossentropy_forward_threads(
                acts + A.probs.offset + r0 * g.V, acts + A.losses.offset + r0,
                acts + A.logits.offset + r0 * g.V, targets + r0, n, g.V, nthreads)
        p = params + (l + 1) * P.layer_size
        a = acts + (l + 1) * A.layer_size
    # the next block's q, k, v
    matmul_forward_rows(a + A.layer.q.offset, a + A.layer.ln1.offset, p + P.layer.attn_wq.offset,
                        r0, r1, N, C, C, nthreads)
    matmul_forward_rows(a + A.layer.k.offset, a + A.layer.ln1.offset, p + P.layer.attn_wk.offset,
                        r0, r1, N, C, C, nthreads)
    matmul_forward_rows(a + A.layer.v.offset, a + A.layer.ln1.offset, p + P.layer.attn_wv.offset,
                        r0, r1, N, C, C, nthreads)
    return 0.0


cdef double gpt_forward(real* params,               # (P,) ParameterTensors layout
                        real* acts,                 # (workspace,) ActivationTensors layout
                        const int64_t* tokens,      # (N,)
                        const int64_t* targets,     # (N,)
                        const int64_t* pos,         # (N,) each token's position in its sequence
                        const int64_t* cu_seqlens,  # (B+1,)
                        const GPT* g, int nthreads) noexcept nogil:
    """Forward over all layers; returns the sum of the per-token losses (acts keeps the caches).

    Only attention mixes tokens: everything between two attentions runs row by row. With
    enough tokens, each thread takes a slab of rows for all of it (`_slab`: ceil(N / nthreads),
    or its share learnt from the threads' speeds), in one parallel region (_forward_rows), and
    attention shares sequences along equal slabs: two regions per layer instead of one per
    layer kernel, and the rows a thread writes are the ones it reads next, in its own core's
    cache. The loss adds the rows' losses in row order, as one thread does.
    """
    cdef const ActivationTensors* A = &g.acts
    cdef int64_t stage, al, N = g.N, C = g.C
    cdef int slabs = nthreads if _row_slabs(N, C, nthreads) else 1
    cdef Py_ssize_t c, n, r0, r1
    cdef double sums[256]  # MAX_THREADS
    cdef double loss = 0.0, t0
    cdef const real* losses = acts + A.losses.offset
    for stage in range(g.L + 1):
        if stage > 0:
            al = (stage - 1) * A.layer_size
            attention_forward(acts + al + A.layer.atty.offset, acts + al + A.layer.att.offset,
                              acts + al + A.layer.q.offset, acts + al + A.layer.k.offset,
                              acts + al + A.layer.v.offset, cu_seqlens, g.B, N, C, g.NH,
                              g.NH * g.block, g.block, nthreads)
        if slabs > 1:
            for c in prange(slabs, num_threads=slabs, schedule="static"):
                if stage == 0 and c > 0 and g.caller != NULL:
                    fastops_cpu_leave(g.caller)
                t0 = _now()
                _slab(g, N, c, slabs, &r0, &r1)
                _forward_rows(params, acts, tokens, targets, pos, g, stage, r0, r1, 1)
                if g.busy != NULL:
                    g.busy[c] += _now() - t0
        else:
            sums[0] = _forward_rows(params, acts, tokens, targets, pos, g, stage, 0, N, nthreads)
    if slabs == 1:
        return sums[0]
    for n in range(N):  # as one thread adds them, whatever the slabs
        loss += losses[n]
    return loss


cdef struct AdamWStep:  # the settings of one AdamW update (gpt_backward can apply it)
    int64_t t
    double lr
    double beta1
    double beta2
    double eps
    double weight_decay


cdef inline void _update_tensor(real* params, const real* grads, real* m, real* v,
                                const AdamWStep* opt, int64_t offset, int64_t size,
                                int nthreads) noexcept nogil:
    """AdamW on one tensor of the flat buffers (offset, size), if gpt_backward was given opt."""
    if opt != NULL:
        adamw(params + offset, grads + offset, m + offset, v + offset, size, opt.t, opt.lr,
              opt.beta1, opt.beta2, opt.eps, opt.weight_decay, 1.0, nthreads)


cdef inline void _weight_slab(const GPT* g, real* dweight, const real* dout, const real* inp,
                              Py_ssize_t N, Py_ssize_t C, Py_ssize_t OC, bint accumulate,
                              Py_ssize_t c, int slabs) noexcept nogil:
    """Thread c's slab of rows (`_slab`) of the (OC, C) weight gradient dweight (+)= dout^T @ inp
    (matmul_backward_weight_slab)."""
    cdef Py_ssize_t o0, o1
    _slab(g, OC, c, slabs, &o0, &o1)
    matmul_backward_weight_slab(dweight, dout, inp, N, C, OC, accumulate, o0, o1)


cdef inline void _update_slab(const GPT* g, real* params, const real* grads, real* m, real* v,
                              const AdamWStep* opt, int64_t offset, Py_ssize_t OC, Py_ssize_t C,
                              Py_ssize_t c, int slabs) noexcept nogil:
    """AdamW (if given opt) on slab c's rows of the (OC, C) weight at offset: the rows of its
    gradient that _weight_slab gave the same thread, still in its cache."""
    cdef Py_ssize_t o0, o1
    _slab(g, OC, c, slabs, &o0, &o1)
    if o1 > o0:
        _update_tensor(params, grads, m, v, opt, offset + o0 * C, (o1 - o0) * C, 1)


cdef enum BackwardStage:  # the backward's stretches between two meetings of the threads
    LOSS_OUT   # softmax and cross-entropy, lm_head's input gradient
    MLP_OUT    # lm_head's (last layer) and mlp_fc2's weight gradients, through fc2 and relu
    MLP_IN     # mlp_fc1's weight gradient, through fc1 and the norm, attn_wo's input gradient
    ATTN_OUT   # attn_wo's weight gradient; dq, dk, dv zeroed for attention's backward
    ATTN_IN    # q, k, v's weight gradients, through them and the norm (layer 0: and the first)
    TABLES     # the embedding tables' gradients (the encoder's backward)
# With slabs of rows, ATTN_OUT has no region of its own: dq, dk, dv are zeroed in MLP_IN and
# attn_wo's weight gradient waits for ATTN_IN (which writes the residual stream's gradient into
# the other of two buffers, while the other threads still read this one).


cdef void _backward_rows(real* params, real* grads, real* acts, const int64_t* tokens,
                         const int64_t* targets, const int64_t* pos, const GPT* g,
                         BackwardStage stage, int64_t l, Py_ssize_t c, int slabs, int nthreads,
                         bint acc, const AdamWStep* opt, real* m, real* v) noexcept nogil:
    """One stage of layer l's backward (see BackwardStage) for slab c of `slabs` (nthreads 1):
    the rows of the input gradients and element-wise layers that the slab's thread computed in
    the forward, and a slab of rows of each weight gradient, which needs every token's rows of
    the stage before; with opt, AdamW on the slabs of gradient rows this thread completed, once
    no thread reads their weight any more (in the same stage, or in the next). With slabs 1 the
    whole stage instead, each product and layer shared among nthreads, and (with opt) each weight
    updated once its gradients are complete."""
    cdef const ParameterTensors* P = &g.params
    cdef const ActivationTensors* A = &g.acts
    cdef Py_ssize_t N = g.N, C = g.C, V = g.V, part, r0, r1, n
    cdef Py_ssize_t tables = P.lm_head.offset - P.wte.offset, wl = l * P.layer_size, wn, c0, c1
    cdef bint whole = slabs == 1
    cdef real* w = params + wl   # layer l's weights at layer 0's offsets
    cdef real* dw = grads + wl   # and their gradients
    cdef real* a = acts + l * A.layer_size
    cdef real* dres = acts + A.dres.offset  # the gradient of layer l's output, then of res_mid
    cdef real* dres_in = dres               # where ATTN_IN leaves that of layer l's input
    cdef real* dln = acts + A.dln.offset
    cdef real* dq = acts + A.dq.offset
    cdef real* dk = acts + A.dk.offset
    cdef real* dv = acts + A.dv.offset
    cdef real* datty = acts + A.datty.offset
    cdef real* dfch = acts + A.dfch.offset
    cdef real* dlogits = acts + A.logits.offset  # the logits are not needed again: reuse them
    _slab(g, N, c, slabs, &r0, &r1)
    n = r1 - r0
    if not whole:  # two buffers, in turn: the last layer starts in dres
        if (g.L - 1 - l) % 2:
            dres, dres_in = acts + A.dres2.offset, acts + A.dres.offset
        else:
            dres_in = acts + A.dres2.offset
    if stage == LOSS_OUT:
        softmax_crossentropy_backward_threads(dlogits + r0 * V, acts + A.probs.offset + r0 * V,
                                              targets + r0, <real>(1.0 / N), n, V, nthreads)
        if not acc:  # the tables' gradients are sums over tokens: they start from zero
            part = (tables + slabs - 1) // slabs
            memset(grads + P.wte.offset + min(tables, c * part), 0,
                   (min(tables, c * part + part) - min(tables, c * part)) * sizeof(real))
        if whole:
            matmul_backward(dres, grads + P.lm_head.offset, dlogits, acts + A.res_out.offset,
                            params + P.lm_head.offset, N, C, V, False, nthreads, acc)
            _update_tensor(params, grads, m, v, opt, P.lm_head.offset, V * C, nthreads)
        else:
            matmul_backward_input_rows(dres, dlogits, params + P.lm_head.offset, r0, r1, N, C, V,
                                       False)
    elif stage == MLP_OUT:  # dres is the gradient of the block's output, and of res_mid
        if whole:
            matmul_backward(dfch, dw + P.layer.mlp_fc2.offset, dres, a + A.layer.fch.offset,
                            w + P.layer.mlp_fc2.offset, N, 4 * C, C, False, nthreads, acc)
            _update_tensor(params, grads, m, v, opt, wl + P.layer.mlp_fc2.offset, 4 * C * C,
                           nthreads)
        else:
            if l == g.L - 1:  # lm_head was last read in LOSS_OUT
                _weight_slab(g, grads + P.lm_head.offset, dlogits,
                                            acts + A.res_out.offset, N, C, V, acc, c, slabs)
                _update_slab(g, params, grads, m, v, opt, P.lm_head.offset, V, C, c, slabs)
            else:  # layer l + 1's q, k, v: read, and their gradients completed, in its ATTN_IN
                wn = wl + P.layer_size
                _update_slab(g, params, grads, m, v, opt, wn + P.layer.attn_wq.offset, C, C, c,
                             slabs)
                _update_slab(g, params, grads, m, v, opt, wn + P.layer.attn_wk.offset, C, C, c,
                             slabs)
                _update_slab(g, params, grads, m, v, opt, wn + P.layer.attn_wv.offset, C, C, c,
                             slabs)
            _weight_slab(g, dw + P.layer.mlp_fc2.offset, dres,
                                        a + A.layer.fch.offset, N, 4 * C, C, acc, c, slabs)
            matmul_backward_input_rows(dfch, dres, w + P.layer.mlp_fc2.offset, r0, r1, N, 4 * C,
                                       C, False)
        relu_backward_threads(dfch + r0 * 4 * C, dfch + r0 * 4 * C,
                              a + A.layer.fch.offset + r0 * 4 * C, n * 4 * C, nthreads)
    elif stage == MLP_IN:
        if whole:
            matmul_backward(dln, dw + P.layer.mlp_fc1.offset, dfch, a + A.layer.ln2.offset,
                            w + P.layer.mlp_fc1.offset, N, C, 4 * C, False, nthreads, acc)
            _update_tensor(params, grads, m, v, opt, wl + P.layer.mlp_fc1.offset, 4 * C * C,
                           nthreads)
        else:
            _update_slab(g, params, grads, m, v, opt, wl + P.layer.mlp_fc2.offset, C, 4 * C, c,
                         slabs)
            _weight_slab(g, dw + P.layer.mlp_fc1.offset, dfch,
                                        a + A.layer.ln2.offset, N, C, 4 * C, acc, c, slabs)
            matmul_backward_input_rows(dln, dfch, w + P.layer.mlp_fc1.offset, r0, r1, N, C,
                                       4 * C, False)
        rmsnorm_backward_threads(dres + r0 * C, dln + r0 * C, a + A.layer.res_mid.offset + r0 * C,
                                 a + A.layer.rstd2.offset + r0, n, C, nthreads)
        if whole:
            matmul_backward(datty, dw + P.layer.attn_wo.offset, dres, a + A.layer.atty.offset,
                            w + P.layer.attn_wo.offset, N, C, C, False, nthreads, acc)
            _update_tensor(params, grads, m, v, opt, wl + P.layer.attn_wo.offset, C * C,
                           nthreads)
        else:
            matmul_backward_input_rows(datty, dres, w + P.layer.attn_wo.offset, r0, r1, N, C, C,
                                       False)
            memset(dq + r0 * C, 0, n * C * sizeof(real))  # for attention's backward, next
            memset(dk + r0 * C, 0, n * C * sizeof(real))
            memset(dv + r0 * C, 0, n * C * sizeof(real))
    elif stage == ATTN_OUT:  # one thread's stage only (see BackwardStage)
        zero_threads(dq, 3 * N * C, nthreads)  # dq, dk, dv lie one after another
    elif stage == ATTN_IN:
        if whole:
            matmul_backward(dln, dw + P.layer.attn_wq.offset, dq, a + A.layer.ln1.offset,
                            w + P.layer.attn_wq.offset, N, C, C, False, nthreads, acc)
            matmul_backward(dln, dw + P.layer.attn_wk.offset, dk, a + A.layer.ln1.offset,
                            w + P.layer.attn_wk.offset, N, C, C, True, nthreads, acc)
            matmul_backward(dln, dw + P.layer.attn_wv.offset, dv, a + A.layer.ln1.offset,
                            w + P.layer.attn_wv.offset, N, C, C, True, nthreads, acc)
            # wq, wk, wv lie one after the other: one update for the three
            _update_tensor(params, grads, m, v, opt, wl + P.layer.attn_wq.offset, 3 * C * C,
                           nthreads)
        else:
            _update_slab(g, params, grads, m, v, opt, wl + P.layer.mlp_fc1.offset, 4 * C, C, c,
                         slabs)
            _weight_slab(g, dw + P.layer.attn_wo.offset, dres,
                                        a + A.layer.atty.offset, N, C, C, acc, c, slabs)
            _update_slab(g, params, grads, m, v, opt, wl + P.layer.attn_wo.offset, C, C, c, slabs)
            _weight_slab(g, dw + P.layer.attn_wq.offset, dq, a + A.layer.ln1.offset,
                                        N, C, C, acc, c, slabs)
            _weight_slab(g, dw + P.layer.attn_wk.offset, dk, a + A.layer.ln1.offset,
                                        N, C, C, acc, c, slabs)
            _weight_slab(g, dw + P.layer.attn_wv.offset, dv, a + A.layer.ln1.offset,
                                        N, C, C, acc, c, slabs)
            matmul_backward_input_rows(dln, dq, w + P.layer.attn_wq.offset, r0, r1, N, C, C,
                                       False)
            matmul_backward_input_rows(dln, dk, w + P.layer.attn_wk.offset, r0, r1, N, C, C,
                                       True)
            matmul_backward_input_rows(dln, dv, w + P.layer.attn_wv.offset, r0, r1, N, C, C,
                                       True)
            memcpy(dres_in + r0 * C, dres + r0 * C, n * C * sizeof(real))
        rmsnorm_backward_threads(dres_in + r0 * C, dln + r0 * C,
                                 a + A.layer.resid.offset + r0 * C, a + A.layer.rstd1.offset + r0,
                                 n, C, nthreads)
        if l == 0:  # dres_in is now the gradient of rmsnorm(embedding): back through that norm
            zero_threads(dln + r0 * C, n * C, nthreads)
            rmsnorm_backward_threads(dln + r0 * C, dres_in + r0 * C, acts + A.emb.offset + r0 * C,
                                     acts + A.rstd0.offset + r0, n, C, nthreads)
    else:  # TABLES: dln holds the embedding's gradient; tokens cannot be split, channels can
        if whole:
            encoder_backward_threads(grads + P.wte.offset, grads + P.wpe.offset, dln, tokens,
                                     pos, N, C, nthreads)
            _update_tensor(params, grads, m, v, opt, P.wte.offset, tables, nthreads)
        else:  # layer 0's q, k, v (see MLP_OUT), then a slab of channels of both tables
            _update_slab(g, params, grads, m, v, opt, P.layer.attn_wq.offset, C, C, c, slabs)
            _update_slab(g, params, grads, m, v, opt, P.layer.attn_wk.offset, C, C, c, slabs)
            _update_slab(g, params, grads, m, v, opt, P.layer.attn_wv.offset, C, C, c, slabs)
            part = (C + slabs - 1) // slabs
            c0, c1 = min(C, c * part), min(C, c * part + part)
            if c1 > c0:
                _encoder_backward_channels(grads + P.wte.offset, grads + P.wpe.offset, dln,
                                           tokens, pos, N, C, c0, c1)
                if opt != NULL:
                    adamw_columns(params + P.wte.offset, grads + P.wte.offset, m + P.wte.offset,
                                  v + P.wte.offset, tables // C, C, c0, c1, opt.t, opt.lr,
                                  opt.beta1, opt.beta2, opt.eps, opt.weight_decay)


cdef void _backward_stage(real* params, real* grads, real* acts, const int64_t* tokens,
                          const int64_t* targets, const int64_t* pos, const GPT* g,
                          BackwardStage stage, int64_t l, int slabs, int nthreads, bint acc,
                          const AdamWStep* opt, real* m, real* v) noexcept nogil:
    """One stage of the backward: a parallel region of `slabs` threads, one slab each, or (slabs
    1) the whole stage with each kernel shared among nthreads."""
    cdef Py_ssize_t c
    cdef double t0
    if slabs > 1:
        for c in prange(slabs, num_threads=slabs, schedule="static"):
            t0 = _now()
            _backward_rows(params, grads, acts, tokens, targets, pos, g, stage, l, c, slabs, 1,
                           acc, opt, m, v)
            if g.busy != NULL:
                g.busy[c] += _now() - t0
    else:
        _backward_rows(params, grads, acts, tokens, targets, pos, g, stage, l, 0, 1, nthreads,
                       acc, opt, m, v)


cdef void gpt_backward(real* params,               # (P,)
                       real* grads,                # (P,) added to, or overwritten
                       real* acts,                 # as gpt_forward left it
                       const int64_t* tokens,      # (N,)
                       const int64_t* targets,     # (N,)
                       const int64_t* pos,         # (N,)
                       const int64_t* cu_seqlens,  # (B+1,)
                       const GPT* g, int nthreads,
                       bint overwrite=False,       # grads = the gradient, not grads +=
                       const AdamWStep* opt=NULL,  # if given: AdamW on each weight, in place
                       real* m=NULL,               # (P,) AdamW's moments, with opt
                       real* v=NULL) noexcept nogil:
    """Backward of the mean loss over the N tokens; adds its gradient into grads (+=), or
    writes it there (overwrite: no need to zero grads first).

    With `opt`, each weight gets its AdamW update as soon as its gradient is complete and no
    thread reads the weight again, while the weight and its gradient are still in cache (a
    separate pass over all the parameters would fetch them again from far memory, and cost a
    parallel region); the numbers are those of one update after the backward. Give opt on one
    thread, or with slabs of rows (`_row_slabs`): there, each thread updates the rows of each
    gradient it computed. (Threads sharing every kernel would need one region per weight.)

    With threads and enough tokens, the slabs of rows of the forward (gpt_forward) carry on:
    each stage (BackwardStage) is one parallel region in which a thread runs its rows of the
    input gradients and element-wise layers, and a slab of rows of each weight gradient that
    can be complete by then; four regions per layer, attention's included, plus the loss's and
    the tables', instead of one per kernel.
    """
    cdef const ActivationTensors* A = &g.acts
    cdef int64_t l, N = g.N, C = g.C, al
    cdef int slabs = nthreads if _row_slabs(N, C, nthreads) else 1
    cdef bint acc = not overwrite
    _backward_stage(params, grads, acts, tokens, targets, pos, g, LOSS_OUT, g.L - 1, slabs,
                    nthreads, acc, opt, m, v)
    l = g.L - 1
    while l >= 0:
        al = l * A.layer_size
        _backward_stage(params, grads, acts, tokens, targets, pos, g, MLP_OUT, l, slabs,
                        nthreads, acc, opt, m, v)
        _backward_stage(params, grads, acts, tokens, targets, pos, g, MLP_IN, l, slabs,
                        nthreads, acc, opt, m, v)
        if slabs == 1:
            _backward_stage(params, grads, acts, tokens, targets, pos, g, ATTN_OUT, l, slabs,
                            nthreads, acc, opt, m, v)
        attention_backward(acts + A.dq.offset, acts + A.dk.offset, acts + A.dv.offset,
                           acts + A.dpre.offset, acts + A.datty.offset,
                           acts + al + A.layer.q.offset, acts + al + A.layer.k.offset,
                           acts + al + A.layer.v.offset, acts + al + A.layer.att.offset,
                           cu_seqlens, g.B, C, g.NH, g.block, g.NH * g.block, g.block, nthreads)
        _backward_stage(params, grads, acts, tokens, targets, pos, g, ATTN_IN, l, slabs,
                        nthreads, acc, opt, m, v)
        l -= 1
    _backward_stage(params, grads, acts, tokens, targets, pos, g, TABLES, 0, slabs, nthreads,
                    acc, opt, m, v)
