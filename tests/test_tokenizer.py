"""Character tokenizer: round trips every document, rejects what is outside the vocabulary."""
import pytest

from microgpt_lib import CharTokenizer, TokenError, load_docs, load_text


def test_names_vocabulary_is_26_letters_plus_bos():
    tok = CharTokenizer.from_docs(load_docs("names"))
    assert "".join(tok.chars) == "abcdefghijklmnopqrstuvwxyz"
    assert tok.bos == 26 and tok.vocab_size == 27


@pytest.mark.parametrize("dataset", ["names", "alice"])
def test_every_document_round_trips(dataset):
    docs = load_docs(dataset)
    tok = CharTokenizer.from_docs(docs)
    for doc in docs:
        ids = tok.encode_doc(doc)
        assert ids[0] == ids[-1] == tok.bos
        assert tok.decode(ids) == doc


def test_whole_text_round_trips_including_unicode():
    text = load_text("alice")
    tok = CharTokenizer(text)
    assert tok.decode(tok.encode(text)) == text
    assert "—" in tok.chars


def test_unknown_character_is_named_in_the_error():
    tok = CharTokenizer("abc")
    with pytest.raises(TokenError, match=r"\['z'\]"):
        tok.encode("abz")


@pytest.mark.parametrize("bad", [-1, 4, 100])
def test_token_id_outside_vocabulary_is_rejected(bad):
    with pytest.raises(TokenError, match="outside the vocabulary"):
        CharTokenizer("abc").decode([0, bad])
