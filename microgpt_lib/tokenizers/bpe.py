"""Byte-level BPE: UTF-8 bytes merged pair by pair, in the order (rank) the merges were learned.

Ids: 0..255 are the byte values, 256 + r is the token made by merge r (the pair (a, b) of two
earlier ids, so its bytes are those of a then b), then the special tokens (BOS first). With a
`pattern` (e.g. GPT-2's, `GPT2_SPLIT`), the text is first split into pieces and no token ever
crosses a piece boundary; without one the text is a single piece.

Encoding applies the merges in rank order: while some adjacent pair of the sequence has a merge,
take the pair of lowest rank and replace all its occurrences, left to right (`encode_naive`
does exactly that). The compiled encoder in fastops gives the same ids, much faster; with
GPT-2's pattern it also does the split itself (the regex module stays the reference the tests
compare it with), and encodes each distinct piece once.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import regex

from microgpt_lib.tokenizers.base import BOS, Tokenizer, text_bytes

# GPT-2's pre-split (also HF tokenizers' ByteLevel pre-tokenizer): contractions, letters with an
# optional leading space, numbers likewise, other symbols likewise, and whitespace runs.
GPT2_SPLIT = (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


@cache
def gpt2_classes() -> np.ndarray:
    """One byte per code point for the compiled GPT-2 split: 1 for a letter (\\p{L}), 2 for a
    number (\\p{N}), 4 for whitespace (\\s), as the regex module itself decides, so that the
    compiled split and regex.findall(GPT2_SPLIT, ...) read every character the same way."""
    every = "".join(map(chr, range(0x110000)))
    classes = np.zeros(len(every), dtype=np.uint8)
    for bit, run in ((1, r"\p{L}+"), (2, r"\p{N}+"), (4, r"\s+")):
        for match in regex.finditer(run, every):
            classes[match.start():match.end()] |= bit
    return classes


def split_pieces(text: str, pattern: str | None) -> list[str]:
    """The pieces BPE works on: the whole text without a pattern, else the pattern's matches
    (GPT-2's pattern matches every character, so the pieces join back to the text)."""
    if pattern is None:
        return [text] if text else []
    return regex.findall(pattern, text)


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """`ids` with every occurrence of `pair` replaced by `new_id`, scanning left to right
    (so "aaa" with pair (a, a) becomes [new, a])."""
    out, i, n = [], 0, len(ids)
    a, b = pair
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def encode_naive(data: bytes, ranks: dict[tuple[int, int], int]) -> list[int]:
    """BPE ids of one piece: repeatedly merge the adjacent pair of lowest rank (O(n^2) per
    piece: the reference the fast encoder is tested against)."""
    ids = list(data)
    while len(ids) >= 2:
        pairs = set(zip(ids, ids[1:]))
        best = min(pairs, key=lambda p: ranks.get(p, len(ranks)))
        if best not in ranks:
            break
        ids = merge_pair(ids, best, 256 + ranks[best])
    return ids


def check_merges(merges: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """The merges as (a, b) tuples, each made of ids that exist before it (ValueError if not)."""
    out = []
    for r, pair in enumerate(merges):
        a, b = pair
        if not all(isinstance(x, int) and 0 <= x < 256 + r for x in (a, b)):
            raise ValueError(f"merge {r} = {pair!r} must join two ids below {256 + r}")
        out.append((a, b))
    if len(set(out)) != len(out):
        raise ValueError("a pair is merged twice")
    return out


class BPETokenizer(Tokenizer):
    """Byte-level BPE with merges by rank, an optional pre-split pattern, and special tokens."""

    kind = "bpe"

    def __init__(self, merges: Sequence[Sequence[int]], pattern: str | None = None,
                 special_tokens: Sequence[str] = (BOS,)) -> None:
        self.merges: list[tuple[int, int]] = check_merges(merges)
        self.pattern = pattern
        if pattern is not None:
            regex.compile(pattern)
        table = [bytes([b]) for b in range(256)]
        for a, b in self.merges:
            table.append(table[a] + table[b])
        super().__init__(table, special_tokens)
        self.ranks: dict[tuple[int, int], int] = {p: r for r, p in enumerate(self.merges)}
        self._compiled = None

    def _encoder(self):
        """fastops' compiled encoder for these merges (None if fastops is not built)."""
        if self._compiled is None:
            try:
                from fastops._bpe import BPEEncoder
            except ImportError:
                return None
            self._compiled = BPEEncoder(np.array(self.merges, dtype=np.int32).reshape(-1, 2))
        return self._compiled

    def encode_ordinary(self, text: str) -> list[int]:
        """BPE ids of `text` (compiled encoder if fastops is built, else the Python one)."""
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        """BPE ids of `text` as an int32 array (the fast path for long texts)."""
        encoder = self._encoder()
        if encoder is None:
            ids = [i for piece in split_pieces(text, self.pattern)
                   for i in encode_naive(text_bytes(piece), self.ranks)]
            return np.array(ids, dtype=np.int32)
        if self.pattern is None:
            return encoder.encode(text_bytes(text))
        if self.pattern == GPT2_SPLIT:  # the split compiled too
            return encoder.encode_gpt2(text_bytes(text), gpt2_classes())
        return encoder.encode_pieces([text_bytes(p) for p in split_pieces(text, self.pattern)])

    def to_fields(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "merges": [list(p) for p in self.merges]}

    @classmethod
    def from_fields(cls, fields: dict[str, Any], special_tokens: list[str]) -> BPETokenizer:
        pattern = fields["pattern"]
        if pattern is not None and not isinstance(pattern, str):
            raise TypeError("pattern must be a string or null")
        return cls(fields["merges"], pattern, special_tokens)
