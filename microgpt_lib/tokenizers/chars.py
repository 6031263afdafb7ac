"""Character tokenizer for names: 26 letters + BOS, the vocabulary of chapters 1-5.

Ids are the sorted characters of the documents, then BOS as the last id (bos = vocab_size - 1),
which the rungs rely on when they sample. Unlike `CharacterTokenizer` it has no byte fallback: a
character outside the vocabulary is an error, as in the reference model.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from microgpt_lib.tokenizers.base import BOS, TokenIdError, Tokenizer, text_bytes


class TokenError(TokenIdError):
    """A character or token id outside the vocabulary."""


class CharTokenizer(Tokenizer):
    """Maps each distinct character to an id (sorted order) and adds BOS with id = number of chars."""

    kind = "names"

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars: list[str] = sorted(set(chars))
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(self.chars)}
        super().__init__([text_bytes(ch) for ch in self.chars], [BOS])

    @classmethod
    def from_docs(cls, docs: Iterable[str]) -> "CharTokenizer":
        """The vocabulary of every character that appears in `docs`."""
        return cls("".join(docs))

    def encode_ordinary(self, text: str) -> list[int]:
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

    def decode(self, ids: Sequence[int], errors: str = "strict",
               skip_special: bool = True) -> str:
        """Text of token ids, BOS dropped; raises TokenError for an id outside the vocabulary."""
        for i in ids:
            if not 0 <= i <= self.bos:
                raise TokenError(f"token id {i} is outside the vocabulary (0..{self.bos})")
        return super().decode(ids, errors, skip_special)

    def to_fields(self) -> dict[str, Any]:
        return {"chars": "".join(self.chars)}

    @classmethod
    def from_fields(cls, fields: dict[str, Any], special_tokens: list[str]) -> "CharTokenizer":
        chars = fields["chars"]
        if not isinstance(chars, str) or list(chars) != sorted(set(chars)):
            raise ValueError("chars must be a string of distinct characters in sorted order")
        if special_tokens != [BOS]:
            raise ValueError(f"the names tokenizer has one special token, {BOS}")
        return cls(chars)
