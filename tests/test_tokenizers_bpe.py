"""BPE training and encoding: the heap and compiled trainers learn the naive trainer's merges,
the compiled encoder gives the naive encoder's ids."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgpt_lib.tokenizers.bpe import GPT2_SPLIT, BPETokenizer, encode_naive, split_pieces
from microgpt_lib.tokenizers.bpe_training import (
    train_bpe, train_merges_compiled, train_merges_heap, train_merges_naive, training_pieces,
)
from tokenizer_cases import any_text, shakespeare, tokenizers

# Few distinct characters, so that pairs repeat, counts tie and runs like "aaaa" overlap.
repetitive_text = st.text(st.sampled_from("aab \n'é1"), max_size=120)
PATTERNS = [None, GPT2_SPLIT]


def naive_ids(tok: BPETokenizer, text: str) -> list[int]:
    return [i for p in split_pieces(text, tok.pattern)
            for i in encode_naive(p.encode("utf-8", "surrogatepass"), tok.ranks)]


@pytest.mark.parametrize("pattern", PATTERNS)
@settings(max_examples=600, deadline=None)
@given(text=repetitive_text, n_merges=st.integers(0, 40))
def test_fast_trainers_learn_the_naive_merges(pattern, text, n_merges):
    pieces = training_pieces(text, pattern)
    naive = train_merges_naive(pieces, n_merges)
    assert train_merges_heap(pieces, n_merges) == naive
    assert train_merges_compiled(pieces, n_merges) == naive


@pytest.mark.parametrize("pattern", PATTERNS)
@settings(max_examples=200, deadline=None)
@given(text=any_text)
def test_fast_trainers_on_any_unicode(pattern, text):
    pieces = training_pieces(text, pattern)
    naive = train_merges_naive(pieces, 30)
    assert train_merges_heap(pieces, 30) == naive == train_merges_compiled(pieces, 30)


@pytest.mark.parametrize("pattern, n_merges", [(None, 40), (GPT2_SPLIT, 100)])
def test_fast_trainers_on_100kb_of_shakespeare(pattern, n_merges):
    pieces = training_pieces(shakespeare(100_000), pattern)
    naive = train_merges_naive(pieces, n_merges)
    assert len(naive) == n_merges
    assert train_merges_heap(pieces, n_merges) == naive
    assert train_merges_compiled(pieces, n_merges) == naive


def test_heap_and_compiled_agree_on_many_merges():
    pieces = training_pieces(shakespeare(100_000), None)
    assert train_merges_heap(pieces, 1500) == train_merges_compiled(pieces, 1500)


def test_overlapping_pairs_count_twice_and_merge_left_to_right():
    # "aaa" holds (a, a) twice: it outranks (b, c), held once by "bc"
    merges = train_merges_naive({b"aaa": 1, b"bc": 1}, 1)
    assert merges == [(97, 97)]
    tok = BPETokenizer(merges)
    assert tok.encode("aaa") == [256, 97] and tok.encode("aaaa") == [256, 256]
    for trainer in (train_merges_heap, train_merges_compiled):
        assert trainer({b"aaa": 1, b"bc": 1}, 1) == merges


def test_tie_rule_takes_the_smallest_pair():
    # (b, a) and (a, b)... each once in "ab" and "ba": the smaller pair (97, 98) wins
    for trainer in (train_merges_naive, train_merges_heap, train_merges_compiled):
        assert trainer({b"ba": 1, b"ab": 1}, 1) == [(97, 98)]


def test_training_stops_when_no_pair_is_left():
    for method in ("naive", "heap", "compiled"):
        tok = train_bpe("abab", 1000, method=method)
        assert tok.merges == [(97, 98), (256, 256)]
        assert tok.vocab_size == 256 + 2 + 1


@pytest.mark.parametrize("kind", ["bpe", "bpe_gpt2"])
@settings(max_examples=500, deadline=None)
@given(text=any_text)
def test_compiled_encoder_gives_the_naive_ids(kind, text):
    tok = tokenizers()[kind]
    assert tok.encode(text) == naive_ids(tok, text)


@pytest.mark.parametrize("kind", ["bpe", "bpe_gpt2"])
def test_compiled_encoder_on_shakespeare_and_pathological_text(kind):
    tok = tokenizers()[kind]
    text = shakespeare(20_000)
    assert tok.encode(text) == naive_ids(tok, text)
    runs = train_bpe("a" * 1000 + " " + "ab" * 500, 300)
    for text in ["a" * 100_000, "ab" * 50_000]:
        ids = runs.encode(text)
        assert runs.decode(ids) == text
        assert ids[:200] == naive_ids(runs, text[:len(runs.decode(ids[:200]))])


@settings(max_examples=300, deadline=None)
@given(text=repetitive_text, probe=repetitive_text)
def test_compiled_encoder_equals_naive_for_freshly_trained_merges(text, probe):
    for pattern in PATTERNS:
        tok = train_bpe(text or "a", 256 + 30 + 1, pattern)
        assert tok.encode(probe) == naive_ids(tok, probe)
