"""Our BPE exported as an HF tokenizer.json: HF tokenizers loads it and gives the same ids."""
import pytest
from hypothesis import given, settings

from microgpt_lib.tokenizers.bpe import BPETokenizer
from microgpt_lib.tokenizers.hf_export import byte_characters, hf_tokenizer_json
from tokenizer_cases import shakespeare, tokenizers, valid_text

hf = pytest.importorskip("tokenizers")


def hf_twin(kind: str):
    return hf.Tokenizer.from_str(hf_tokenizer_json(tokenizers()[kind]))


def test_byte_characters_are_distinct_and_printable():
    chars = byte_characters()
    assert len(set(chars)) == 256 and all(c.isprintable() and c != " " for c in chars)
    assert chars[ord("a")] == "a" and chars[ord(" ")] == "Ġ"


@pytest.mark.parametrize("kind", ["bpe", "bpe_gpt2"])
def test_hf_encodes_shakespeare_identically(kind):
    text = shakespeare(120_000)[60_000:]  # text the tokenizer did not train on
    twin = hf_twin(kind)
    assert twin.encode(text).ids == tokenizers()[kind].encode(text)
    assert twin.get_vocab_size() == tokenizers()[kind].vocab_size


@pytest.mark.parametrize("kind", ["bpe", "bpe_gpt2"])
@settings(max_examples=400, deadline=None)
@given(text=valid_text)
def test_hf_encodes_any_valid_text_identically(kind, text):
    if "<|bos|>" in text:
        return  # HF matches special token names inside text; ours treats them as text
    tok = tokenizers()[kind]
    assert hf_twin_cached(kind).encode(text).ids == tok.encode(text)


_twins = {}


def hf_twin_cached(kind):
    if kind not in _twins:
        _twins[kind] = hf_twin(kind)
    return _twins[kind]


def test_tokens_with_equal_bytes_cannot_be_exported():
    tok = BPETokenizer([(97, 98), (98, 99), (256, 99), (97, 257)])  # "abc" made twice
    with pytest.raises(ValueError, match="same bytes"):
        hf_tokenizer_json(tok)
