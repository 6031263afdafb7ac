"""Shared test material for the tokenizer tests: trained tokenizers and a text strategy."""
from __future__ import annotations

from functools import cache

from hypothesis import strategies as st

from microgpt_lib.data import load_text
from microgpt_lib.tokenizers.bpe import GPT2_SPLIT
from microgpt_lib.tokenizers.bpe_training import train_bpe
from microgpt_lib.tokenizers.characters import CharacterTokenizer
from microgpt_lib.tokenizers.words import WordTokenizer

# Strings that have broken tokenizers: emoji sequences with joiners, combining marks, CRLF,
# NUL, a lone surrogate, a byte-order mark, characters of 2, 3 and 4 UTF-8 bytes.
AWKWARD = ["👩‍👩‍👧", "🇫🇷", "e\u0301", "\r\n", "\x00", "\ud800", "\udfff", "\ufeff", "é",
           "€", "𝔘", "  ", "\n\n", "'s", "123", "<|bos|>"]

# Any Python string: every code point (surrogates included), mixed with the awkward strings.
any_text = st.lists(
    st.one_of(st.characters(categories=None, exclude_categories=[]), st.sampled_from(AWKWARD)), max_size=40,
).map("".join)

# Valid Unicode only (no lone surrogates): what other libraries accept.
valid_text = st.lists(
    st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(
        [s for s in AWKWARD if not any("\ud800" <= c <= "\udfff" for c in s)])), max_size=40,
).map("".join)


@cache
def shakespeare(n_chars: int = 60_000) -> str:
    """The first n_chars characters of tiny Shakespeare."""
    return load_text("tinyshakespeare")[:n_chars]


@cache
def tokenizers() -> dict:
    """One trained tokenizer of each kind (BPE with and without the GPT-2 split)."""
    text = shakespeare() + " naïve café — 𝔘 👍"
    return {
        "characters": CharacterTokenizer.train(text),
        "words": WordTokenizer.train(text, 1500),
        "bpe": train_bpe(text, 600),
        "bpe_gpt2": train_bpe(text, 600, GPT2_SPLIT),
    }
