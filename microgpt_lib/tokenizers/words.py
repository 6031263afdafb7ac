"""Word tokenizer: one id per frequent word, space run or punctuation mark, with a fallback below.

The text is split into words (runs of letters, digits and underscores), runs of whitespace, and
single other characters (`WORD_SPLIT`). Ids: 0..255 are the byte values, then the training
text's characters that take more than one byte in UTF-8, then the most frequent pieces of the
training text (ties in sorted order), then the special tokens. A piece outside the vocabulary is
written character by character (a character never seen as bytes): lossless on any text.

Two options exist to show what they cost: `lowercase=True` folds case before splitting and
`unknown="unk"` writes every unknown piece as one <|unk|> token. Both make the tokenizer lossy
(decode(encode(s)) != s), and a model's loss on such ids is not comparable with a lossless
tokenizer's: it never has to predict capitals or the spelling of a rare word.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from microgpt_lib.tokenizers.base import (
    BOS, Tokenizer, check_training_text, check_vocab_size, text_bytes,
)

WORD_SPLIT = re.compile(r"\w+|\s+|[^\w\s]")
UNK = "<|unk|>"


class WordTokenizer(Tokenizer):
    """Bytes, multi-byte characters, frequent pieces (words), then special tokens."""

    kind = "words"

    def __init__(self, words: Sequence[str], chars: Sequence[str] = (), lowercase: bool = False,
                 unknown: str = "chars", special_tokens: Sequence[str] = (BOS,)) -> None:
        if unknown not in ("chars", "unk"):
            raise ValueError(f"unknown={unknown!r}: use 'chars' (lossless) or 'unk'")
        chars = sorted(set(chars))
        if any(len(text_bytes(ch)) < 2 or len(ch) != 1 for ch in chars):
            raise ValueError("chars must be single characters of more than one UTF-8 byte")
        table = [bytes([b]) for b in range(256)] + [text_bytes(ch) for ch in chars]
        known = set(table)
        words = list(words)
        for w in words:
            if not isinstance(w, str) or text_bytes(w) in known:
                raise ValueError(f"word {w!r} is not a new string")
            known.add(text_bytes(w))
        table += [text_bytes(w) for w in words]
        if unknown == "unk" and UNK not in special_tokens:
            special_tokens = (*special_tokens, UNK)
        super().__init__(table, special_tokens)
        self.chars, self.words = chars, words
        self.lowercase, self.unknown = lowercase, unknown
        self.piece_ids: dict[str, int] = {w: 256 + len(chars) + i for i, w in enumerate(words)}
        self.piece_ids.update({ch: 256 + i for i, ch in enumerate(chars)})
        self.piece_ids.update({chr(b): b for b in range(128)})

    @classmethod
    def train(cls, text: str, vocab_size: int, lowercase: bool = False, unknown: str = "chars",
              special_tokens: Sequence[str] = (BOS,)) -> WordTokenizer:
        """The `vocab_size` ids: bytes, the text's multi-byte characters, its most frequent
        pieces, and the special tokens (VocabularySizeError if the first two do not fit)."""
        text = check_training_text(text)
        if lowercase:
            text = text.lower()
        chars = sorted(ch for ch in set(text) if ord(ch) >= 128)
        n_special = len(special_tokens) + (unknown == "unk" and UNK not in special_tokens)
        base = 256 + len(chars) + n_special
        check_vocab_size(vocab_size, base, "the bytes, characters and special tokens")
        counts = Counter(p for p in WORD_SPLIT.findall(text) if len(p) > 1)
        ranked = sorted(counts, key=lambda p: (-counts[p], p))
        return cls(ranked[:vocab_size - base], chars, lowercase, unknown, special_tokens)

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of the pieces of `text`: known pieces directly, the rest as characters or bytes
        (or <|unk|>)."""
        if self.lowercase:
            text = text.lower()
        piece_ids, ids = self.piece_ids, []
        unk = self.special_tokens.get(UNK)
        for piece in WORD_SPLIT.findall(text):
            i = piece_ids.get(piece)
            if i is not None:
                ids.append(i)
            elif unk is not None:
                ids.append(unk)
            else:
                for ch in piece:
                    i = piece_ids.get(ch)
                    ids.extend(text_bytes(ch) if i is None else (i,))
        return ids

    def decode(self, ids, errors: str = "strict", skip_special: bool = True) -> str:
        """Text of token ids; with unknown="unk" the <|unk|> tokens are written by name."""
        return super().decode(ids, errors, skip_special and self.unknown != "unk")

    def to_fields(self) -> dict[str, Any]:
        return {"words": self.words, "chars": "".join(self.chars),
                "lowercase": self.lowercase, "unknown": self.unknown}

    @classmethod
    def from_fields(cls, fields: dict[str, Any], special_tokens: list[str]) -> WordTokenizer:
        if not isinstance(fields["words"], list) or not isinstance(fields["chars"], str):
            raise TypeError("words must be a list and chars a string")
        if not isinstance(fields["lowercase"], bool):
            raise TypeError("lowercase must be true or false")
        return cls(fields["words"], fields["chars"], fields["lowercase"], fields["unknown"],
                   special_tokens)
