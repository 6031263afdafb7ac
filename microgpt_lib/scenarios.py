"""Scenarios: a text, its tokenizer, the model size and the training recipe, in one TOML file.

Core of the package. A scenario is a small file in `scenarios/` (or anywhere, by path):

    description = "..."
    [data]       dataset = "alice" (a name in data/datasets.toml) or path = "my_text.txt"
                 documents = "lines" | "chunks" | "continuous"; val_fraction = 0.1
                 chunk_chars = 127 and trailing_bos = true (chunks only)
    [tokenizer]  kind = "chars" (one id per character of the text, BOS last), "characters"
                 (the same with a byte fallback for unseen characters) or "bpe" (byte-level
                 BPE with vocab_size ids, learned from the training part of the text)
    [model]      n_embd, n_head, n_layer, block_size
    [train]      the trainer's settings (checked by `microgpt_lib.train.text_run`)
    [sample]     defaults for sampling: temperature, top_k, prompt, stop_at_bos, max_chars

Documents decide what the model sees and so what it can learn:
- "lines": every non-empty line is a document, [BOS] + line + [BOS] (names);
- "chunks": the text cut into pieces of chunk_chars characters, each [BOS] + piece (+ [BOS]):
  every context starts at BOS, and with the trailing BOS the model learns where a piece ends;
- "continuous": the text as one stream of ids, trained on random windows, no BOS anywhere.
The validation text is held out before cutting: a fraction of the lines (a fixed random choice),
or the last val_fraction of a text.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microgpt_lib.batches import EncodedDocs
from microgpt_lib.config import ConfigError, GPTConfig
from microgpt_lib.data import REPO_ROOT, DatasetError, get_dataset, load_text, split_docs
from microgpt_lib.tokenizers import CharacterTokenizer, CharTokenizer, Tokenizer, train_bpe

SCENARIO_DIR = REPO_ROOT / "scenarios"
DOCUMENTS = ("lines", "chunks", "continuous")
TOKENIZERS = ("chars", "characters", "bpe")


class ScenarioError(ValueError):
    """A scenario that cannot be found, read or used."""


@dataclass(frozen=True)
class Scenario:
    """One scenario file, checked: where its text is, how it is cut and tokenized, the model."""

    name: str
    description: str
    dataset: str | None
    path: Path | None
    documents: str
    val_fraction: float
    chunk_chars: int
    trailing_bos: bool
    tokenizer: str
    vocab_size: int | None
    model: dict[str, int]
    train: dict[str, Any] = field(default_factory=dict)
    sample: dict[str, Any] = field(default_factory=dict)

    @property
    def bos_first(self) -> bool:
        """Whether every training context starts with BOS (and so samples should too)."""
        return self.documents != "continuous"

    def text(self) -> str:
        """The whole text of the scenario's dataset or file."""
        if self.path is not None:
            return self.path.read_text(encoding="utf-8")
        try:
            return load_text(self.dataset)
        except DatasetError as err:
            raise ScenarioError(f"scenario {self.name!r}: {err}") from None


_TABLES: dict[str, set[str]] = {
    "data": {"dataset", "path", "documents", "val_fraction", "chunk_chars", "trailing_bos"},
    "tokenizer": {"kind", "vocab_size"},
    "model": {"n_embd", "n_head", "n_layer", "block_size"},
    "train": None,  # checked by the trainer
    "sample": {"temperature", "top_k", "prompt", "stop_at_bos", "max_chars", "num_samples"},
}


def available_scenarios() -> list[str]:
    """Names of the scenarios in the repository's scenarios/ folder."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def scenario_file(name_or_path: str | Path) -> Path:
    """The TOML file of a scenario name (scenarios/<name>.toml) or a path to one."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ScenarioError(f"no scenario file at {path}")
        return path
    path = SCENARIO_DIR / f"{text}.toml"
    if not path.is_file():
        raise ScenarioError(f"unknown scenario {text!r}; known scenarios: "
                            f"{', '.join(available_scenarios())} (or give a path to a .toml file)")
    return path


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Read and check a scenario; ScenarioError with a one-line reason if anything is wrong."""
    path = scenario_file(name_or_path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ScenarioError(f"{path} is not valid TOML: {err}") from None
    return parse_scenario(path.stem, doc, path.parent)


def parse_scenario(name: str, doc: dict[str, Any], folder: Path) -> Scenario:
    """A Scenario from the parsed TOML of file `name`; relative paths are taken from `folder`."""
    def fail(message: str) -> ScenarioError:
        return ScenarioError(f"scenario {name!r}: {message}")

    unknown = set(doc) - set(_TABLES) - {"description"}
    if unknown:
        raise fail(f"unknown tables {sorted(unknown)}; a scenario has {sorted(_TABLES)}")
    for table, keys in _TABLES.items():
        if not isinstance(doc.get(table, {}), dict):
            raise fail(f"[{table}] must be a table")
        extra = set(doc.get(table, {})) - keys if keys is not None else set()
        if extra:
            raise fail(f"unknown keys {sorted(extra)} in [{table}]; allowed: {sorted(keys)}")
    data, tok, model = doc.get("data", {}), doc.get("tokenizer", {}), doc.get("model", {})

    if ("dataset" in data) == ("path" in data):
        raise fail("[data] needs exactly one of dataset (a registered name) or path (a text file)")
    path = None
    if "dataset" in data:
        try:
            get_dataset(str(data["dataset"]))
        except DatasetError as err:
            raise fail(str(err)) from None
    if "path" in data:
        path = Path(str(data["path"])).expanduser()
        path = path if path.is_absolute() else folder / path
        if not path.is_file():
            raise fail(f"the text file {path} does not exist")
    documents = data.get("documents", "lines")
    if documents not in DOCUMENTS:
        raise fail(f"documents must be one of {DOCUMENTS}, got {documents!r}")
    val_fraction = data.get("val_fraction", 0.1)
    if not isinstance(val_fraction, float) or not 0 < val_fraction < 1:
        raise fail(f"val_fraction must be a number between 0 and 1, got {val_fraction!r}")
    chunk_chars = data.get("chunk_chars", 0)
    if documents == "chunks" and not (isinstance(chunk_chars, int) and chunk_chars > 0):
        raise fail(f"chunks need chunk_chars, a positive integer, got {chunk_chars!r}")
    kind = tok.get("kind", "chars")
    if kind not in TOKENIZERS:
        raise fail(f"tokenizer kind must be one of {TOKENIZERS}, got {kind!r}")
    if (kind == "bpe") != ("vocab_size" in tok):
        raise fail("[tokenizer] vocab_size goes with kind = \"bpe\", and only with it")
    if kind == "bpe" and not (isinstance(tok["vocab_size"], int) and tok["vocab_size"] > 257):
        raise fail(f"a BPE vocab_size must be an integer above 257 (256 bytes and BOS), got "
                   f"{tok['vocab_size']!r}")
    try:
        config = GPTConfig(**model)  # checks the sizes; vocab_size comes from the tokenizer
    except (TypeError, ConfigError) as err:
        raise fail(f"[model]: {err}") from None
    trailing_bos = data.get("trailing_bos", True)
    if documents == "chunks" and chunk_chars + 1 + trailing_bos > config.block_size + 1:
        raise fail(f"a chunk of {chunk_chars} characters with BOS does not fit block_size "
                   f"{config.block_size}")
    return Scenario(
        name=name, description=str(doc.get("description", "")), dataset=data.get("dataset"),
        path=path, documents=documents, val_fraction=val_fraction, chunk_chars=chunk_chars,
        trailing_bos=bool(trailing_bos), tokenizer=kind, vocab_size=tok.get("vocab_size"),
        model=dict(model), train=dict(doc.get("train", {})), sample=dict(doc.get("sample", {})))


# ---------------------------------------------------------------------------------------------
# the prepared data

@dataclass
class ScenarioData:
    """A scenario's text, tokenized and split: documents (lines, chunks) or id streams."""

    scenario: Scenario
    tokenizer: Tokenizer
    config: GPTConfig
    train_docs: EncodedDocs | None = None
    val_docs: EncodedDocs | None = None
    train_ids: np.ndarray | None = None
    val_ids: np.ndarray | None = None

    @property
    def token_bytes(self) -> np.ndarray:
        """(vocab,) UTF-8 length of each token's text (0 for BOS): for bits per byte."""
        return token_byte_lengths(self.tokenizer)


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """(vocab,) number of UTF-8 bytes each token id stands for (0 for special tokens)."""
    lengths = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    lengths[: len(tokenizer.token_bytes)] = [len(b) for b in tokenizer.token_bytes]
    return lengths


def build_tokenizer(scenario: Scenario, text: str, train_text: str) -> Tokenizer:
    """The scenario's tokenizer. "chars" takes every character of the whole text (so that the
    held-out part has no unknown one); the others learn from the training part only."""
    if scenario.tokenizer == "characters":
        return CharacterTokenizer.train(train_text)
    if scenario.tokenizer == "bpe":
        return train_bpe(train_text, scenario.vocab_size)
    if scenario.documents == "lines":
        return CharTokenizer.from_docs(lines_of(text))
    return CharTokenizer(text)


def lines_of(text: str) -> list[str]:
    """The non-empty lines of a text, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def encode_docs(docs: list[list[int]], block_size: int) -> EncodedDocs:
    """Token-id documents, each cut to block_size + 1 ids, padded into EncodedDocs."""
    ids = np.zeros((len(docs), block_size + 1), dtype=np.intp)
    lengths = np.zeros(len(docs), dtype=np.intp)
    for i, doc in enumerate(docs):
        doc = doc[: block_size + 1]
        ids[i, : len(doc)] = doc
        lengths[i] = len(doc) - 1
    return EncodedDocs(ids, lengths)


def prepare(scenario: Scenario, text: str | None = None) -> ScenarioData:
    """Tokenize and split the scenario's text (read from its source unless given)."""
    text = scenario.text() if text is None else text
    if not text.strip():
        raise ScenarioError(f"scenario {scenario.name!r}: the text is empty")
    cut = int(len(text) * (1 - scenario.val_fraction))
    if scenario.documents == "lines":
        train, val = split_docs(lines_of(text), scenario.val_fraction)
        tok = build_tokenizer(scenario, text, "\n".join(train))
    else:
        tok = build_tokenizer(scenario, text, text[:cut])
    config = GPTConfig(**scenario.model, vocab_size=tok.vocab_size)
    data = ScenarioData(scenario, tok, config)
    bos, block = tok.bos, config.block_size
    if scenario.documents == "lines":
        data.train_docs = encode_docs([[bos, *tok.encode(d), bos] for d in train], block)
        data.val_docs = encode_docs([[bos, *tok.encode(d), bos] for d in val], block)
        return data
    parts = text[:cut], text[cut:]
    if scenario.documents == "chunks":
        n, tail = scenario.chunk_chars, [bos] if scenario.trailing_bos else []
        docs = [[[bos, *tok.encode(part[i : i + n]), *tail] for i in range(0, len(part), n)]
                for part in parts]
        data.train_docs, data.val_docs = (encode_docs(d, block) for d in docs)
        return data
    data.train_ids, data.val_ids = (np.asarray(tok.encode(p), dtype=np.int64) for p in parts)
    if min(len(data.train_ids), len(data.val_ids)) <= block:
        raise ScenarioError(f"scenario {scenario.name!r}: the text is too short for windows of "
                            f"{block + 1} tokens in both its training and validation parts")
    return data
