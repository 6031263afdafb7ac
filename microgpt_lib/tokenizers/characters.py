"""Character tokenizer with byte fallback: one id per character seen in training, lossless on any text.

Ids: 0..C-1 are the training text's distinct characters in sorted order, C..C+255 the 256 byte
values (a character never seen in training is written as its UTF-8 bytes), then the special
tokens (BOS first). On tiny Shakespeare C is 65, so the vocabulary is 65 + 256 + 1 = 322 ids.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from microgpt_lib.tokenizers.base import BOS, Tokenizer, check_training_text, text_bytes


class CharacterTokenizer(Tokenizer):
    """Characters of the training text, then 256 byte tokens, then the special tokens."""

    kind = "characters"

    def __init__(self, chars: Sequence[str], special_tokens: Sequence[str] = (BOS,)) -> None:
        chars = sorted(set(chars))
        if not all(isinstance(ch, str) and len(ch) == 1 for ch in chars):
            raise ValueError("chars must be single characters")
        self.chars: list[str] = chars
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(chars)}
        self.byte_offset: int = len(chars)
        table = [text_bytes(ch) for ch in chars] + [bytes([b]) for b in range(256)]
        super().__init__(table, special_tokens)

    @classmethod
    def train(cls, text: str, special_tokens: Sequence[str] = (BOS,)) -> CharacterTokenizer:
        """The tokenizer of every distinct character in `text`."""
        return cls(set(check_training_text(text)), special_tokens)

    def encode_ordinary(self, text: str) -> list[int]:
        """One id per known character; the UTF-8 bytes of an unknown one."""
        stoi = self.stoi
        try:
            return [stoi[ch] for ch in text]
        except KeyError:
            pass
        offset = self.byte_offset
        ids: list[int] = []
        for ch in text:
            i = stoi.get(ch)
            if i is None:
                ids.extend(offset + b for b in text_bytes(ch))
            else:
                ids.append(i)
        return ids

    def to_fields(self) -> dict[str, Any]:
        return {"chars": "".join(self.chars)}

    @classmethod
    def from_fields(cls, fields: dict[str, Any], special_tokens: list[str]) -> CharacterTokenizer:
        chars = fields["chars"]
        if not isinstance(chars, str) or list(chars) != sorted(set(chars)):
            raise ValueError("chars must be a string of distinct characters in sorted order")
        return cls(chars, special_tokens)
