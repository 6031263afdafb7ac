# distutils: language = c++
"""Byte-level BPE compiled: the exact heap trainer, a bucket encoder and GPT-2's pre-split.

The trainer and the encoder follow microgpt_lib.tokenizers exactly (same counts, tie rule and
left-to-right merges): `train_merges` is the heap trainer of bpe_training.py with C arrays, an
open-addressing hash table from pair to slot, and a C++ max-heap; `BPEEncoder` applies merges
by rank. Ids are int32, a pair (a, b) is the 64-bit key a << 32 | b. `split_gpt2` cuts UTF-8
text into the pieces of GPT-2's pattern; `train_merges_gpt2` and `BPEEncoder.encode_gpt2`
split, then work on the distinct pieces only.
"""
import numpy as np

cimport cython
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy
from libcpp.algorithm cimport sort
from libcpp.pair cimport pair
from libcpp.queue cimport priority_queue
from libcpp.vector cimport vector

cdef extern from *:
    void prefetch "__builtin_prefetch"(const void *addr) noexcept nogil

cdef uint64_t EMPTY = 0xFFFFFFFFFFFFFFFF
cdef size_t AHEAD = 16  # occurrences prefetched ahead of the one being merged


include "pair_index.pxi"
include "gpt2_split.pxi"
include "distinct_pieces.pxi"


@cython.final
cdef class PairCounts:
    """Per pair: its weighted count and the positions where it may start (the index)."""

    cdef PairIndex index
    cdef vector[uint64_t] key
    cdef vector[int64_t] count
    cdef vector[vector[int32_t]] where

    def __cinit__(self, int64_t capacity):
        self.index = PairIndex(capacity)

    cdef int32_t slot(self, uint64_t k) noexcept:
        """The slot of pair key k, a new one (count 0, no positions) if k is new."""
        cdef int32_t s = self.index.insert(k)
        if <size_t>s == self.key.size():
            self.key.push_back(k)
            self.count.push_back(0)
            self.where.push_back(vector[int32_t]())
        return s


cdef struct Node:
    int32_t token   # the id at this position, -1 once merged into the position on its left
    int32_t prev    # previous live position of the piece, or -1
    int32_t next    # next live position of the piece, or -1
    int32_t weight  # how often the piece occurs
    int32_t pair    # slot of the pair (token, token of next), or -1


def train_merges(const unsigned char[::1] data, const int64_t[::1] starts,
                 const int64_t[::1] weights, int64_t n_merges):
    """Up to n_merges merges (an (m, 2) int32 array) learned from pieces data[starts[k]:
    starts[k+1]] of weight weights[k]: most frequent pair first, smallest pair on ties."""
    cdef int64_t n = data.shape[0]
    cdef int64_t n_pieces = weights.shape[0]
    if starts.shape[0] != n_pieces + 1 or starts[0] != 0 or starts[n_pieces] != n:
        raise ValueError("starts must run from 0 to len(data), one more entry than weights")
    if n_merges < 0 or n_merges > (1 << 30):
        raise ValueError(f"n_merges={n_merges} is out of range")
    if n >= (<int64_t>1 << 31) - 1:
        raise ValueError("the compiled trainer takes under 2 GiB of pieces")
    cdef vector[Node] node = vector[Node](n)
    cdef int64_t piece, w, c, new
    cdef int32_t i, j, k, p, q
    for piece in range(n_pieces):
        if starts[piece + 1] < starts[piece] or not 1 <= weights[piece] < (1 << 31):
            raise ValueError("starts must not decrease and weights must be in [1, 2**31)")
        for i in range(starts[piece], starts[piece + 1]):
            node[i].token = data[i]
            node[i].weight = <int32_t>weights[piece]
            node[i].prev = i - 1 if i > starts[piece] else -1
            node[i].next = i + 1 if i + 1 < starts[piece + 1] else -1

    # The byte pairs, counted in a dense table first: slots in pair order, lists sized exactly.
    cdef vector[int64_t] byte_count = vector[int64_t](65536, 0)
    cdef vector[int32_t] byte_occurrences = vector[int32_t](65536, 0)
    cdef vector[int32_t] byte_slot = vector[int32_t](65536, -1)
    for i in range(n):
        if node[i].next != -1:
            q = data[i] * 256 + data[i + 1]
            byte_count[q] += node[i].weight
            byte_occurrences[q] += 1
    cdef PairCounts pc = PairCounts(65536)
    for q in range(65536):
        if byte_occurrences[q]:
            byte_slot[q] = pc.slot(pair_key(q >> 8, q & 255))
            pc.count[byte_slot[q]] = byte_count[q]
            pc.where[byte_slot[q]].reserve(byte_occurrences[q])
    for i in range(n):
        node[i].pair = -1
        if node[i].next != -1:
            node[i].pair = byte_slot[data[i] * 256 + data[i + 1]]
            pc.where[node[i].pair].push_back(i)
    # max-heap of (count, -key): the highest count, then the smallest pair, is on top
    cdef priority_queue[pair[int64_t, int64_t]] heap
    cdef size_t s
    for s in range(pc.key.size()):
        heap.push(pair[int64_t, int64_t](pc.count[s], -<int64_t>pc.key[s]))

    merges = np.zeros((n_merges, 2), dtype=np.int32)
    cdef int32_t[:, ::1] out = merges
    cdef int64_t m = 0
    cdef int32_t slot, a, b, x
    cdef uint64_t key
    cdef pair[int64_t, int64_t] top
    cdef vector[int32_t] positions, touched
    # within one merge, the slots of (x, new) and (new, x) by x: most neighbours repeat
    cdef vector[int32_t] left_slot = vector[int32_t](256 + n_merges, -1)
    cdef vector[int32_t] right_slot = vector[int32_t](256 + n_merges, -1)
    while m < n_merges and not heap.empty():
        top = heap.top()
        heap.pop()
        key = <uint64_t>(-top.second)
        slot = pc.index.find(key)
        c = pc.count[slot]
        if c <= 0:
            continue  # merged already, or every occurrence was consumed
        if c != top.first:  # stale: the count fell since the push; re-push the truth
            heap.push(pair[int64_t, int64_t](c, top.second))
            continue
        a = <int32_t>(key >> 32)
        b = <int32_t>(key & 0xFFFFFFFF)
        new = 256 + m
        out[m, 0] = a
        out[m, 1] = b
        positions.clear()
        positions.swap(pc.where[slot])
        if a == b:  # overlapping occurrences are merged left to right
            sort(positions.begin(), positions.end())
        touched.clear()
        for s in range(positions.size()):
            if s + AHEAD < positions.size():  # the positions are scattered: ask for them early
                i = positions[s + AHEAD]
                prefetch(&node[i])
                prefetch(&node[i - 1] if i > 0 else &node[i])
            if s + AHEAD // 2 < positions.size():  # and for the counts of their neighbours
                i = positions[s + AHEAD // 2]
                if node[i].prev != -1:
                    prefetch(&pc.count[node[node[i].prev].pair])
                j = node[i].next
                if j != -1 and node[j].pair != -1:
                    prefetch(&pc.count[node[j].pair])
            i = positions[s]
            j = node[i].next
            if node[i].token != a or j == -1 or node[j].token != b:
                continue  # consumed by an earlier occurrence
            w = node[i].weight
            p = node[i].prev
            k = node[j].next
            if p != -1:  # (x, a) becomes (x, new)
                x = node[p].token
                pc.count[node[p].pair] -= w
                if left_slot[x] == -1:
                    left_slot[x] = pc.slot(pair_key(x, <int32_t>new))
                    touched.push_back(x)
                node[p].pair = left_slot[x]
                pc.count[left_slot[x]] += w
                pc.where[left_slot[x]].push_back(p)
            node[i].pair = -1
            if k != -1:  # (b, x) becomes (new, x)
                x = node[k].token
                pc.count[node[j].pair] -= w
                if right_slot[x] == -1:
                    right_slot[x] = pc.slot(pair_key(<int32_t>new, x))
                    touched.push_back(-1 - x)
                node[i].pair = right_slot[x]
                pc.count[right_slot[x]] += w
                pc.where[right_slot[x]].push_back(i)
            pc.count[slot] -= w
            node[i].token = <int32_t>new
            node[j].token = -1
            node[i].next = k
            if k != -1:
                node[k].prev = i
        for s in range(touched.size()):  # pairs with the new id: counts only grew in this merge
            x = touched[s]
            if x >= 0:
                q, left_slot[x] = left_slot[x], -1
            else:
                q, right_slot[-1 - x] = right_slot[-1 - x], -1
            if pc.count[q] > 0:
                heap.push(pair[int64_t, int64_t](pc.count[q], -<int64_t>pc.key[q]))
        m += 1
    return merges[:m]


def train_merges_gpt2(const unsigned char[::1] data, const unsigned char[::1] classes,
                      int64_t n_merges):
    """`train_merges` on the distinct GPT-2 pieces of the UTF-8 text `data` (see split_gpt2),
    each weighted by how often it occurs."""
    cdef vector[int64_t] starts = gpt2_starts(data, classes)
    if data.shape[0] == 0:
        return train_merges(data, np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64),
                            n_merges)
    cdef DistinctPieces d = distinct_pieces(&data[0], starts)
    pieces, piece_starts, counts = packed_pieces(&data[0], d)
    return train_merges(pieces, piece_starts, counts, n_merges)


cdef int64_t BLOCK = 1 << 16  # bytes encoded at a time, so that the working arrays stay in cache


cdef struct Link:
    int32_t token  # the id at this position, -1 once merged into the position on its left
    int32_t prev   # previous live position of the piece, or -1
    int32_t next   # next live position of the piece, or -1


@cython.final
cdef class BPEEncoder:
    """Merges by rank, compiled: every adjacent pair that has a merge waits in the bucket of its
    rank; buckets are emptied from rank 0 up, so a merge always happens before any of higher
    rank, as in the naive encoder. A merge creates pairs only of higher rank (a merge can use the
    token of merge r only if it comes after r), so one pass over the ranks suffices.

    The text is encoded in blocks of about 64 KiB: a block ends between two bytes x, y that no
    token contains side by side (no merge can ever join across them), or at a piece boundary,
    so blocks are independent and the result is the same as for the whole text at once."""

    cdef PairIndex index            # pair -> rank
    cdef vector[int32_t] byte_rank  # rank of the pair of two bytes (a * 256 + b), or -1
    cdef vector[char] joinable      # 1 if some token holds bytes a, b side by side
    cdef vector[char] left, right   # 1 if id t is the left (right) half of some merge
    cdef vector[int32_t] merge_a, merge_b
    cdef int64_t n_ranks

    def __init__(self, const int32_t[:, ::1] merges):
        cdef int64_t r, a, b, i
        self.n_ranks = merges.shape[0]
        self.index = PairIndex(max(self.n_ranks, 16))
        self.byte_rank.assign(65536, -1)
        self.joinable.assign(65536, 0)
        self.left.assign(256 + self.n_ranks, 0)
        self.right.assign(256 + self.n_ranks, 0)
        table = [bytes([i]) for i in range(256)]
        for r in range(self.n_ranks):
            a, b = merges[r, 0], merges[r, 1]
            if not (0 <= a < 256 + r and 0 <= b < 256 + r):
                raise ValueError(f"merge {r} = ({a}, {b}) must join two ids below {256 + r}")
            if self.index.insert(pair_key(a, b)) != r:
                raise ValueError(f"merge {r} = ({a}, {b}) repeats an earlier merge")
            self.merge_a.push_back(<int32_t>a)
            self.left[a] = 1
            self.right[b] = 1
            self.merge_b.push_back(<int32_t>b)
            if a < 256 and b < 256:
                self.byte_rank[a * 256 + b] = <int32_t>r
            table.append(table[a] + table[b])
            self.joinable[table[a][len(table[a]) - 1] * 256 + table[b][0]] = 1  # the only new adjacency

    cdef inline int32_t rank(self, int32_t a, int32_t b) noexcept:
        if a < 256 and b < 256:
            return self.byte_rank[a * 256 + b]
        if not (self.left[a] and self.right[b]):  # most pairs have no merge: skip the hash
            return -1
        return self.index.find(pair_key(a, b))

    def encode(self, const unsigned char[::1] data):
        """BPE ids (int32 array) of `data` as one piece."""
        cdef int64_t[::1] starts = np.array([0, data.shape[0]], dtype=np.int64)
        return self._encode(data, starts)[0]

    def encode_gpt2(self, const unsigned char[::1] data, const unsigned char[::1] classes):
        """BPE ids (int32 array) of the UTF-8 text `data` cut into GPT-2's pieces (see
        split_gpt2): each distinct piece is encoded once, then copied where it occurs."""
        cdef vector[int64_t] starts = gpt2_starts(data, classes)
        if data.shape[0] == 0:
            return np.zeros(0, dtype=np.int32)
        cdef DistinctPieces d = distinct_pieces(&data[0], starts)
        pieces, piece_starts, _ = packed_pieces(&data[0], d)
        cdef int32_t[::1] ids
        cdef int64_t[::1] first
        distinct_ids, offsets = self._encode(pieces, piece_starts)
        ids, first = distinct_ids, offsets
        cdef size_t k, n_pieces = d.which.size()
        cdef int64_t total = 0, w, size
        for k in range(n_pieces):
            w = d.which[k]
            total += first[w + 1] - first[w]
        out = np.empty(total, dtype=np.int32)
        cdef int32_t[::1] view = out
        total = 0
        for k in range(n_pieces):
            w = d.which[k]
            size = first[w + 1] - first[w]
            memcpy(&view[total], &ids[first[w]], size * sizeof(int32_t))
            total += size
        return out

    def encode_pieces(self, list pieces):
        """BPE ids (int32 array) of the byte strings `pieces`, each encoded on its own."""
        lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
        starts = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        return self._encode(b"".join(pieces), starts)[0]

    cdef tuple _encode(self, const unsigned char[::1] data, const int64_t[::1] starts):
        """(ids of the pieces data[starts[k]:starts[k + 1]] end to end, int64 offsets where
        each piece's ids start, then the number of ids)."""
        cdef int64_t n = data.shape[0], n_pieces = starts.shape[0] - 1
        if n >= (<int64_t>1 << 31) - 1:
            raise ValueError("the compiled encoder takes under 2 GiB at a time")
        cdef vector[Link] at = vector[Link](n)  # one record per byte: id and links together
        cdef vector[vector[int32_t]] bucket = vector[vector[int32_t]](self.n_ranks)
        cdef int32_t i, j, k, p, a, b, new, q, lo, hi
        cdef int64_t piece, r
        cdef size_t e
        for i in range(n):
            at[i] = Link(data[i], i - 1, i + 1)
        for piece in range(n_pieces):
            if starts[piece] < starts[piece + 1]:
                at[starts[piece]].prev = -1
                at[starts[piece + 1] - 1].next = -1
        lo = 0
        while lo < n:
            hi = <int32_t>min(lo + BLOCK, n)
            while hi < n and at[hi].prev != -1 and self.joinable[data[hi - 1] * 256 + data[hi]]:
                hi += 1
            if hi < n:
                at[hi - 1].next = -1
                at[hi].prev = -1
            for i in range(lo, hi):
                if at[i].next != -1:
                    q = self.byte_rank[at[i].token * 256 + at[i + 1].token]
                    if q >= 0:
                        bucket[q].push_back(i)
            for r in range(self.n_ranks):
                if bucket[r].empty():
                    continue
                a, b = self.merge_a[r], self.merge_b[r]
                new = <int32_t>(256 + r)
                if a == b:  # overlapping occurrences are merged left to right
                    sort(bucket[r].begin(), bucket[r].end())
                for e in range(bucket[r].size()):  # merging r only adds to buckets above r
                    if e + AHEAD < bucket[r].size():
                        prefetch(&at[bucket[r][e + AHEAD]])
                    i = bucket[r][e]
                    j = at[i].next
                    if at[i].token != a or j == -1 or at[j].token != b:
                        continue  # consumed by an earlier merge
                    k = at[j].next
                    at[i].token = new
                    at[j].token = -1
                    at[i].next = k
                    if k != -1:
                        at[k].prev = i
                        q = self.rank(new, at[k].token)
                        if q > r:
                            bucket[q].push_back(i)
                    p = at[i].prev
                    if p != -1:
                        q = self.rank(at[p].token, new)
                        if q > r:
                            bucket[q].push_back(p)
                bucket[r].clear()
            lo = hi
        out = np.empty(n, dtype=np.int32)
        offsets = np.empty(n_pieces + 1, dtype=np.int64)
        cdef int32_t[::1] ids = out
        cdef int64_t[::1] first = offsets
        cdef int64_t count = 0
        for piece in range(n_pieces):
            first[piece] = count
            for i in range(starts[piece], starts[piece + 1]):
                if at[i].token != -1:
                    ids[count] = at[i].token
                    count += 1
        first[n_pieces] = count
        return out[:count], offsets
