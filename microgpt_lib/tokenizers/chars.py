"""Character tokenizer with one BOS token: the vocabulary of the specification (26 letters + BOS for names)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence


class TokenError(ValueError):
    """A character or token id outside the vocabulary."""


class CharTokenizer:
    """Maps each distinct character to an id (sorted order) and adds BOS with id = number of chars."""

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars: list[str] = sorted(set(chars))
        self.bos: int = len(self.chars)
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(self.chars)}

    @classmethod
    def from_docs(cls, docs: Iterable[str]) -> "CharTokenizer":
        """The vocabulary of every character that appears in `docs`."""
        return cls("".join(docs))

    @property
    def vocab_size(self) -> int:
        """Number of characters plus one for BOS."""
        return self.bos + 1

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; raises TokenError naming any character not in the vocabulary."""
        try:
            return [self.stoi[ch] for ch in text]
        except KeyError:
            unknown = sorted({ch for ch in text if ch not in self.stoi})
            raise TokenError(
                f"characters {unknown!r} are not in the vocabulary of {len(self.chars)} characters"
            ) from None

    def encode_doc(self, doc: str) -> list[int]:
        """A training document: [BOS] + ids + [BOS] (BOS both starts and ends a name)."""
        return [self.bos, *self.encode(doc), self.bos]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids, BOS dropped; raises TokenError for an id outside the vocabulary."""
        out = []
        for i in ids:
            if not 0 <= i <= self.bos:
                raise TokenError(f"token id {i} is outside the vocabulary (0..{self.bos})")
            if i != self.bos:
                out.append(self.chars[i])
        return "".join(out)
