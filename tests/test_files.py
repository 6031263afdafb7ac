"""Atomic writes: the destination holds the old or the new content, never a mix or a stray temp."""
import json

import pytest

from microgpt_lib.files import atomic_write_bytes, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_content_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]


def test_refuses_to_overwrite_when_asked_not_to(tmp_path):
    path = tmp_path / "record.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(FileExistsError, match="record.json exists"):
        atomic_write_json(path, {"a": 2}, overwrite=False)
    assert json.loads(path.read_text()) == {"a": 1}


def test_json_output_stays_valid_json(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "nan.json", {"loss": float("nan")})
    assert not any(tmp_path.iterdir())


def test_failed_write_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "keep.bin"
    atomic_write_bytes(path, b"old")

    def failing_fsync(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.fsync", failing_fsync)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bin"]
