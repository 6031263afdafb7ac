"""Tokenizers: text to token ids and back (core of the ladder).

`CharTokenizer` is the names tokenizer every rung of chapters 1-5 uses: one id per letter, in sorted
order, and BOS as the last id (vocab_size - 1), which the rungs rely on when they sample.
"""
from microgpt_lib.tokenizers.chars import CharTokenizer, TokenError

__all__ = ["CharTokenizer", "TokenError"]
