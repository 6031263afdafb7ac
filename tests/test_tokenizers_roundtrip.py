"""Every tokenizer is lossless: decode(encode(s)) == s on any Python string (hypothesis)."""
import pytest
from hypothesis import given, settings

from microgpt_lib.tokenizers.base import DecodeError
from microgpt_lib.tokenizers.bpe import BPETokenizer
from tokenizer_cases import any_text, shakespeare, tokenizers

KINDS = ["characters", "words", "bpe", "bpe_gpt2"]


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=1600, deadline=None)
@given(text=any_text)
def test_decode_of_encode_is_the_text(kind, text):
    tok = tokenizers()[kind]
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


@settings(max_examples=500, deadline=None)
@given(text=any_text)
def test_python_bpe_encoder_round_trips_too(text):
    tok = tokenizers()["bpe_gpt2"]
    python_only = BPETokenizer(tok.merges, tok.pattern)
    python_only._encoder = lambda: None  # force the pure-Python path
    assert python_only.decode(python_only.encode(text)) == text


@pytest.mark.parametrize("kind", KINDS)
def test_whole_training_text_round_trips(kind):
    tok = tokenizers()[kind]
    text = shakespeare()
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("kind", KINDS)
def test_lone_surrogates_survive_as_their_three_bytes(kind):
    tok = tokenizers()[kind]
    for text in ["\ud800", "a\udfffb", "\ud83d\ude00"]:  # the last: a pair written as two halves
        assert tok.decode(tok.encode(text)) == text
    assert tok.decode_bytes(tok.encode("\ud800")) == b"\xed\xa0\x80"


@pytest.mark.parametrize("kind", ["bpe", "characters"])
def test_half_a_character_is_a_decode_error_unless_replaced(kind):
    tok = tokenizers()[kind]
    ids = tok.encode("€")  # three bytes: several byte-level ids
    if len(ids) == 1:
        pytest.skip("the character is one token in this vocabulary")
    partial = ids[:-1]
    with pytest.raises(DecodeError, match="not valid UTF-8"):
        tok.decode(partial)
    assert tok.decode(partial, errors="replace") == "\ufffd"


def test_special_tokens_are_ordinary_text_unless_allowed():
    tok = tokenizers()["bpe"]
    assert tok.bos == tok.vocab_size - 1
    plain = tok.encode("<|bos|>hi")
    assert tok.bos not in plain and tok.decode(plain) == "<|bos|>hi"
    allowed = tok.encode("<|bos|>hi", allowed_special={"<|bos|>"})
    assert allowed[0] == tok.bos and tok.decode(allowed) == "hi"
    assert tok.decode(allowed, skip_special=False) == "<|bos|>hi"
