"""Tokenizers: text to token ids and back (core of the ladder), all behind one interface.

`Tokenizer` (base.py) is the interface: encode, decode, vocab_size, special tokens (BOS at least,
after the ordinary ids) and save/load as documented JSON. Its implementations:

- `CharTokenizer` (chars.py): the names tokenizer of chapters 1-5, 26 letters and BOS as the last
  id (vocab_size - 1), which the rungs rely on when they sample; unknown characters are errors;
- `CharacterTokenizer` (characters.py): characters with a byte fallback, lossless on any text;
- `WordTokenizer` (words.py): frequent words, falling back to characters and bytes;
- `BPETokenizer` (bpe.py): byte-level BPE, trained by `train_bpe` (bpe_training.py).
"""
from microgpt_lib.tokenizers.base import (
    BOS, DecodeError, EmptyTextError, TokenIdError, Tokenizer, TokenizerError, TokenizerFileError,
    UnknownSpecialTokenError, VocabularySizeError,
)
from microgpt_lib.tokenizers.bpe import GPT2_SPLIT, BPETokenizer
from microgpt_lib.tokenizers.bpe_training import train_bpe
from microgpt_lib.tokenizers.characters import CharacterTokenizer
from microgpt_lib.tokenizers.chars import CharTokenizer, TokenError
from microgpt_lib.tokenizers.words import WordTokenizer

__all__ = [
    "BOS", "BPETokenizer", "CharTokenizer", "CharacterTokenizer", "DecodeError",
    "EmptyTextError", "GPT2_SPLIT", "TokenError", "TokenIdError", "Tokenizer", "TokenizerError",
    "TokenizerFileError", "UnknownSpecialTokenError", "VocabularySizeError", "WordTokenizer",
    "train_bpe",
]
