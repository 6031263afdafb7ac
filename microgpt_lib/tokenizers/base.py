"""The one tokenizer interface: text <-> token ids, special tokens, and a plain JSON file format.

Every tokenizer of the course maps an ordinary token id to a byte string (its UTF-8 bytes) and
puts its special tokens (a BOS at least) after the ordinary ids, so `bos` is an id near the end
of the vocabulary. Decoding joins the byte strings and decodes them as UTF-8.

Text and bytes. Text is encoded with UTF-8 and the "surrogatepass" handler: a lone surrogate
(a code point U+D800..U+DFFF, which a Python string can hold but valid Unicode text cannot)
becomes its 3-byte form and decodes back to itself, so `decode(encode(s)) == s` for every
Python string. Decoding ids that a model produced may meet bytes that are not valid UTF-8 (half
of a character): `errors="strict"` (the default) raises DecodeError, `errors="replace"` puts
U+FFFD in their place.

File format (JSON, UTF-8): {"format": "microgpt-tokenizer", "version": 1, "kind": <kind>,
"special_tokens": {name: id, ...}, ...the fields of that kind}. `Tokenizer.load` rejects a
truncated file, another format or version, and fields of the wrong type, with TokenizerFileError.
"""
from __future__ import annotations

import json
import operator
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from microgpt_lib.files import atomic_write_text

FORMAT = "microgpt-tokenizer"
FORMAT_VERSION = 1
BOS = "<|bos|>"
MAX_VOCAB_SIZE = 1 << 20  # more ids than this is a mistake, not a vocabulary


class TokenizerError(ValueError):
    """Bad input to a tokenizer: every error below derives from it."""


class VocabularySizeError(TokenizerError):
    """A vocabulary size below the tokenizer's base alphabet, or absurdly large."""


class EmptyTextError(TokenizerError):
    """Training text with nothing to learn from."""


class UnknownSpecialTokenError(TokenizerError):
    """A special token name the tokenizer does not have."""


class TokenIdError(TokenizerError):
    """A token id outside the vocabulary (or not an integer)."""


class DecodeError(TokenizerError):
    """Token ids whose bytes are not valid UTF-8 (decode with errors="replace" to accept them)."""


class TokenizerFileError(TokenizerError):
    """A saved tokenizer that is truncated, from another format or version, or inconsistent."""


def text_bytes(text: str) -> bytes:
    """UTF-8 bytes of `text`; a lone surrogate becomes its 3-byte form (see the module doc)."""
    return text.encode("utf-8", "surrogatepass")


def bytes_text(data: bytes, errors: str = "strict") -> str:
    """Text of UTF-8 bytes: errors="strict" raises DecodeError on invalid bytes, "replace"
    puts U+FFFD in their place."""
    if errors == "strict":
        try:
            return data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as err:
            raise DecodeError(
                f"the ids decode to bytes that are not valid UTF-8 ({err.reason} at byte "
                f"{err.start}: {data[err.start:err.end]!r}); pass errors='replace' to accept them"
            ) from None
    if errors == "replace":
        return data.decode("utf-8", "replace")
    raise ValueError(f"errors={errors!r}: use 'strict' or 'replace'")


def check_special_tokens(names: Sequence[str]) -> list[str]:
    """The special token names as a list: non-empty distinct strings, BOS among them."""
    names = list(names)
    if not all(isinstance(n, str) and n for n in names):
        raise UnknownSpecialTokenError(f"special tokens must be non-empty strings: {names!r}")
    if len(set(names)) != len(names):
        raise UnknownSpecialTokenError(f"special tokens repeat a name: {names!r}")
    if BOS not in names:
        raise UnknownSpecialTokenError(f"the special tokens must include {BOS!r}: {names!r}")
    return names


def check_vocab_size(vocab_size: int, smallest: int, what: str) -> int:
    """`vocab_size` if it is an int in [smallest, MAX_VOCAB_SIZE]; VocabularySizeError if not."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise VocabularySizeError(f"vocab_size must be an int, not {vocab_size!r}")
    if vocab_size < smallest:
        raise VocabularySizeError(
            f"vocab_size {vocab_size} is below the {smallest} ids that {what} needs")
    if vocab_size > MAX_VOCAB_SIZE:
        raise VocabularySizeError(f"vocab_size {vocab_size} is above {MAX_VOCAB_SIZE:,}")
    return vocab_size


def check_training_text(text: str) -> str:
    """`text` if it is a non-empty string; EmptyTextError (or TypeError) if not."""
    if not isinstance(text, str):
        raise TypeError(f"training text must be a str, not {type(text).__name__}")
    if not text:
        raise EmptyTextError("the training text is empty: there is nothing to learn")
    return text


class Tokenizer(ABC):
    """Text to token ids and back. Subclasses set `kind`, fill `token_bytes` (ordinary ids) and
    implement encode_ordinary and the file fields (to_fields / from_fields)."""

    kind: ClassVar[str] = ""
    _kinds: ClassVar[dict[str, type[Tokenizer]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            Tokenizer._kinds[cls.kind] = cls

    def __init__(self, token_bytes: list[bytes], special_tokens: Sequence[str]) -> None:
        self.token_bytes: list[bytes] = token_bytes
        names = check_special_tokens(special_tokens)
        n = len(token_bytes)
        self.special_tokens: dict[str, int] = {name: n + i for i, name in enumerate(names)}
        self._special_names = {i: name for name, i in self.special_tokens.items()}
        self._special_split: dict[frozenset[str], re.Pattern[str]] = {}

    @property
    def vocab_size(self) -> int:
        """Ordinary ids plus special tokens: the size of a model's embedding table."""
        return len(self.token_bytes) + len(self.special_tokens)

    @property
    def bos(self) -> int:
        """The id of the BOS special token."""
        return self.special_tokens[BOS]

    def special_id(self, name: str) -> int:
        """The id of special token `name`; UnknownSpecialTokenError if there is none."""
        try:
            return self.special_tokens[name]
        except (KeyError, TypeError):
            raise UnknownSpecialTokenError(
                f"no special token {name!r}; this tokenizer has {list(self.special_tokens)}"
            ) from None

    @abstractmethod
    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids of `text`, every character ordinary text (special names are not matched)."""

    def encode(self, text: str, allowed_special: Iterable[str] = ()) -> list[int]:
        """Token ids of `text`. Special token names written in the text are ordinary text unless
        listed in `allowed_special`, in which case each occurrence becomes that special id."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, not {type(text).__name__}")
        allowed = frozenset(allowed_special)
        for name in allowed:
            self.special_id(name)
        if not allowed:
            return self.encode_ordinary(text)
        if allowed not in self._special_split:
            alternatives = "|".join(re.escape(n) for n in sorted(allowed, key=len, reverse=True))
            self._special_split[allowed] = re.compile(f"({alternatives})")
        ids: list[int] = []
        for i, part in enumerate(self._special_split[allowed].split(text)):
            if i % 2:
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    def decode_bytes(self, ids: Iterable[int], skip_special: bool = True) -> bytes:
        """The bytes of token ids joined; special tokens dropped, or written as their names."""
        table = self.token_bytes
        n, vocab = len(table), self.vocab_size
        parts = []
        for i in ids:
            try:
                i = operator.index(i)
            except TypeError:
                raise TokenIdError(f"token id {i!r} is not an integer") from None
            if 0 <= i < n:
                parts.append(table[i])
            elif n <= i < vocab:
                if not skip_special:
                    parts.append(self._special_names[i].encode("utf-8"))
            else:
                raise TokenIdError(f"token id {i} is outside the vocabulary (0..{vocab - 1})")
        return b"".join(parts)

    def decode(self, ids: Iterable[int], errors: str = "strict",
               skip_special: bool = True) -> str:
        """Text of token ids (see the module doc for `errors`); TokenIdError for an id outside
        the vocabulary."""
        return bytes_text(self.decode_bytes(ids, skip_special), errors)

    def token_text(self, i: int) -> str:
        """A readable form of one token: its text, or its name, or <0x..> for partial bytes."""
        if i in self._special_names:
            return self._special_names[i]
        data = self.decode_bytes([i])
        try:
            return data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return "".join(f"<0x{b:02X}>" for b in data)

    # ----- file format -----

    @abstractmethod
    def to_fields(self) -> dict[str, Any]:
        """The kind-specific fields of the saved file (JSON values)."""

    @classmethod
    @abstractmethod
    def from_fields(cls, fields: dict[str, Any], special_tokens: list[str]) -> Tokenizer:
        """The tokenizer the saved fields describe (KeyError/TypeError/ValueError if broken)."""

    def to_json(self) -> str:
        """The tokenizer as the documented JSON text."""
        doc = {"format": FORMAT, "version": FORMAT_VERSION, "kind": self.kind,
               "special_tokens": self.special_tokens, **self.to_fields()}
        return json.dumps(doc, ensure_ascii=True, indent=1)

    def save(self, path: str | Path) -> None:
        """Write the tokenizer to `path` as JSON (see the module doc), atomically."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        """The tokenizer saved as `text`; TokenizerFileError if it is not a valid file."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise TokenizerFileError(f"not a complete JSON document (truncated?): {err}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise TokenizerFileError(f"not a {FORMAT} file")
        if doc.get("version") != FORMAT_VERSION:
            raise TokenizerFileError(
                f"file format version {doc.get('version')!r}; this code reads version "
                f"{FORMAT_VERSION}")
        kind = doc.get("kind")
        if kind not in Tokenizer._kinds:
            raise TokenizerFileError(
                f"unknown tokenizer kind {kind!r} (known: {sorted(Tokenizer._kinds)}; import "
                "its module first)")
        if cls.kind and kind != cls.kind:
            raise TokenizerFileError(f"the file holds a {kind!r} tokenizer, not {cls.kind!r}")
        specials = doc.get("special_tokens")
        try:
            names = sorted(specials, key=specials.__getitem__)
            tok = Tokenizer._kinds[kind].from_fields(doc, names)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise TokenizerFileError(f"broken {kind!r} tokenizer file: {err!r}") from None
        if tok.special_tokens != specials:
            raise TokenizerFileError(
                f"special token ids {specials} do not follow the {len(tok.token_bytes)} "
                "ordinary ids")
        return tok

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a tokenizer saved by `save`; TokenizerFileError if the file is not valid."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise TokenizerFileError(f"{path} is not UTF-8 text: {err}") from None
        return cls.from_json(text)
