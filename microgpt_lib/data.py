"""Datasets: find, download and verify the course's text files (names, tinyshakespeare, alice).

Look-up order: the folder named by `MICROGPT_DATA` (which must exist when the variable is set),
then the repository's `data/` cache, then a download from the canonical public source, with an
overall deadline and a size limit. Every file is checked against its sha256, and a download
is written to a temporary file and renamed only once verified, so a failure leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import random
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from microgpt_lib.tokenizers import CharTokenizer

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
REGISTRY = DATA_DIR / "datasets.toml"
ENV_VAR = "MICROGPT_DATA"
MAX_DOWNLOAD_BYTES = 32 << 20  # the course's datasets are 1.1 MB at most


class DatasetError(RuntimeError):
    """A dataset that could not be found, downloaded or verified."""


@dataclass(frozen=True)
class Dataset:
    """One registry entry: file name, canonical URL, expected sha256 and a one-line description."""

    name: str
    file: str
    url: str
    sha256: str
    description: str


def registry() -> dict[str, Dataset]:
    """All datasets the course knows, by name."""
    entries = tomllib.loads(REGISTRY.read_text())
    return {name: Dataset(name=name, **fields) for name, fields in entries.items()}


def get_dataset(name: str) -> Dataset:
    """The registry entry for `name`, or a DatasetError that lists the known names."""
    known = registry()
    if name not in known:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(known))}")
    return known[name]


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, dataset: Dataset) -> Path:
    actual = sha256_of(path)
    if actual != dataset.sha256:
        raise DatasetError(
            f"{path} is not the expected {dataset.name} file (sha256 {actual}, expected "
            f"{dataset.sha256}). Delete or replace it with the file from {dataset.url}"
        )
    return path


def _download(dataset: Dataset, dest: Path, url: str, timeout: float, max_bytes: int) -> Path:
    """Download `url` into `dest` (verified, atomically) within `timeout` seconds overall."""
    deadline = time.monotonic() + timeout
    by_hand = (f"Set {ENV_VAR} to a folder holding {dataset.file}, or place the file by hand "
               f"in {dest.parent}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dataset.file}.", suffix=".part",
                                        dir=dest.parent)
    except OSError as err:
        raise DatasetError(
            f"cannot write {dataset.name} into the cache folder {dest.parent} ({err.strerror}). "
            f"Set {ENV_VAR} to a writable folder, or one that holds {dataset.file}"
        ) from err
    tmp = Path(tmp_name)
    try:
        # one read waits at most `timeout`; the deadline is checked between reads
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            announced = int(response.headers.get("Content-Length") or 0)
            if announced > max_bytes:
                raise DatasetError(f"{url} announces {announced:,} bytes, more than the "
                                   f"{max_bytes:,} expected of {dataset.name}; nothing was "
                                   f"saved. {by_hand}")
            size = 0
            while block := response.read1(1 << 16):
                size += len(block)
                if size > max_bytes:
                    raise DatasetError(f"{url} sent more than {max_bytes:,} bytes, more than "
                                       f"{dataset.name} holds; nothing was saved. {by_hand}")
                if time.monotonic() > deadline:
                    raise DatasetError(f"downloading {dataset.name} from {url} took more than "
                                       f"{timeout:g} s; nothing was saved. Try again later. "
                                       f"{by_hand}")
                out.write(block)
        actual = sha256_of(tmp)
        if actual != dataset.sha256:
            raise DatasetError(
                f"downloaded {dataset.name} from {url} but its sha256 is {actual}, expected "
                f"{dataset.sha256}; nothing was saved. Place the right file in "
                f"${ENV_VAR} or {dest.parent}"
            )
        os.replace(tmp, dest)
        return dest
    except DatasetError:
        raise
    except (OSError, ValueError, http.client.HTTPException) as err:
        raise DatasetError(
            f"could not download {dataset.name} from {url} ({err or type(err).__name__}); "
            f"nothing was saved. {by_hand}"
        ) from err
    finally:
        tmp.unlink(missing_ok=True)


def dataset_path(
    name: str, *, cache_dir: Path | None = None, url: str | None = None, timeout: float = 120.0,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> Path:
    """Path of a verified local copy of dataset `name`, downloading it into the cache if needed.

    A download must finish within `timeout` seconds overall and send at most `max_bytes`;
    every failure is a DatasetError that says what to do.
    """
    dataset = get_dataset(name)
    env_dir = os.environ.get(ENV_VAR)
    if env_dir:
        if not Path(env_dir).is_dir():
            raise DatasetError(f"{ENV_VAR} is set to {env_dir!r}, which is not a folder. Point it "
                               f"at the folder that holds the datasets, or unset it")
        if (Path(env_dir) / dataset.file).is_file():
            return _verified(Path(env_dir) / dataset.file, dataset)
    cached = Path(cache_dir or DATA_DIR) / dataset.file
    if cached.is_file():
        return _verified(cached, dataset)
    return _download(dataset, cached, url or dataset.url, timeout, max_bytes)


def load_text(name: str) -> str:
    """The whole text of dataset `name` (UTF-8)."""
    return dataset_path(name).read_text(encoding="utf-8")


def load_docs(name: str = "names") -> list[str]:
    """The dataset's non-empty lines, stripped: for names, one document per name."""
    return [line.strip() for line in load_text(name).splitlines() if line.strip()]


def split_docs(docs: Sequence[str], val_fraction: float = 0.1, seed: int = 1337
               ) -> tuple[list[str], list[str]]:
    """A fixed random split (train, val): val_fraction of the docs, chosen with `seed`."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(docs) * val_fraction))
    return [docs[i] for i in order[n_val:]], [docs[i] for i in order[:n_val]]


def names_corpus(seed: int = 42) -> tuple[list[str], CharTokenizer]:
    """names.txt shuffled as in Karpathy's script, and its tokenizer."""
    docs = load_docs("names")
    random.Random(seed).shuffle(docs)
    return docs, CharTokenizer.from_docs(docs)
