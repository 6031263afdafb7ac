"""FLOPs and bytes of every fastops kernel, forward and backward, and of a whole step (chapter 6).

Notation: N tokens in the batch (all sequences packed), C = n_embd, H heads of D = C / H, V the
vocabulary, L layers, s bytes per number (8 for float64, 4 for float32). A multiply and an add
each count one FLOP; so do a comparison (max, relu), a division, exp, log and sqrt.

Bytes are the compulsory traffic: each input read once, each output written once, a gradient
that is accumulated (+=) read and written. A kernel whose data stay in cache between its loops
moves this much; one that re-reads from memory moves more. So flops / bytes, the arithmetic
intensity, is an upper bound on what a kernel can do per byte. The working set (footprint)
counts each array once: it decides which level of the memory hierarchy can hold the data.

Attention: token t of a sequence attends to t + 1 keys, so a sequence of T tokens has
T(T + 1) / 2 (query, key) pairs per head; fastops' BLAS path computes the full T x T square and
zeroes the upper half (`square=True` counts that).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from microgpt_lib.config import GPTConfig

INDEX_BYTES = 8  # token ids, positions and targets are int64


@dataclass(frozen=True)
class KernelCost:
    """What one call of a kernel computes and moves; `calls` per training step."""

    kernel: str  # fastops' name, e.g. "matmul_forward"
    role: str  # where in the model, e.g. "mlp fc1 (C -> 4C)"
    flops: float
    bytes: float
    calls: int = 1
    footprint: float = 0.0  # distinct bytes touched (an accumulated array counts once); 0: bytes

    @property
    def working_set(self) -> float:
        """Bytes the kernel's data occupy: what must fit in a cache for it to run from there."""
        return self.footprint or self.bytes

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved."""
        return self.flops / self.bytes if self.bytes else float("inf")

    @property
    def label(self) -> str:
        return f"{self.kernel} [{self.role}]"


def matmul_forward(N: int, Cin: int, Cout: int, s: int, role: str = "") -> KernelCost:
    """out (N, Cout) = x (N, Cin) @ w (Cout, Cin)^T: a multiply and an add per (n, i, o)."""
    return KernelCost("matmul_forward", role, 2 * N * Cin * Cout,
                      s * (N * Cin + Cout * Cin + N * Cout))


def matmul_backward(N: int, Cin: int, Cout: int, s: int, role: str = "") -> KernelCost:
    """dw += dout^T @ x and dx = dout @ w: two products the size of the forward one."""
    return KernelCost("matmul_backward", role, 4 * N * Cin * Cout,
                      s * (N * Cout + 2 * N * Cin + 3 * Cout * Cin),
                      footprint=s * (N * Cout + 2 * N * Cin + 2 * Cout * Cin))


def rmsnorm_forward(N: int, C: int, s: int, role: str = "") -> KernelCost:
    """Per row: sum of squares (2C), rstd (mean, + eps, sqrt, reciprocal: 4), scale (C)."""
    return KernelCost("rmsnorm_forward", role, 3 * N * C + 4 * N, s * (2 * N * C + N))


def rmsnorm_backward(N: int, C: int, s: int, role: str = "") -> KernelCost:
    """Per row: dot(dout, x) (2C), coef = rstd^3 * dot / C (4), dx += rstd*dout - coef*x (4C)."""
    return KernelCost("rmsnorm_backward", role, 6 * N * C + 4 * N, s * (4 * N * C + N),
                      footprint=s * (3 * N * C + N))


def relu_forward(n: int, s: int, role: str = "") -> KernelCost:
    """One comparison per element; read x, write out."""
    return KernelCost("relu_forward", role, n, s * 2 * n)


def relu_backward(n: int, s: int, role: str = "") -> KernelCost:
    """One comparison per element; read dout and out, write dx."""
    return KernelCost("relu_backward", role, n, s * 3 * n)


def encoder_forward(N: int, C: int, s: int) -> KernelCost:
    """x[n] = wte[token] + wpe[pos]: one add per element; two rows read, one written."""
    return KernelCost("encoder_forward", "embeddings", N * C, s * 3 * N * C + 2 * INDEX_BYTES * N)


def encoder_backward(N: int, C: int, s: int) -> KernelCost:
    """dwte[token] += dx[n], dwpe[pos] += dx[n]: two adds per element, two rows read+written."""
    return KernelCost("encoder_backward", "embeddings", 2 * N * C,
                      s * 5 * N * C + 2 * INDEX_BYTES * N,
                      footprint=s * 3 * N * C + 2 * INDEX_BYTES * N)


def residual_add(N: int, C: int, s: int) -> KernelCost:
    """y += x on the residual stream (forward; the backward folds it into rmsnorm_backward)."""
    return KernelCost("residual_add", "residual", N * C, s * 3 * N * C, footprint=s * 2 * N * C)


def attention_pairs(seq_lens: Sequence[int], square: bool = False) -> int:
    """(query, key) pairs per head: T(T + 1)/2 per causal sequence, T^2 computing the square."""
    return sum(T * T if square else T * (T + 1) // 2 for T in seq_lens)


def attention_forward(seq_lens: Sequence[int], C: int, H: int, s: int,
                      square: bool = False) -> KernelCost:
    """Per (pair, head): score q.k (2D) and its scale (1), softmax (max, subtract, exp, sum,
    divide: 5), weighted sum of v (2D): 4D + 6. Reads q, k, v; writes out and att."""
    N, P = sum(seq_lens), attention_pairs(seq_lens, square)
    return KernelCost("attention_forward", "causal self-attention", P * (4 * C + 6 * H),
                      s * (4 * N * C + H * P))


def attention_backward(seq_lens: Sequence[int], C: int, H: int, s: int,
                       square: bool = False) -> KernelCost:
    """Per (pair, head): datt = dout.v (2D), dv += att*dout (2D), the softmax backward's dot (2)
    and rescale (3), dq += g k (2D), dk += g q (2D): 8D + 5. Reads dout, q, k, v, att; reads and
    writes dq, dk, dv."""
    N, P = sum(seq_lens), attention_pairs(seq_lens, square)
    return KernelCost("attention_backward", "causal self-attention", P * (8 * C + 5 * H),
                      s * (10 * N * C + H * P), footprint=s * (7 * N * C + H * P))


def softmax_crossentropy_forward(N: int, V: int, s: int) -> KernelCost:
    """Per row: max (V), subtract and exp (2V), sum (V), divide (V); then -log p[target] and the
    running sum (2). Reads logits and targets; writes probs and losses."""
    return KernelCost("softmax_crossentropy_forward", "loss", 5 * N * V + 2 * N,
                      s * (2 * N * V + N) + INDEX_BYTES * N)


def softmax_crossentropy_backward(N: int, V: int, s: int) -> KernelCost:
    """dlogits = dloss * probs (NV), then -dloss at each target (N)."""
    return KernelCost("softmax_crossentropy_backward", "loss", N * V + N,
                      s * 2 * N * V + INDEX_BYTES * N)


# AdamW per parameter: g*scale (1), m = b1 m + (1-b1) g (3), v = b2 v + (1-b2) g g (4),
# p*decay (1), sqrt(v) * 1/sqrt(c2) + eps (3), step * m (1), divide (1), subtract (1).
ADAMW_FLOPS_PER_PARAM = 15


def adamw(P: int, s: int) -> KernelCost:
    """15 FLOPs per parameter; reads p, g, m, v and writes p, m, v."""
    return KernelCost("adamw_update", "optimiser", ADAMW_FLOPS_PER_PARAM * P, s * 7 * P,
                      footprint=s * 4 * P)


def grad_norm(P: int, s: int) -> KernelCost:
    """Sum of squares of the gradient (2 per parameter) for clipping; reads g."""
    return KernelCost("grad_norm", "optimiser", 2 * P, s * P)


def step_costs(config: GPTConfig, seq_lens: Sequence[int], itemsize: int = 8,
               clip: bool = False, square_attention: bool = False) -> list[KernelCost]:
    """Every kernel of one training step on sequences of these lengths, in execution order,
    each with its number of calls (identical shapes share one entry)."""
    if not seq_lens or min(seq_lens) < 1 or max(seq_lens) > config.block_size:
        raise ValueError(f"sequence lengths must be 1..block_size={config.block_size}")
    if itemsize not in (4, 8):
        raise ValueError(f"itemsize must be 4 (float32) or 8 (float64), got {itemsize}")
    N, C, H, L, V, s = (sum(seq_lens), config.n_embd, config.n_head, config.n_layer,
                        config.vocab_size, itemsize)
    forward = [
        encoder_forward(N, C, s),
        replace(rmsnorm_forward(N, C, s, "norms"), calls=2 * L + 1),
        replace(matmul_forward(N, C, C, s, "attention q k v o (C -> C)"), calls=4 * L),
        replace(attention_forward(seq_lens, C, H, s, square_attention), calls=L),
        replace(residual_add(N, C, s), calls=2 * L),
        replace(matmul_forward(N, C, 4 * C, s, "mlp fc1 (C -> 4C)"), calls=L),
        replace(relu_forward(4 * N * C, s, "mlp"), calls=L),
        replace(matmul_forward(N, 4 * C, C, s, "mlp fc2 (4C -> C)"), calls=L),
        matmul_forward(N, C, V, s, "lm_head (C -> V)"),
        softmax_crossentropy_forward(N, V, s),
    ]
    backward = [
        softmax_crossentropy_backward(N, V, s),
        matmul_backward(N, C, V, s, "lm_head (C -> V)"),
        replace(matmul_backward(N, 4 * C, C, s, "mlp fc2 (4C -> C)"), calls=L),
        replace(relu_backward(4 * N * C, s, "mlp"), calls=L),
        replace(matmul_backward(N, C, 4 * C, s, "mlp fc1 (C -> 4C)"), calls=L),
        replace(rmsnorm_backward(N, C, s, "norms"), calls=2 * L + 1),
        replace(matmul_backward(N, C, C, s, "attention q k v o (C -> C)"), calls=4 * L),
        replace(attention_backward(seq_lens, C, H, s, square_attention), calls=L),
        encoder_backward(N, C, s),
    ]
    optimiser = ([grad_norm(config.num_params, s)] if clip else []) + [adamw(config.num_params, s)]
    return forward + backward + optimiser


def step_totals(costs: Sequence[KernelCost]) -> dict[str, float]:
    """FLOPs and bytes of a whole step (every entry times its calls), and their ratio."""
    flops = sum(c.flops * c.calls for c in costs)
    moved = sum(c.bytes * c.calls for c in costs)
    return {"flops": flops, "bytes": moved, "intensity": flops / moved}
