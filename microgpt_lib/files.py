"""Writing files so that nothing is lost: atomic replacement, and no silent overwrite (core).

Every output the course writes (records, benchmark results, checkpoints, downloads) goes through
`atomic_write_bytes`: the data is written to a temporary file in the destination's folder,
flushed to disk, then renamed over the destination in one step, so a reader (or a run
interrupted half-way) sees either the old file or the new one, never a truncated mix.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes, overwrite: bool = True) -> Path:
    """Write `data` to `path` atomically; with overwrite=False, FileExistsError if it exists."""
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists; choose another path or allow overwriting it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, overwrite: bool = True) -> Path:
    """`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite)


def atomic_write_json(path: str | Path, obj: Any, overwrite: bool = True) -> Path:
    """Strict JSON (NaN and infinity rejected, so the file stays valid JSON), written atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=False) + "\n", overwrite)
