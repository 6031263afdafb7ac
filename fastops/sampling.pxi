# Sampling with a KV cache: one new token through the model, with the keys and values of the
# tokens before it read from a cache instead of computed again (chapter 8).
#
# A full forward over a prefix of T tokens costs T times the work of one token; sampling T tokens
# that way costs T^2 / 2. Keys and values of a position never change once computed (causal
# attention, and a token never moves), so a step can keep them: the cache kv is (L, 2, block, C),
# layer l's key of position t at kv[l, 0, t] and its value at kv[l, 1, t]. A step at position
# pos writes row pos and attends to rows 0..pos; the sampler feeds positions 0, 1, 2, ... in order.

cdef void gpt_decode_step(real* logits,        # (V,) the next token's logits
                          real* kv,            # (L, 2, block, C) cache; row pos is written
                          real* work,          # (decode_workspace_size,) scratch
                          const real* params,  # (P,) ParameterTensors layout
                          int64_t token, int64_t pos, const GPT* g) noexcept nogil:
    """The logits after `token` at position `pos`, given the cache of positions 0..pos-1."""
    cdef const ParameterTensors* P = &g.params
    cdef int64_t l, C = g.C, hd = g.C // g.NH, h, block = g.block, wl
    cdef real scale = <real>(1.0 / sqrt(<double>hd))
    # scratch: the residual stream and its norm, one row each; q and the attention output as
    # (block, C) so that the attention kernel finds row pos where it looks for it
    cdef real* x = work                   # (C,) residual stream
    cdef real* ln = x + C                 # (C,) rmsnorm of it
    cdef real* rstd = ln + C              # (1,)
    cdef real* res_mid = rstd + 1         # (C,)
    cdef real* fch = res_mid + C          # (4C,)
    cdef real* att = fch + 4 * C          # (block,) softmax weights of one head
    cdef real* q = att + block            # (block, C), row pos used
    cdef real* atty = q + block * C       # (block, C), row pos used
    cdef real* l_k
    cdef real* l_v
    cdef const real* l_wq
    cdef const real* l_wk
    cdef const real* l_wv
    cdef const real* l_wo
    cdef const real* l_fc1
    cdef const real* l_fc2
    encoder_forward(res_mid, &token, &pos, params + P.wte.offset, params + P.wpe.offset, 1, C)
    rmsnorm_forward(x, rstd, res_mid, 1, C)
    for l in range(g.L):
        wl = l * P.layer_size
        l_wq = params + wl + P.layer.attn_wq.offset
        l_wk = params + wl + P.layer.attn_wk.offset
        l_wv = params + wl + P.layer.attn_wv.offset
        l_wo = params + wl + P.layer.attn_wo.offset
        l_fc1 = params + wl + P.layer.mlp_fc1.offset
        l_fc2 = params + wl + P.layer.mlp_fc2.offset
        l_k = kv + l * 2 * block * C          # (block, C) this layer's keys
        l_v = l_k + block * C                 # (block, C) and values
        # attention block: this position's q, k, v; k and v go into the cache
        rmsnorm_forward(ln, rstd, x, 1, C)
        matmul_forward(q + pos * C, ln, l_wq, 1, C, C, 1)
        matmul_forward(l_k + pos * C, ln, l_wk, 1, C, C, 1)
        matmul_forward(l_v + pos * C, ln, l_wv, 1, C, C, 1)
        for h in range(g.NH):
            _attention_row(atty, att, q, l_k, l_v, pos, 0, h, C, hd, scale)
        matmul_forward(res_mid, atty + pos * C, l_wo, 1, C, C, 1)
        residual_forward(res_mid, x, C)
        # MLP block
        rmsnorm_forward(ln, rstd, res_mid, 1, C)
        matmul_forward(fch, ln, l_fc1, 1, C, 4 * C, 1)
        relu_forward(fch, fch, 4 * C)
        matmul_forward(x, fch, l_fc2, 1, 4 * C, C, 1)
        residual_forward(x, res_mid, C)
    matmul_forward(logits, x, params + P.lm_head.offset, 1, C, g.V, 1)


def decode_workspace_size(int64_t n_embd, int64_t block_size) -> int:
    """Length of the scratch buffer decode_step needs."""
    return 7 * n_embd + 1 + block_size + 2 * block_size * n_embd


def kv_cache_size(int64_t n_embd, int64_t n_layer, int64_t block_size) -> int:
    """Length of the KV cache of one sample: (n_layer, 2, block_size, n_embd)."""
    return 2 * n_layer * block_size * n_embd


def decode_step(real[::1] params, real[::1] kv, real[::1] work, real[::1] logits, int64_t token,
                int64_t pos, int64_t n_embd, int64_t n_head, int64_t n_layer, int64_t vocab_size,
                int64_t block_size) -> None:
    """logits (V,) <- the logits after `token` at position `pos`; kv (kv_cache_size,) holds the
    keys and values of positions 0..pos-1 and gets those of pos. Feed positions in order."""
    cdef GPT g
    gpt_layout(&g, 1, 1, n_embd, n_head, n_layer, vocab_size, block_size)
    if params.shape[0] != g.params.total:
        raise ValueError(f"params holds {params.shape[0]} numbers, the model {g.params.total}")
    if kv.shape[0] != 2 * n_layer * block_size * n_embd:
        raise ValueError(f"kv must hold {2 * n_layer * block_size * n_embd} numbers, "
                         f"got {kv.shape[0]}")
    if work.shape[0] < 7 * n_embd + 1 + block_size + 2 * block_size * n_embd:
        raise ValueError("work is smaller than decode_workspace_size(n_embd, block_size)")
    if logits.shape[0] != vocab_size:
        raise ValueError(f"logits must hold {vocab_size} numbers, got {logits.shape[0]}")
    if not 0 <= token < vocab_size:
        raise ValueError(f"token {token} is outside the vocabulary 0..{vocab_size - 1}")
    if not 0 <= pos < block_size:
        raise ValueError(f"position {pos} is outside 0..{block_size - 1}")
    cdef const char* starts[4]
    cdef int64_t nbytes[4]
    starts[0], starts[1] = <char*>&params[0], <char*>&kv[0]
    starts[2], starts[3] = <char*>&work[0], <char*>&logits[0]
    nbytes[0], nbytes[1] = params.shape[0] * sizeof(real), kv.shape[0] * sizeof(real)
    nbytes[2], nbytes[3] = work.shape[0] * sizeof(real), logits.shape[0] * sizeof(real)
    _check_separate(("params", "kv", "work", "logits"), starts, nbytes, 4)
    with nogil:
        gpt_decode_step(&logits[0], &kv[0], &work[0], &params[0], token, pos, &g)
