"""`--dataset=amazon-books` as RecBole users expect: download (local server only), 5-core, DIEN view.

A local HTTP server on 127.0.0.1 serves a small zip in RecBole's exact Amazon_Books layout; RecBole's
URL table is pointed at it. Nothing here reaches any other address.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from recbole_iacn.data import download
from recbole_iacn.data.prepare import resolve_ctr_dataset
from recbole_iacn.errors import DataFormatError, DatasetNotFoundError

NAME = "amazon-books"
STALL_SECONDS = 3
ARCHIVE = "Amazon_Books.zip"
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
ITEM_HEADER = ("item_id:token\tsales_type:token\tsales_rank:float\tcategories:token_seq\ttitle:token\t"
               "price:float\tbrand:token")
# RecBole's Amazon `categories`: str(set) of every entry of every path without the braces, pandas-quoted
# when an entry holds a quote; `et(` is str(set())[1:-1] (an item without categories).
CATEGORIES = [
    "'Books', 'Literature & Fiction', 'Thrillers', 'Mystery, Thriller & Suspense'",
    "'Books', 'Literature & Fiction', 'Romance'",
    "\"'Books', \"\"Children's Books\"\", 'Animals'\"",
    "et(",
]


def amazon_books_zip(compression=zipfile.ZIP_DEFLATED) -> bytes:
    """Amazon_Books.zip as RecBole serves it (.inter and .item at the top level), tiny and deterministic.

    24 users rate 5-9 of 12 items (all in the 5-core); user A_SHORT has 2 ratings and item
    0000000099 one: the 5-core drops both. Items 0000000010-11 are missing from the .item file.
    """
    rows = []
    for u in range(24):
        for j in range(5 + u % 5):
            item = (u + 2 * j) % 12
            rows.append(f"A{u:03d}XYZ\t{item:010d}\t{float(1 + (u + j) % 5)}\t{1262304000 + 86400 * (7 * u + j)}")
    rows += ["A_SHORT\t0000000001\t5.0\t1262304000", "A_SHORT\t0000000099\t4.0\t1262390400"]
    items = [f"{i:010d}\tBooks\t{1000 + i}.0\t{CATEGORIES[i % 4]}\t\"A \"\"quoted\"\" title {i}\"\t9.99\tAcme"
             for i in range(10)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as handle:
        handle.writestr("Amazon_Books.inter", INTER_HEADER + "\n" + "\n".join(rows) + "\n")
        handle.writestr("Amazon_Books.item", ITEM_HEADER + "\n" + "\n".join(items) + "\n")
    return buffer.getvalue()


class Handler(http.server.BaseHTTPRequestHandler):
    # path -> (body, mode): mode "ok", "cut" (stop half way through the body), "no-length" (no Content-Length:
    # the body ends when the connection closes) or "stall" (send half the body, then wait STALL_SECONDS)
    routes: dict = {}

    def log_message(self, *args):  # keep the test output clean
        pass

    def _headers(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        if self.routes[self.path][1] != "no-length":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def do_HEAD(self):
        if self.path not in self.routes:
            self.send_error(404)
            return
        self._headers(self.routes[self.path][0])

    def do_GET(self):
        if self.path not in self.routes:
            self.send_error(404)
            return
        body, mode = self.routes[self.path]
        self._headers(body)
        if mode in ("cut", "stall"):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if mode == "stall":
                time.sleep(STALL_SECONDS)
            self.close_connection = True
            return
        self.wfile.write(body)
        if mode == "no-length":
            self.close_connection = True


@contextlib.contextmanager
def serve(monkeypatch):
    """A 127.0.0.1 server; RecBole's URL table points amazon-books (and one unserved name) at it."""
    routes = {}
    handler = type("RouteHandler", (Handler,), {"routes": routes})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True  # a stalled answer does not hold the shutdown
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    table = {NAME: f"{base}/{ARCHIVE}", "amazon-gone": f"{base}/Amazon_Gone.zip"}
    monkeypatch.setattr(download, "url_table", lambda: dict(table))
    routes[f"/{ARCHIVE}"] = (amazon_books_zip(), "ok")
    try:
        yield routes
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    with serve(monkeypatch) as routes:
        yield routes


def no_terminal(monkeypatch):
    monkeypatch.setattr(download, "stdin_is_terminal", lambda: False)
    monkeypatch.setattr("builtins.input", lambda prompt="": pytest.fail("asked a question with no terminal"))


def terminal_answering(monkeypatch, answer):
    prompts = []
    monkeypatch.setattr(download, "stdin_is_terminal", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt="": prompts.append(prompt) or answer)
    return prompts


def run_config(root, **overrides):
    """The settings resolve_ctr_dataset reads, as properties/overall.yaml sets them."""
    return {"dataset": NAME, "data_path": str(Path(root) / NAME), "ctr_protocol": "auto", "ctr_seed": 2020,
            "ctr_max_history": "auto", "ctr_neg_sampling": "popularity", "download": False,
            "show_progress": False, **overrides}


def leftovers(root):
    """Everything under the data root (relative paths)."""
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


def check_built(root):
    view = Path(root) / NAME / "ctr"
    info = json.loads((view / f"{NAME}.build.json").read_text(encoding="utf-8"))
    assert info["parameters"]["protocol"] == "dien" and info["parameters"]["max_history"] == 100
    counts = info["counts"]
    assert counts["ratings_in_source"] == sum(5 + u % 5 for u in range(24)) + 2
    assert counts["users_dropped_by_k_core"] == 1 and counts["items_dropped_by_k_core"] == 1
    assert counts["users"] == 24 and counts["samples"] == 48
    assert counts["items_missing_from_item_file"] == 2 and counts["items_without_category"] == 2
    assert info["source"]["category_field"] == "categories"
    cats = dict(line.split("\t") for line in (view / f"{NAME}.item").read_text(encoding="utf-8").splitlines()[1:])
    # the rarest entry of each item: the leaf of its paths
    assert cats["0000000000"] == "Mystery,_Thriller_&_Suspense"  # ties with Thrillers: first by name
    assert cats["0000000001"] == "Romance" and cats["0000000002"] == "Animals"
    assert cats["0000000003"] == "default_cat" and cats["0000000010"] == "default_cat"
    assert not any(p.name.startswith(".") for p in Path(root).iterdir())


def test_a_name_recbole_does_not_know_is_left_alone(tmp_path, server):
    assert download.fetch_known_dataset("not-a-recbole-dataset", tmp_path / "x") is False
    assert leftovers(tmp_path) == []


def test_no_terminal_and_no_flag_says_what_how_big_and_the_flag(tmp_path, server, monkeypatch):
    no_terminal(monkeypatch)
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_ctr_dataset(run_config(tmp_path))
    message = str(info.value)
    size = download.describe_size(len(amazon_books_zip()))
    assert f"/{ARCHIVE}" in message and size in message and "--download=true" in message
    assert leftovers(tmp_path) == []
    with pytest.raises(DatasetNotFoundError, match="size unknown"):  # the server has no such file
        download.fetch_known_dataset("amazon-gone", tmp_path / "amazon-gone")


def test_answer_n_downloads_nothing(tmp_path, server, monkeypatch):
    prompts = terminal_answering(monkeypatch, "N")
    with pytest.raises(DatasetNotFoundError, match="not downloaded"):
        resolve_ctr_dataset(run_config(tmp_path))
    assert len(prompts) == 1 and "(y/N)" in prompts[0] and ARCHIVE in prompts[0]
    assert leftovers(tmp_path) == []


def test_answer_y_downloads_and_builds_the_dien_view(tmp_path, server, monkeypatch):
    prompts = terminal_answering(monkeypatch, "y")
    config = run_config(tmp_path)
    view = resolve_ctr_dataset(config)
    assert len(prompts) == 1 and config["data_path"] == view
    assert sorted(p.name for p in (tmp_path / NAME).iterdir()) == [f"{NAME}.inter", f"{NAME}.item", "ctr"]
    check_built(tmp_path)
    # cached: a second run neither asks nor downloads
    server.clear()
    assert resolve_ctr_dataset(run_config(tmp_path)) == view and len(prompts) == 1


def test_download_true_asks_nothing(tmp_path, server, monkeypatch):
    no_terminal(monkeypatch)
    resolve_ctr_dataset(run_config(tmp_path, download=True))
    check_built(tmp_path)


def test_a_download_cut_off_half_way_leaves_nothing_and_the_rerun_starts_clean(tmp_path, server, monkeypatch):
    no_terminal(monkeypatch)
    body = server[f"/{ARCHIVE}"][0]
    server[f"/{ARCHIVE}"] = (body, "cut")
    with pytest.raises(DatasetNotFoundError, match=rf"stopped after {len(body) // 2} of {len(body)} bytes"):
        resolve_ctr_dataset(run_config(tmp_path, download=True))
    assert leftovers(tmp_path) == []
    # a process killed mid-download leaves its hidden staging folder: never taken for data, removed; that of
    # a download still running (here: the parent process) is left alone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".{NAME}.download-{socket.gethostname()}-{dead.pid}-killed"
    running = tmp_path / f".{NAME}.download-{socket.gethostname()}-{os.getppid()}-running"
    for folder in (stale, running):
        folder.mkdir()
        (folder / ARCHIVE).write_bytes(body[:100])
    server[f"/{ARCHIVE}"] = (body, "ok")
    resolve_ctr_dataset(run_config(tmp_path, download=True))
    assert not stale.exists() and running.exists()
    shutil.rmtree(running)
    check_built(tmp_path)


@pytest.mark.parametrize("damage", ["crc", "deflate", "garbage"])
def test_a_corrupt_zip_is_a_clear_error_and_leaves_nothing(tmp_path, server, monkeypatch, damage):
    no_terminal(monkeypatch)
    offset = 30 + len("Amazon_Books.inter") + 10  # inside the first member's data
    if damage == "crc":  # stored member: the bytes read fine, the CRC does not match
        body = bytearray(amazon_books_zip(zipfile.ZIP_STORED))
        body[offset] ^= 0xFF
        expected = r"corrupt \(member 'Amazon_Books.inter' fails its CRC check\)"
    elif damage == "deflate":  # compressed member: the data no longer decompresses
        body = bytearray(amazon_books_zip())
        body[offset] ^= 0xFF
        expected = "not a readable zip archive"
    else:
        body = bytearray(b"<html>Access denied</html>")
        expected = "not a readable zip"
    server[f"/{ARCHIVE}"] = (bytes(body), "ok")
    with pytest.raises(DatasetNotFoundError, match=expected):
        resolve_ctr_dataset(run_config(tmp_path, download=True))
    assert leftovers(tmp_path) == []


def test_command_line_no_terminal_exits_2_with_one_paragraph(tmp_path, server, monkeypatch, capsys):
    from recbole_iacn.cli import main

    no_terminal(monkeypatch)
    status = main(["--model=DIN", f"--dataset={NAME}", f"--data_path={tmp_path}", "--state=WARNING",
                   "--show_progress=false", f"--checkpoint_dir={tmp_path / 'saved'}"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and "--download=true" in err and "Traceback" not in err
    assert err.strip().count("\n") == 0


@pytest.mark.parametrize("name", ["amazon-books-18", "amazon-all-beauty-23", "amazon-m2"])
def test_amazon_names_that_are_not_the_2014_reviews_are_refused_before_any_download(tmp_path, monkeypatch, name):
    """2018/2023: their layout is unchecked (RecSysDatasets converts the 2014 files only); amazon-m2 holds
    sessions, not reviews. Refused with exit status 2 and the way out, before anything is fetched or written,
    even with --download=true."""
    monkeypatch.setattr(download, "fetch_known_dataset", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.raises(DataFormatError) as info:
        resolve_ctr_dataset(run_config(tmp_path, dataset=name, data_path=str(tmp_path / name), download=True))
    assert info.value.exit_code == 2 and "python -m recbole_iacn.data recbole" in str(info.value)
    assert leftovers(tmp_path) == []
