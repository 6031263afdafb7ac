"""Bad input to the tokenizers: each case raises a clear exception."""
import json

import pytest

from microgpt_lib.tokenizers.base import (
    EmptyTextError, TokenIdError, Tokenizer, TokenizerFileError, UnknownSpecialTokenError,
    VocabularySizeError,
)
from microgpt_lib.tokenizers.bpe import BPETokenizer
from microgpt_lib.tokenizers.bpe_training import train_bpe
from microgpt_lib.tokenizers.characters import CharacterTokenizer
from microgpt_lib.tokenizers.words import WordTokenizer
from tokenizer_cases import tokenizers

KINDS = ["characters", "words", "bpe", "bpe_gpt2"]


@pytest.mark.parametrize("size", [0, 255, 256, -5])
def test_bpe_vocabulary_below_bytes_and_specials(size):
    with pytest.raises(VocabularySizeError, match="below"):
        train_bpe("hello", size)


@pytest.mark.parametrize("size", [10**9, 2**40])
def test_absurd_vocabulary_sizes(size):
    with pytest.raises(VocabularySizeError, match="above"):
        train_bpe("hello", size)
    with pytest.raises(VocabularySizeError, match="above"):
        WordTokenizer.train("hello", size)


def test_vocabulary_size_must_be_an_int():
    with pytest.raises(VocabularySizeError, match="int"):
        train_bpe("hello", 300.0)


def test_word_vocabulary_below_bytes_and_characters():
    with pytest.raises(VocabularySizeError, match="below"):
        WordTokenizer.train("héllo wörld", 258)


def test_empty_training_text():
    for train in (lambda t: train_bpe(t, 300), CharacterTokenizer.train,
                  lambda t: WordTokenizer.train(t, 300)):
        with pytest.raises(EmptyTextError):
            train("")
    with pytest.raises(TypeError, match="str"):
        train_bpe(b"bytes", 300)


def test_unknown_special_tokens():
    tok = tokenizers()["bpe"]
    with pytest.raises(UnknownSpecialTokenError, match="<\\|eos\\|>"):
        tok.special_id("<|eos|>")
    with pytest.raises(UnknownSpecialTokenError):
        tok.encode("hi", allowed_special={"<|eos|>"})
    with pytest.raises(UnknownSpecialTokenError, match="include"):
        train_bpe("hello", 300, special_tokens=["<|eos|>"])
    with pytest.raises(UnknownSpecialTokenError, match="repeat"):
        train_bpe("hello", 300, special_tokens=["<|bos|>", "<|bos|>"])


@pytest.mark.parametrize("kind", KINDS)
def test_ids_outside_the_vocabulary(kind):
    tok = tokenizers()[kind]
    for bad in (-1, tok.vocab_size, 10**12):
        with pytest.raises(TokenIdError, match="outside"):
            tok.decode([0, bad])
    with pytest.raises(TokenIdError, match="integer"):
        tok.decode([1.5])


def test_encode_takes_text_only():
    with pytest.raises(TypeError):
        tokenizers()["bpe"].encode(b"bytes")


def test_decode_errors_policy_must_be_known():
    with pytest.raises(ValueError, match="errors"):
        tokenizers()["bpe"].decode([65], errors="ignore")


def test_merges_must_refer_to_earlier_ids():
    with pytest.raises(ValueError, match="below 256"):
        BPETokenizer([(97, 256)])
    with pytest.raises(ValueError, match="twice"):
        BPETokenizer([(97, 98), (97, 98)])


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind, tmp_path):
    tok = tokenizers()[kind]
    path = tmp_path / "tok.json"
    tok.save(path)
    again = Tokenizer.load(path)
    assert type(again) is type(tok)
    assert again.token_bytes == tok.token_bytes
    assert again.special_tokens == tok.special_tokens
    text = "To be, or not to be — 𝔘 \ud800"
    assert again.encode(text) == tok.encode(text)
    assert type(tok).load(path).vocab_size == tok.vocab_size


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_file(kind, tmp_path):
    path = tmp_path / "tok.json"
    tokenizers()[kind].save(path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(TokenizerFileError, match="truncated"):
        Tokenizer.load(path)


def test_file_of_another_version_or_format_or_kind(tmp_path):
    tok = tokenizers()["bpe"]
    doc = json.loads(tok.to_json())
    path = tmp_path / "tok.json"
    for change, message in [({"version": 2}, "version 2"), ({"format": "other"}, "not a"),
                            ({"kind": "sentencepiece"}, "unknown tokenizer kind"),
                            ({"merges": [[1, 2, 3]]}, "broken"),
                            ({"special_tokens": {"<|bos|>": 5}}, "do not follow")]:
        path.write_text(json.dumps({**doc, **change}))
        with pytest.raises(TokenizerFileError, match=message):
            Tokenizer.load(path)
    path.write_text(tok.to_json())
    with pytest.raises(TokenizerFileError, match="not 'characters'"):
        CharacterTokenizer.load(path)
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(TokenizerFileError):
        Tokenizer.load(path)
