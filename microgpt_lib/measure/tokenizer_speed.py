"""Timing tokenizers: our BPE trainers and encoders beside sentencepiece and HF tokenizers.

Every program trains on the same text with the same vocabulary size (all ids included) on one
thread, and encodes the same text; each time is the median of a few runs after one warm-up run
(the first run pays for loading and for tables built once). sentencepiece reads the text as
lines (its sentences) and splits them at spaces; HF tokenizers and our BPE are byte-level, with
GPT-2's pre-split or without any.
"""
from __future__ import annotations

import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from microgpt_lib.tokenizers import BOS, BPETokenizer, train_bpe
from microgpt_lib.tokenizers.bpe_training import TRAINERS, training_pieces
from microgpt_lib.tokenizers.hf_export import byte_characters


def median_seconds(fn: Callable[[], object], repeats: int = 3) -> tuple[float, object]:
    """(the median of `repeats` calls in seconds, after one warm-up call; the last result)."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


@dataclass
class TokenizerTiming:
    """One program at one vocabulary size: training time, encoding speed, compression."""

    program: str
    vocab_size: int
    train_seconds: float
    encode_mb_per_s: float
    bytes_per_token: float


def ours(text: str, vocab_size: int, pattern: str | None, repeats: int = 3,
         encode_text: str | None = None, label: str = "") -> TokenizerTiming:
    """Our compiled BPE: train on `text`, then encode `encode_text` (default: `text`)."""
    encode_text = text if encode_text is None else encode_text
    train_s, tok = median_seconds(lambda: train_bpe(text, vocab_size, pattern), repeats)
    enc_s, ids = median_seconds(lambda: tok.encode_array(encode_text), repeats)
    n = len(encode_text.encode("utf-8"))
    name = "ours, " + ("GPT-2 split" if pattern else "no split") + label
    return TokenizerTiming(name, vocab_size, train_s, n / enc_s / 1e6, n / len(ids))


# sentencepiece's BPE set as close to ours as it goes: pieces split at spaces only (a space
# starts a piece), no other split, pieces of any length. SENTENCEPIECE_LIKE_SPLIT is the same
# split for our trainer: sentencepiece drops the newlines (each line is a sentence).
SENTENCEPIECE_LIKE = {"split_by_unicode_script": False, "split_by_number": False,
                      "max_sentencepiece_length": 256}
SENTENCEPIECE_LIKE_SPLIT = r" ?[^ \n]+| "


def sentencepiece_bpe(text: str, vocab_size: int, repeats: int = 3, like_ours: bool = False):
    """sentencepiece's BPE, one thread, identity normalisation, the text's lines as sentences
    (with `like_ours`, the SENTENCEPIECE_LIKE settings): (timing, the trained processor)."""
    import sentencepiece as spm

    options = SENTENCEPIECE_LIKE if like_ours else {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "text.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

        def train() -> bytes:
            model = io.BytesIO()
            spm.SentencePieceTrainer.train(
                input=path, model_writer=model, vocab_size=vocab_size, model_type="bpe",
                normalization_rule_name="identity", character_coverage=1.0, num_threads=1,
                add_dummy_prefix=False, remove_extra_whitespaces=False, minloglevel=2,
                **options)
            return model.getvalue()

        train_s, proto = median_seconds(train, repeats)
    sp = spm.SentencePieceProcessor(model_proto=proto)
    lines = text.splitlines()
    enc_s, ids = median_seconds(lambda: sp.encode(lines), repeats)
    n = len(text.encode("utf-8"))
    name = "sentencepiece BPE" + (", split at spaces only" if like_ours else "")
    timing = TokenizerTiming(name, vocab_size, train_s, n / enc_s / 1e6,
                             n / sum(len(x) for x in ids))
    return timing, sp


def sentencepiece_merges(sp) -> list[bytes]:
    """The pieces sentencepiece learned by merging, in the order it learned them (its
    characters come after them, its control pieces before), as UTF-8 with spaces for "▁"."""
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
              if not (sp.is_control(i) or sp.is_unknown(i))]
    return [p.replace("\u2581", " ").encode() for p in pieces if len(p) > 1]


def hf_byte_level(text: str, vocab_size: int, use_regex: bool, repeats: int = 3,
                  encode_text: str | None = None, label: str = ""):
    """HF tokenizers' byte-level BPE, one thread, trained on `text`, encoding `encode_text`
    (default: `text`): (timing, the tokenizer)."""
    os.environ["RAYON_NUM_THREADS"] = "1"  # read when HF first starts its thread pool
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    def train():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=[BOS], show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator([text], trainer)
        return tok

    encode_text = text if encode_text is None else encode_text
    train_s, tok = median_seconds(train, repeats)
    enc_s, enc = median_seconds(lambda: tok.encode(encode_text), repeats)
    n = len(encode_text.encode("utf-8"))
    name = "HF tokenizers, " + ("GPT-2 split" if use_regex else "no split") + label
    return TokenizerTiming(name, vocab_size, train_s, n / enc_s / 1e6, n / len(enc.ids)), tok


def hf_no_split_train_seconds(text: str, vocab_size: int, sizes: list[int]) -> list[float]:
    """Seconds HF tokenizers takes to train without a pre-split on text[:n], for n in sizes
    (one run each): how its training time grows with the length of one unsplit piece."""
    return [hf_byte_level(text[:n], vocab_size, False, repeats=1)[0].train_seconds
            for n in sizes]


def hf_merges_as_ours(hf_tok) -> list[tuple[bytes, bytes]]:
    """HF's learned merges as pairs of byte strings (its characters mapped back to bytes)."""
    to_byte = {c: b for b, c in enumerate(byte_characters())}
    merges = json.loads(hf_tok.to_str())["model"]["merges"]
    pairs = [m if isinstance(m, list) else m.split(" ") for m in merges]
    return [tuple(bytes(to_byte[c] for c in s) for s in pair) for pair in pairs]


def merges_as_bytes(tok: BPETokenizer) -> list[tuple[bytes, bytes]]:
    """Our merges as pairs of byte strings (comparable across programs, whatever their ids)."""
    return [(tok.token_bytes[a], tok.token_bytes[b]) for a, b in tok.merges]


def first_difference(ours: list, theirs: list) -> int:
    """The number of leading merges two lists share."""
    n = 0
    for a, b in zip(ours, theirs):
        if a != b:
            break
        n += 1
    return n


def trainer_cost_per_merge(text: str, method: str, n_merges: int,
                           pattern: str | None = None) -> float:
    """Seconds per merge of one of our trainers ("naive", "heap", "compiled") on `text` (one
    run: the naive trainer is slow)."""
    pieces = training_pieces(text, pattern)
    start = time.perf_counter()
    TRAINERS[method](pieces, n_merges)
    return (time.perf_counter() - start) / n_merges


def encode_growth(tok: BPETokenizer, make_text: Callable[[int], str], sizes: list[int],
                  repeats: int = 3) -> list[float]:
    """Seconds to encode make_text(n) with the compiled encoder, for each n in sizes."""
    return [median_seconds(lambda: tok.encode_array(make_text(n)), repeats)[0] for n in sizes]


def naive_encode_seconds(tok: BPETokenizer, text: str) -> float:
    """Seconds to encode `text` with the naive Python encoder (the reference)."""
    from microgpt_lib.tokenizers.bpe import encode_naive, split_pieces

    start = time.perf_counter()
    for piece in split_pieces(text, tok.pattern):
        encode_naive(piece.encode("utf-8"), tok.ranks)
    return time.perf_counter() - start


def pair_counts_after(text: str, pattern: str | None, merges: list[tuple[int, int]],
                      k: int) -> dict[tuple[bytes, bytes], int]:
    """How often each adjacent pair (as byte strings) occurs in the text's pieces once the first
    k merges are applied: the counts a trainer compares when it picks merge k."""
    partial = BPETokenizer(merges[:k])
    counts: dict[tuple[bytes, bytes], int] = {}
    for piece, weight in training_pieces(text, pattern).items():
        ids = partial.encode_array(piece.decode("utf-8", "surrogatepass")).tolist()
        for a, b in zip(ids, ids[1:]):
            pair = (partial.token_bytes[a], partial.token_bytes[b])
            counts[pair] = counts.get(pair, 0) + weight
    return counts
