"""What the course's command-line tools share (core): one-line errors, checked flags, safe outputs.

A bad flag is one line on stderr (`prog: error: ...`) and exit code 2, never a traceback or a
usage dump; flag values are checked by the argparse types below, before any work starts; an
output path is checked (and its folder created) before a long run, and an existing file is
replaced only when the user passes `--overwrite`.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import NoReturn

# exit codes: a usage error (bad flag, unusable output path), and a run stopped by Ctrl-C
USAGE_ERROR = 2
INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, `prog: error: message`, with exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def fail(prog: str, message: str, code: int) -> NoReturn:
    """Print `prog: message` on one line of stderr and exit with `code`."""
    print(f"{prog}: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(code)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _integer(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def count(text: str) -> int:
    """argparse type: an integer >= 1 (steps, samples)."""
    return _integer(text, 1)


def count_or_zero(text: str) -> int:
    """argparse type: an integer >= 0 (warm-up steps, optional samples)."""
    return _integer(text, 0)


def nonnegative(text: str) -> float:
    """argparse type: a finite number >= 0 (a learning rate, weight decay)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive(text: str) -> float:
    """argparse type: a finite number > 0 (a time budget in seconds)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def output_path(path: str | Path, overwrite: bool) -> Path:
    """The output file, checked before a long run: ValueError if it exists (unless `overwrite`),
    is a folder, or its folder cannot be created or written. Creates the folder."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} exists; pass --overwrite to replace it, or choose another path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the folder {path.parent} ({err.strerror})") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write into {path.parent}: permission denied")
    return path
