# GPT-2's pre-split compiled (included by _bpe.pyx): the pieces regex.findall(GPT2_SPLIT, text)
# returns, found in the text's UTF-8 bytes.
#
#   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
#
# At each position the first alternative that matches wins, so one scan decides a piece from its
# first one or two characters: a contraction; else an optional space then a run of letters,
# numbers or "others" (neither letter, number nor whitespace); else a whitespace run, which gives
# its last character to the next piece when a non-space follows (that is what `(?!\S)` does).
# A character's class (letter, number, whitespace) is read from a table with one byte per code
# point, filled from the regex module itself, so the classes are exactly the pattern's.

cdef enum:
    LETTER = 1
    NUMBER = 2
    SPACE = 4
    N_CODE_POINTS = 0x110000


cdef struct Char:
    int32_t cls   # LETTER, NUMBER, SPACE or 0 (another character)
    int32_t size  # its number of UTF-8 bytes


cdef inline Char char_at(const unsigned char *s, int64_t i, int64_t n,
                         const unsigned char *classes) noexcept nogil:
    """The class and length of the character that starts at byte i (i < n). Valid UTF-8
    (lone surrogates included) decodes exactly; other bytes count as one-byte others."""
    cdef uint32_t cp = s[i]
    cdef int32_t size = 1
    cdef int64_t k
    if 0x80 <= cp < 0xC0:  # a continuation byte cannot start a character
        return Char(0, 1)
    if cp >= 0xC0:
        size = 2 if cp < 0xE0 else (3 if cp < 0xF0 else 4)
        if i + size > n:
            return Char(0, 1)
        cp &= 0x3F >> (size - 1)
        for k in range(1, size):
            if s[i + k] & 0xC0 != 0x80:
                return Char(0, 1)
            cp = (cp << 6) | (s[i + k] & 0x3F)
        if cp >= N_CODE_POINTS:
            return Char(0, size)
    return Char(classes[cp], size)


cdef inline int64_t run_end(const unsigned char *s, int64_t i, int64_t n,
                            const unsigned char *classes, int32_t cls) noexcept nogil:
    """The end of the run of characters of class `cls` that starts at byte i."""
    cdef Char c
    while i < n:
        c = char_at(s, i, n, classes)
        if c.cls != cls:
            break
        i += c.size
    return i


cdef inline int64_t contraction_end(const unsigned char *s, int64_t i, int64_t n) noexcept nogil:
    """The end of 's 't 're 've 'm 'll 'd at byte i, or -1."""
    if s[i] != 39 or i + 1 >= n:  # 39 is "'"
        return -1
    cdef unsigned char x = s[i + 1]
    if x == 115 or x == 116 or x == 109 or x == 100:  # s t m d
        return i + 2
    if i + 2 < n and ((x == 114 and s[i + 2] == 101) or (x == 118 and s[i + 2] == 101)
                      or (x == 108 and s[i + 2] == 108)):  # re ve ll
        return i + 3
    return -1


cdef int64_t piece_end(const unsigned char *s, int64_t i, int64_t n,
                       const unsigned char *classes) noexcept nogil:
    """The end of the GPT-2 piece that starts at byte i (i < n)."""
    cdef int64_t j = contraction_end(s, i, n), last
    if j != -1:
        return j
    cdef Char c = char_at(s, i, n, classes), d
    j = i
    if s[i] == 32 and i + 1 < n:  # " ?": a space joins the run that follows it
        d = char_at(s, i + 1, n, classes)
        if d.cls != SPACE:
            c = d
            j = i + 1
    if c.cls != SPACE:  # a run of letters, of numbers, or of others
        return run_end(s, j + c.size, n, classes, c.cls)
    last = i  # a whitespace run: start of its last character
    j = i + c.size
    while j < n:
        d = char_at(s, j, n, classes)
        if d.cls != SPACE:
            break
        last = j
        j += d.size
    if j == n or last == i:  # at the end of the text, or a single whitespace character
        return j
    return last  # \s+(?!\S): the last whitespace character goes with what follows


cdef vector[int64_t] gpt2_starts(const unsigned char[::1] data,
                                 const unsigned char[::1] classes) except *:
    """Byte offsets of the GPT-2 pieces of `data`, then len(data)."""
    if classes.shape[0] != N_CODE_POINTS:
        raise ValueError(f"classes must hold one byte per code point ({N_CODE_POINTS})")
    cdef int64_t n = data.shape[0], i = 0
    cdef vector[int64_t] starts
    starts.reserve(n // 4 + 2)
    starts.push_back(0)
    if n == 0:
        return starts
    cdef const unsigned char *s = &data[0]
    with nogil:
        while i < n:
            i = piece_end(s, i, n, &classes[0])
            starts.push_back(i)
    return starts


def split_gpt2(const unsigned char[::1] data, const unsigned char[::1] classes):
    """Byte offsets (int64 array, 0 first, len(data) last) of the pieces that GPT-2's pattern
    cuts the UTF-8 text `data` into; `classes` holds LETTER | NUMBER | SPACE per code point."""
    cdef vector[int64_t] starts = gpt2_starts(data, classes)
    out = np.empty(starts.size(), dtype=np.int64)
    cdef int64_t[::1] view = out
    cdef size_t k
    for k in range(starts.size()):
        view[k] = starts[k]
    return out
