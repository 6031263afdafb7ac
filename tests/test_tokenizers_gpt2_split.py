"""The compiled GPT-2 pre-split cuts every string exactly where regex.findall(GPT2_SPLIT) does,
and the compiled trainer and encoder that use it match the Python reference."""
import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from fastops._bpe import split_gpt2
from microgpt_lib.tokenizers.base import text_bytes
from microgpt_lib.tokenizers.bpe import GPT2_SPLIT, BPETokenizer, gpt2_classes
from microgpt_lib.tokenizers.bpe_training import (
    train_merges_compiled_text, train_merges_naive, training_pieces,
)
from tokenizer_cases import AWKWARD, any_text, shakespeare

# Characters that sit on the pattern's edges: spaces of every kind (and characters that
# str.isspace() calls space but \s does not), letters and numbers of several scripts, the
# contractions and their look-alikes, combining marks, emoji, NUL, lone surrogates.
EDGES = [" ", "  ", "\t", "\n", "\r\n", "\r", "\x0b", "\x0c", "\x85", "\xa0", "\u1680",
         "\u2000", "\u2028", "\u2029", "\u202f", "\u3000", "\x1c", "\x1f", "\u200b", "\u180e",
         "a", "Z", "ß", "é", "e\u0301", "\u0301", "中", "ᄀ", "ǅ", "ʰ", "1", "٣", "۹", "Ⅻ", "½",
         "²", "𝟘", "'", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'r", "'l", "'v",
         "’s", "!", "?!", ".", "-", "_", "$", "\x00", "\ud800", "\udfff", "👍", "👩‍👩‍👧",
         "🇫🇷", "€", "𝔘", "\ufeff", *AWKWARD]
edge_text = st.lists(st.one_of(st.sampled_from(EDGES), st.characters(categories=None,
                                                                     exclude_categories=[])),
                     max_size=30).map("".join)


def compiled_pieces(text: str) -> list[str]:
    data = text_bytes(text)
    starts = split_gpt2(data, gpt2_classes())
    return [data[a:b].decode("utf-8", "surrogatepass") for a, b in zip(starts, starts[1:])]


@settings(max_examples=4000, deadline=None)
@given(text=edge_text)
def test_compiled_split_equals_regex_on_edge_cases(text):
    assert compiled_pieces(text) == regex.findall(GPT2_SPLIT, text)


@settings(max_examples=2000, deadline=None)
@given(text=any_text)
def test_compiled_split_equals_regex_on_any_string(text):
    assert compiled_pieces(text) == regex.findall(GPT2_SPLIT, text)


def test_compiled_split_equals_regex_on_shakespeare():
    text = shakespeare(1_000_000)
    assert compiled_pieces(text) == regex.findall(GPT2_SPLIT, text)


def test_every_code_point_is_classed_as_regex_classes_it():
    classes = gpt2_classes()
    assert classes.shape == (0x110000,) and set(np.unique(classes)) <= {0, 1, 2, 4}
    for cp in list(range(0x3000)) + list(range(0x10000, 0x10400)) + [0x10FFFF]:
        c = chr(cp)
        expected = (1 * bool(regex.match(r"\p{L}", c)) + 2 * bool(regex.match(r"\p{N}", c))
                    + 4 * bool(regex.match(r"\s", c)))
        assert classes[cp] == expected, hex(cp)


def test_compiled_split_survives_bytes_that_are_not_utf8():
    for data in [b"\xff", b"\x80abc", b"a\xe2\x82", b"\xf4\x90\x80\x80 x", b"\xc3", b" \xc3"]:
        starts = split_gpt2(data, gpt2_classes())
        assert starts[0] == 0 and starts[-1] == len(data) and np.all(np.diff(starts) > 0)
    with pytest.raises(ValueError, match="one byte per code point"):
        split_gpt2(b"abc", np.zeros(10, dtype=np.uint8))


@pytest.mark.parametrize("text", ["", "a", " ", "'s", "hello world", shakespeare(50_000)])
def test_compiled_trainer_with_the_compiled_split_learns_the_naive_merges(text):
    pieces = training_pieces(text, GPT2_SPLIT)
    assert train_merges_compiled_text(text, GPT2_SPLIT, 60) == train_merges_naive(pieces, 60)


@settings(max_examples=300, deadline=None)
@given(text=edge_text, n_merges=st.integers(0, 30))
def test_compiled_trainer_with_the_compiled_split_on_any_text(text, n_merges):
    pieces = training_pieces(text, GPT2_SPLIT)
    assert (train_merges_compiled_text(text, GPT2_SPLIT, n_merges)
            == train_merges_naive(pieces, n_merges))


@settings(max_examples=300, deadline=None)
@given(text=edge_text)
def test_encoder_with_the_compiled_split_equals_the_regex_split(text):
    tok = BPETokenizer(train_merges_compiled_text(shakespeare(20_000), GPT2_SPLIT, 200),
                       GPT2_SPLIT)
    data = [text_bytes(p) for p in regex.findall(GPT2_SPLIT, text)]
    assert tok.encode(text) == tok._encoder().encode_pieces(data).tolist()
    assert tok.decode(tok.encode(text)) == text
