"""Export our byte-level BPE as a Hugging Face `tokenizer.json`, which HF tokenizers loads as is.

HF's byte-level BPE writes every byte as a printable character (`byte_characters`): the
printable Latin-1 bytes stand for themselves and the others (controls, space, ...) are given the
characters from U+0100 up, in byte order. A token is the string of its bytes' characters; a merge
is the pair of its two tokens' strings. Its ByteLevel pre-tokenizer splits with GPT-2's pattern
(`use_regex`) or not at all, the two settings our BPE offers. Its vocabulary maps a string to one
id, so a tokenizer with two tokens of the same bytes (possible after merges (ab, c) and (a, bc))
cannot be exported.
"""
from __future__ import annotations

import json

from microgpt_lib.tokenizers.bpe import GPT2_SPLIT, BPETokenizer


def byte_characters() -> list[str]:
    """The printable character HF's byte-level models use for each byte value 0..255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def hf_tokenizer_json(tok: BPETokenizer) -> str:
    """`tok` as the JSON text of an HF tokenizer.json (ValueError if it cannot be expressed)."""
    if tok.pattern not in (None, GPT2_SPLIT):
        raise ValueError("HF's ByteLevel pre-tokenizer splits with GPT-2's pattern or not at all")
    if len(set(tok.token_bytes)) != len(tok.token_bytes):
        raise ValueError("two tokens have the same bytes: HF's vocabulary cannot hold both")
    chars = byte_characters()
    names = ["".join(chars[b] for b in data) for data in tok.token_bytes]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": tok.pattern is not None}
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for name, i in tok.special_tokens.items()],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": None,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None,
            "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
            "byte_fallback": False, "ignore_merges": False,
            "vocab": {name: i for i, name in enumerate(names)},
            "merges": [[names[a], names[b]] for a, b in tok.merges],
        },
    }
    return json.dumps(doc, ensure_ascii=False)
