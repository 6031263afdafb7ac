"""The word tokenizer: lossless with its fallback, lossy with lower-casing or <|unk|>."""
from microgpt_lib.tokenizers.words import UNK, WordTokenizer
from tokenizer_cases import shakespeare


def test_frequent_words_are_single_tokens_and_rare_ones_fall_back():
    tok = WordTokenizer.train(shakespeare(), 2000)
    assert len(tok.encode("the")) == 1
    rare = "Zyzzyva"
    assert len(tok.encode(rare)) == len(rare)
    assert tok.decode(tok.encode(rare + " 😀")) == rare + " 😀"


def test_lowercase_and_unk_make_the_tokenizer_lossy():
    text = shakespeare()
    lower = WordTokenizer.train(text, 2000, lowercase=True)
    assert lower.decode(lower.encode("ROMEO:")) == "romeo:"
    unk = WordTokenizer.train(text, 2000, unknown="unk")
    ids = unk.encode("Zyzzyva the")
    assert unk.special_id(UNK) in ids
    assert unk.decode(ids) == UNK + " the"
