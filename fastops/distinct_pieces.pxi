# The distinct pieces of a split text and how often each occurs (included by _bpe.pyx): a text
# of a million pieces holds a few tens of thousands of distinct ones, so the trainer and the
# encoder work on those only.

cdef struct PieceEntry:
    uint64_t hash
    int64_t start   # where the piece first occurs in the text
    int64_t size    # its number of bytes
    int64_t id      # its number among the distinct pieces, -1 if the entry is unused


cdef inline uint64_t piece_hash(const unsigned char *s, int64_t size) noexcept nogil:
    """FNV-1a of the bytes, multiplied once more so that short pieces spread over the table."""
    cdef uint64_t h = 0xCBF29CE484222325
    cdef int64_t k
    for k in range(size):
        h = (h ^ s[k]) * <uint64_t>0x100000001B3
    return h * <uint64_t>0x9E3779B97F4A7C15


cdef struct DistinctPieces:
    vector[int64_t] start   # per distinct piece, in order of first occurrence: its first start
    vector[int64_t] size    #   its number of bytes
    vector[int64_t] count   #   how often it occurs
    vector[int32_t] which   # per piece of the text: the number of its distinct piece


cdef DistinctPieces distinct_pieces(const unsigned char *s, const vector[int64_t] &starts
                                    ) noexcept nogil:
    """The distinct pieces s[starts[k]:starts[k + 1]] (open addressing, linear probing)."""
    cdef DistinctPieces out
    cdef vector[PieceEntry] table, old
    cdef size_t mask = 4095, h, e, n_pieces = starts.size() - 1, k
    cdef int64_t a, size, id
    cdef uint64_t hash
    table.assign(mask + 1, PieceEntry(0, 0, 0, -1))
    out.which.resize(n_pieces)
    for k in range(n_pieces):
        a = starts[k]
        size = starts[k + 1] - a
        hash = piece_hash(s + a, size)
        h = hash & mask
        while table[h].id != -1 and not (
                table[h].hash == hash and table[h].size == size
                and memcmp(s + table[h].start, s + a, size) == 0):
            h = (h + 1) & mask
        id = table[h].id
        if id == -1:  # a new piece
            id = <int64_t>out.start.size()
            table[h] = PieceEntry(hash, a, size, id)
            out.start.push_back(a)
            out.size.push_back(size)
            out.count.push_back(0)
            if 2 * out.start.size() > mask:  # half full: double the table
                old.swap(table)
                mask = 2 * mask + 1
                table.assign(mask + 1, PieceEntry(0, 0, 0, -1))
                for e in range(old.size()):
                    if old[e].id != -1:
                        h = old[e].hash & mask
                        while table[h].id != -1:
                            h = (h + 1) & mask
                        table[h] = old[e]
        out.which[k] = <int32_t>id
        out.count[id] += 1
    return out


cdef packed_pieces(const unsigned char *s, const DistinctPieces &d):
    """The distinct pieces end to end: (bytes as a uint8 array, int64 starts, int64 counts)."""
    cdef size_t n = d.start.size(), k
    starts = np.zeros(n + 1, dtype=np.int64)
    counts = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] st = starts, ct = counts
    for k in range(n):
        st[k + 1] = st[k] + d.size[k]
        ct[k] = d.count[k]
    data = np.empty(st[n], dtype=np.uint8)
    cdef unsigned char[::1] out = data
    for k in range(n):
        if d.size[k]:
            memcpy(&out[st[k]], s + d.start[k], d.size[k])
    return data, starts, counts
