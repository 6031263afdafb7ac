"""Scenario files: the repository's scenarios load and prepare; every bad file gets a clear error."""
import numpy as np
import pytest

from microgpt_lib.scenarios import (ScenarioError, available_scenarios, load_scenario, prepare)
from microgpt_lib.train.text_run import RunSettings

GOOD = """
description = "my text"
[data]
path = "story.txt"
documents = "chunks"
chunk_chars = 5
[model]
n_embd = 8
n_head = 2
n_layer = 1
block_size = 8
[train]
steps = 3
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "story.txt").write_text("Once upon a time there was a tiny model.\n" * 4)
    return tmp_path


def write(folder, text, name="mine.toml"):
    path = folder / name
    path.write_text(text)
    return path


def test_the_repository_scenarios_load_and_their_train_tables_are_valid():
    names = available_scenarios()
    assert {"names", "alice_chunks", "alice_continuous", "shakespeare_bpe"} <= set(names)
    for name in names:
        scenario = load_scenario(name)
        RunSettings.from_table(scenario.train)
        assert scenario.description


def test_names_scenario_is_karpathys_vocabulary_and_model():
    data = prepare(load_scenario("names"))
    assert data.config.num_params == 4192 and data.tokenizer.bos == 26
    assert len(data.train_docs) + len(data.val_docs) == 32033


def test_a_plain_text_path_works_without_a_registry_entry(folder):
    scenario = load_scenario(write(folder, GOOD))
    data = prepare(scenario)
    bos = data.tokenizer.bos
    # chunks of 5 characters, each [BOS] + chunk + [BOS]
    first = data.train_docs.ids[0, : data.train_docs.lengths[0] + 1].tolist()
    assert first == [bos, *data.tokenizer.encode("Once "), bos]
    assert data.val_docs is not None and len(data.val_docs) > 0


def test_continuous_text_has_no_bos(folder):
    data = prepare(load_scenario(write(folder, GOOD.replace('"chunks"', '"continuous"'))))
    assert data.train_docs is None and data.tokenizer.bos not in data.train_ids
    assert not data.scenario.bos_first
    text = "".join(data.tokenizer.decode(ids.tolist()) for ids in (data.train_ids, data.val_ids))
    assert text == (folder / "story.txt").read_text()


@pytest.mark.parametrize("change, message", [
    (('"chunks"', '"paragraphs"'), "documents must be one of"),
    (("story.txt", "missing.txt"), "does not exist"),
    (("n_head = 2", "n_head = 3"), "divisible by n_head"),
    (("chunk_chars = 5", "chunk_chars = 8"), "does not fit block_size"),
    (("[train]", "[trian]"), "unknown tables"),
    (("chunk_chars = 5", "chunk_chars = 5\ncolour = 1"), r"unknown keys \['colour'\] in \[data\]"),
    (('path = "story.txt"', ""), "exactly one of dataset"),
    (('path = "story.txt"', 'dataset = "wikipedia"'), "unknown dataset 'wikipedia'"),
    (("[model]", "[model\n"), "not valid TOML"),
])
def test_a_bad_scenario_is_a_one_line_error(folder, change, message):
    with pytest.raises(ScenarioError, match=message) as err:
        load_scenario(write(folder, GOOD.replace(*change)))
    assert "\n" not in str(err.value).strip()


def test_unknown_scenario_lists_the_known_ones():
    with pytest.raises(ScenarioError, match="known scenarios: .*names"):
        load_scenario("no_such_scenario")
    with pytest.raises(ScenarioError, match="no scenario file"):
        load_scenario("nowhere/at_all.toml")


def test_bad_train_settings_are_rejected():
    with pytest.raises(ValueError, match="unknown \\[train\\] settings"):
        RunSettings.from_table({"stepz": 3})
    with pytest.raises(ValueError, match="not a multiple of grad_accum"):
        RunSettings.from_table({"batch_size": 6}, grad_accum=4)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        RunSettings.from_table({"steps": 0})
    assert RunSettings.from_table({"steps": 3}, steps=None, grad_accum=2).grad_accum == 2


def test_bits_per_byte_table_counts_utf8_bytes(folder):
    (folder / "story.txt").write_text("caf\u00e9 na\u00efve " * 40)
    data = prepare(load_scenario(write(folder, GOOD)))
    sizes = {data.tokenizer.decode([i]): n for i, n in enumerate(data.token_bytes) if n}
    assert sizes["\u00e9"] == 2 and sizes["c"] == 1 and data.token_bytes[data.tokenizer.bos] == 0
    assert np.all(data.token_bytes[: data.tokenizer.bos] > 0)


@pytest.mark.parametrize("kind, extra", [("characters", ""), ("bpe", "vocab_size = 300")])
def test_byte_level_tokenizers_plug_in(folder, kind, extra):
    (folder / "story.txt").write_text("".join(f"Day {i}: the cat counted {i * 7 % 13} mice "
                                              f"and {i % 5} birds.\n" for i in range(300)))
    text = GOOD.replace("[model]", f'[tokenizer]\nkind = "{kind}"\n{extra}\n[model]')
    data = prepare(load_scenario(write(folder, text.replace('"chunks"', '"continuous"'))))
    tok = data.tokenizer
    assert data.config.vocab_size == tok.vocab_size and tok.bos == tok.vocab_size - 1
    assert tok.decode(tok.encode("Once upon a \u00e9t\u00e9")) == "Once upon a \u00e9t\u00e9"
    # bits per byte count the bytes each token stands for
    ids = data.val_ids
    assert data.token_bytes[ids].sum() == len(tok.decode(ids.tolist()).encode())


@pytest.mark.parametrize("tokenizer, message", [
    ('kind = "bpe"', "vocab_size goes with"),
    ('kind = "bpe"\nvocab_size = 100', "above 257"),
    ('kind = "chars"\nvocab_size = 300', "vocab_size goes with"),
    ('kind = "words"', "tokenizer kind must be one of"),
])
def test_bad_tokenizer_tables_are_rejected(folder, tokenizer, message):
    text = GOOD.replace("[model]", f"[tokenizer]\n{tokenizer}\n[model]")
    with pytest.raises(ScenarioError, match=message):
        load_scenario(write(folder, text))
