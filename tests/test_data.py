"""Datasets: found via MICROGPT_DATA, downloaded and verified, bad files and names rejected."""
import functools
import http.server
import threading
import time
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


# --- downloads that go wrong: every failure is a DatasetError that says what to do, in bounded time

@pytest.fixture
def custom_server():
    """Serve one GET handler (a function of the request handler) on 127.0.0.1; yields its URL."""
    servers = []

    def start(respond):
        handler = type("Handler", (http.server.BaseHTTPRequestHandler,), {
            "do_GET": lambda self: respond(self), "log_message": lambda self, *a: None})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/names.txt"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def trickle(handler):
    """A server that announces 1000 bytes and then sends one every 0.2 s."""
    handler.send_response(200)
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    try:
        for _ in range(1000):
            handler.wfile.write(b"a")
            handler.wfile.flush()
            time.sleep(0.2)
    except OSError:  # the client gave up
        pass


def test_a_trickling_download_stops_at_the_overall_deadline(monkeypatch, tmp_path, custom_server):
    monkeypatch.delenv("MICROGPT_DATA", raising=False)
    url = custom_server(trickle)
    start = time.monotonic()
    with pytest.raises(DatasetError, match="took more than 1 s"):
        dataset_path("names", cache_dir=tmp_path, url=url, timeout=1.0)
    assert time.monotonic() - start < 10  # every read succeeds, yet the whole download is bounded
    assert list(tmp_path.iterdir()) == []


def oversized(length_header: bool):
    def respond(handler):
        body = b"x" * 5000
        handler.send_response(200)
        if length_header:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            handler.wfile.write(body)
        except OSError:
            pass
    return respond


@pytest.mark.parametrize("length_header, message", [(True, "announces 5,000 bytes"),
                                                    (False, "sent more than 1,000 bytes")])
def test_an_oversized_download_is_refused_before_the_checksum(monkeypatch, tmp_path, custom_server,
                                                             length_header, message):
    monkeypatch.delenv("MICROGPT_DATA", raising=False)
    with pytest.raises(DatasetError, match=message):
        dataset_path("names", cache_dir=tmp_path, url=custom_server(oversized(length_header)),
                     max_bytes=1000, timeout=5.0)
    assert list(tmp_path.iterdir()) == []


def test_a_connection_cut_short_is_a_dataset_error(monkeypatch, tmp_path, custom_server):
    def cut(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        handler.wfile.write(b"abc")
        handler.close_connection = True

    monkeypatch.delenv("MICROGPT_DATA", raising=False)
    with pytest.raises(DatasetError, match="nothing was saved"):
        dataset_path("names", cache_dir=tmp_path, url=custom_server(cut), timeout=5.0)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_server_is_a_dataset_error(monkeypatch, tmp_path):
    monkeypatch.delenv("MICROGPT_DATA", raising=False)
    with pytest.raises(DatasetError, match="MICROGPT_DATA"):
        dataset_path("names", cache_dir=tmp_path, url="http://127.0.0.1:9/names.txt", timeout=5.0)


def test_an_unwritable_cache_is_a_dataset_error(monkeypatch, tmp_path):
    monkeypatch.delenv("MICROGPT_DATA", raising=False)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(DatasetError, match="cannot write names into the cache folder"):
        dataset_path("names", cache_dir=tmp_path / "a_file" / "cache", url="http://127.0.0.1:9/")


def test_microgpt_data_pointing_at_a_missing_folder_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MICROGPT_DATA", str(tmp_path / "missing"))
    with pytest.raises(DatasetError, match="not a folder"):
        dataset_path("names", cache_dir=tmp_path / "cache")
