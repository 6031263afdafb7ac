"""Datasets: found via MICROGPT_DATA, downloaded and verified, bad files and names rejected."""
import functools
import http.server
import threading
from pathlib import Path

import pytest

from microgpt_lib import data
from microgpt_lib.data import DatasetError, dataset_path, get_dataset, load_docs

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def http_folder(tmp_path):
    """Serve a folder on 127.0.0.1; yields (folder, base_url)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def names_bytes():
    return dataset_path("names").read_bytes()


def test_found_via_microgpt_data(monkeypatch, tmp_path, names_bytes):
    (tmp_path / "names.txt").write_bytes(names_bytes)
    monkeypatch.setenv("MICROGPT_DATA", str(tmp_path))
    assert dataset_path("names", cache_dir=tmp_path / "cache") == tmp_path / "names.txt"
    assert not (tmp_path / "cache").exists()


def test_names_has_32033_documents():
    docs = load_docs("names")
    assert len(docs) == 32033
    assert all(d == d.strip() and d for d in docs)


def test_downloaded_from_local_server_and_verified(monkeypatch, tmp_path, http_folder, names_bytes):
    folder, base = http_folder
    (folder / "names.txt").write_bytes(names_bytes)
    monkeypatch.delenv("MICROGPT_DATA", raising=False)
    cache = tmp_path / "cache"
    path = dataset_path("names", cache_dir=cache, url=f"{base}/names.txt")
    assert path == cache / "names.txt"
    assert data.sha256_of(path) == get_dataset("names").sha256
    assert sorted(p.name for p in cache.iterdir()) == ["names.txt"]
    # Second call uses the cache: the server no longer has the file.
    (folder / "names.txt").unlink()
    assert dataset_path("names", cache_dir=cache, url=f"{base}/names.txt") == path


def test_checksum_mismatch_is_rejected_and_leaves_nothing(monkeypatch, tmp_path, http_folder, names_bytes):
    folder, base = http_folder
    (folder / "names.txt").write_bytes(names_bytes + b"\nintruder")
    monkeypatch.delenv("MICROGPT_DATA", raising=False)
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="sha256"):
        dataset_path("names", cache_dir=cache, url=f"{base}/names.txt")
    assert list(cache.iterdir()) == []


def test_failed_download_says_what_to_do_and_leaves_nothing(monkeypatch, tmp_path, http_folder):
    _, base = http_folder
    monkeypatch.delenv("MICROGPT_DATA", raising=False)
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="MICROGPT_DATA"):
        dataset_path("names", cache_dir=cache, url=f"{base}/missing.txt")
    assert list(cache.iterdir()) == []


def test_wrong_file_in_microgpt_data_is_rejected(monkeypatch, tmp_path):
    (tmp_path / "names.txt").write_text("not\nthe\nnames\n")
    monkeypatch.setenv("MICROGPT_DATA", str(tmp_path))
    with pytest.raises(DatasetError, match="not the expected names file"):
        dataset_path("names", cache_dir=tmp_path / "cache")


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DatasetError, match="alice, names, tinyshakespeare"):
        dataset_path("wikipedia")


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the project")
@pytest.mark.parametrize("name", ["names", "tinyshakespeare", "alice"])
def test_registry_checksums_match_the_shared_copies(name):
    dataset = get_dataset(name)
    assert data.sha256_of(SHARED / dataset.file) == dataset.sha256
