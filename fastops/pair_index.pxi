# Pairs of ids as 64-bit keys, and a hash table from key to slot (included by _bpe.pyx).

cdef inline uint64_t pair_key(int64_t a, int64_t b) noexcept:
    return (<uint64_t>a << 32) | <uint64_t>b


cdef struct Entry:
    uint64_t key  # EMPTY if unused
    int32_t slot


@cython.final
cdef class PairIndex:
    """Open-addressing hash table (linear probing): pair key -> slot 0, 1, 2, ... in the
    order pairs were first inserted."""

    cdef vector[Entry] table
    cdef size_t mask
    cdef int shift
    cdef int32_t size

    def __cinit__(self, int64_t capacity):
        cdef int bits = 4
        while (<int64_t>1 << bits) < 2 * capacity:
            bits += 1
        self.shift = 64 - bits
        self.mask = (<size_t>1 << bits) - 1
        self.table.assign(<size_t>1 << bits, Entry(EMPTY, -1))
        self.size = 0

    cdef inline size_t home(self, uint64_t key) noexcept:
        return <size_t>((key * <uint64_t>0x9E3779B97F4A7C15) >> self.shift)

    cdef inline int32_t find(self, uint64_t key) noexcept:
        """The slot of `key`, or -1."""
        cdef size_t h = self.home(key)
        while self.table[h].key != EMPTY:
            if self.table[h].key == key:
                return self.table[h].slot
            h = (h + 1) & self.mask
        return -1

    cdef inline int32_t insert(self, uint64_t key) noexcept:
        """The slot of `key`, given the next free slot number if it is new."""
        cdef size_t h = self.home(key)
        while self.table[h].key != EMPTY:
            if self.table[h].key == key:
                return self.table[h].slot
            h = (h + 1) & self.mask
        self.table[h] = Entry(key, self.size)
        self.size += 1
        if 2 * <size_t>self.size > self.table.size():
            self.grow()
        return self.size - 1

    cdef void grow(self) noexcept:
        cdef vector[Entry] old = self.table
        cdef size_t i, h
        self.shift -= 1
        self.mask = 2 * self.mask + 1
        self.table.assign(2 * old.size(), Entry(EMPTY, -1))
        for i in range(old.size()):
            if old[i].key != EMPTY:
                h = self.home(old[i].key)
                while self.table[h].key != EMPTY:
                    h = (h + 1) & self.mask
                self.table[h] = old[i]
