"""Learning BPE merges, three ways that give the same merges: naive, heap (Python), compiled.

The training text is split into pieces (the whole text, or a pattern's matches) and the distinct
pieces are counted: a piece that occurs k times weighs k. Each merge then takes the most frequent
adjacent pair of ids and makes it a new id. The definitions all three trainers share:

- count: a pair's count is the number of adjacent positions holding it, times the piece weight,
  overlaps included ("aaa" holds the pair (a, a) twice), exactly as a fresh recount would find;
- tie rule: among pairs of equal count, the smallest pair wins (smaller first id, then second);
- merge: occurrences are replaced left to right ("aaa" becomes [aa, a], and (a, a) is gone);
- training stops early when no adjacent pair is left (every piece is a single token).

`train_merges_naive` recounts every pair for every merge: O(text x merges), the algorithm to
read. `train_merges_heap` keeps the counts up to date instead: pieces are linked lists, an index
maps each pair to where it occurs, and a max-heap of (count, pair) is corrected lazily (an entry
whose count is stale is re-pushed when it surfaces), so a merge costs only its occurrences.
fastops' `train_merges` is the same algorithm compiled; `train_bpe` calls it through
`train_merges_compiled_text`, which also splits (GPT-2's pattern) and counts the pieces in C.
"""
from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from microgpt_lib.tokenizers.base import (
    BOS, check_special_tokens, check_training_text, check_vocab_size, text_bytes,
)
from microgpt_lib.tokenizers.bpe import (
    GPT2_SPLIT, BPETokenizer, gpt2_classes, merge_pair, split_pieces,
)

Pair = tuple[int, int]


def training_pieces(text: str, pattern: str | None = None) -> dict[bytes, int]:
    """The distinct pieces of `text` (as UTF-8 bytes) and how often each occurs."""
    return dict(Counter(text_bytes(p) for p in split_pieces(text, pattern)))


def best_pair(counts: dict[Pair, int]) -> Pair:
    """The most frequent pair; among equal counts the smallest pair (the tie rule)."""
    return max(counts, key=lambda p: (counts[p], -p[0], -p[1]))


def train_merges_naive(pieces: dict[bytes, int], n_merges: int) -> list[Pair]:
    """Learn up to `n_merges` merges by recounting every pair before each merge."""
    seqs = [(list(piece), weight) for piece, weight in pieces.items()]
    merges: list[Pair] = []
    for r in range(n_merges):
        counts: dict[Pair, int] = defaultdict(int)
        for ids, weight in seqs:
            for pair in zip(ids, ids[1:]):
                counts[pair] += weight
        if not counts:
            break
        pair = best_pair(counts)
        merges.append(pair)
        seqs = [(merge_pair(ids, pair, 256 + r), w) for ids, w in seqs]
    return merges


def train_merges_heap(pieces: dict[bytes, int], n_merges: int) -> list[Pair]:
    """Learn up to `n_merges` merges with pair counts kept up to date: linked lists, an index
    from pair to positions, and a lazily corrected max-heap."""
    # All pieces end to end; position i holds token[i], links prev/next stop at piece ends.
    token: list[int] = []
    weight: list[int] = []
    for piece, w in pieces.items():
        token.extend(piece)
        weight.extend([w] * len(piece))
    n = len(token)
    nxt = list(range(1, n + 1))
    prev = list(range(-1, n - 1))
    start = 0
    for piece in pieces:
        end = start + len(piece)
        prev[start], nxt[end - 1] = -1, -1
        start = end

    counts: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, list[int]] = defaultdict(list)  # positions where the pair may start
    for i in range(n):
        j = nxt[i]
        if j != -1:
            pair = (token[i], token[j])
            counts[pair] += weight[i]
            where[pair].append(i)
    heap = [(-c, p) for p, c in counts.items()]  # min-heap of (-count, pair): max count,
    heapq.heapify(heap)                          # then the smallest pair, surfaces first

    merges: list[Pair] = []
    while len(merges) < n_merges and heap:
        neg, pair = heapq.heappop(heap)
        if counts[pair] <= 0:
            continue  # merged already, or every occurrence was consumed
        if -neg != counts[pair]:  # stale: counts only fell since the push; re-push the truth
            heapq.heappush(heap, (-counts[pair], pair))
            continue
        a, b = pair
        new = 256 + len(merges)
        merges.append(pair)
        positions = where.pop(pair)
        if a == b:  # overlapping occurrences must be merged left to right
            positions.sort()
        touched: set[Pair] = set()
        for i in positions:
            j = nxt[i]
            if token[i] != a or j == -1 or token[j] != b:
                continue  # this occurrence was consumed by an earlier merge
            w, p, k = weight[i], prev[i], nxt[j]
            if p != -1:
                counts[(token[p], a)] -= w
                counts[(token[p], new)] += w
                where[(token[p], new)].append(p)
                touched.add((token[p], new))
            if k != -1:
                counts[(b, token[k])] -= w
                counts[(new, token[k])] += w
                where[(new, token[k])].append(i)
                touched.add((new, token[k]))
            counts[pair] -= w
            token[i], token[j] = new, -1
            nxt[i] = k
            if k != -1:
                prev[k] = i
        for t in touched:  # new pairs: their counts only grew during this merge
            if counts[t] > 0:
                heapq.heappush(heap, (-counts[t], t))
    return merges


def train_merges_compiled(pieces: dict[bytes, int], n_merges: int) -> list[Pair]:
    """Learn up to `n_merges` merges with fastops' compiled trainer (same rules, same merges)."""
    from fastops._bpe import train_merges

    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    starts = np.concatenate([[0], np.cumsum(lengths)])
    weights = np.fromiter(pieces.values(), dtype=np.int64, count=len(pieces))
    merges = train_merges(b"".join(pieces), starts, weights, n_merges)
    return [(int(a), int(b)) for a, b in merges]


def train_merges_compiled_text(text: str, pattern: str | None, n_merges: int) -> list[Pair]:
    """Learn up to `n_merges` merges from `text` with fastops, with no Python object per piece:
    the whole text as one piece, or GPT-2's split and the counting of its pieces compiled too
    (another pattern is split by the regex module, then trained compiled)."""
    from fastops._bpe import train_merges, train_merges_gpt2

    data = text_bytes(text)
    if pattern is None:
        whole = np.array([0, len(data)], dtype=np.int64)
        merges = train_merges(data, whole, np.ones(1, dtype=np.int64), n_merges)
    elif pattern == GPT2_SPLIT:
        merges = train_merges_gpt2(data, gpt2_classes(), n_merges)
    else:
        return train_merges_compiled(training_pieces(text, pattern), n_merges)
    return [(a, b) for a, b in merges.tolist()]


TRAINERS = {"naive": train_merges_naive, "heap": train_merges_heap,
            "compiled": train_merges_compiled}


def train_bpe(text: str, vocab_size: int, pattern: str | None = None,
              special_tokens: Sequence[str] = (BOS,), method: str = "compiled") -> BPETokenizer:
    """A BPE tokenizer of `vocab_size` ids (256 bytes + merges + special tokens) learned from
    `text`; fewer merges if the text runs out of pairs first."""
    if method not in TRAINERS:
        raise ValueError(f"method={method!r}: use one of {list(TRAINERS)}")
    text = check_training_text(text)
    specials = check_special_tokens(special_tokens)
    check_vocab_size(vocab_size, 256 + len(specials), "256 bytes and the special tokens")
    n_merges = vocab_size - 256 - len(specials)
    if method == "compiled":
        merges = train_merges_compiled_text(text, pattern, n_merges)
    else:
        merges = TRAINERS[method](training_pieces(text, pattern), n_merges)
    return BPETokenizer(merges, pattern, specials)
