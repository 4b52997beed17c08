"""Download a dataset that RecBole knows by name, as RecBole does, without ever leaving half of it.

``--dataset=NAME`` with no files under ``data_path``: when RecBole's URL table
(``recbole/properties/dataset/url.yaml``) lists NAME, :func:`fetch_known_dataset` downloads its atomic
files (:func:`fetch_url`: RecBole's ``download_url`` needs a Content-Length and turns Ctrl-C into an
error) and unpacks them with RecBole's own helpers (``extract_zip``, ``rename_atomic_files``), after
RecBole's y/N question, or without one when ``download: true`` (``--download=true``). With no terminal to ask and no ``--download=true`` it stops with a
:class:`DatasetNotFoundError` naming the URL, the size and the flag.

Nothing half-done is ever left where a later run would take it for data: the archive is downloaded,
checked (size against the server's Content-Length, every member's CRC) and extracted in a hidden
temporary sibling folder ``ROOT/.NAME.download-HOST-PID-<random>``
(:func:`recbole_iacn.data.staging.new_staging`); only then are the atomic files moved into ``ROOT/NAME/``,
the ``.inter`` file last (its presence means the download is complete). Any failure or Ctrl-C removes the
temporary folder; one left by a killed process is removed by the next download
(:func:`recbole_iacn.data.staging.remove_stale_staging`), one of a download still running is left alone.
"""

from __future__ import annotations

import http.client
import importlib.util
import logging
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Optional

import yaml

from recbole_iacn.data.staging import DOWNLOAD, new_staging, remove_stale_staging
from recbole_iacn.errors import DatasetNotFoundError

#: RecBole's table of downloadable datasets, relative to the recbole package.
URL_TABLE = os.path.join("properties", "dataset", "url.yaml")
#: Seconds to wait for the server's answer to the size (HEAD) request, and for each read of the download.
HEAD_TIMEOUT = 15
#: Bytes read at a time while downloading.
DOWNLOAD_CHUNK = 1 << 20
ATOMIC_SUFFIXES = (".inter", ".item", ".user", ".kg", ".link", ".net")
#: The ``download`` setting's values that mean "download without asking".
YES_VALUES = (True, "true", "yes", "y", "1")


def _recbole_dir() -> Optional[Path]:
    """The installed recbole package folder, found without importing it (which imports torch)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def url_table() -> dict:
    """RecBole's ``url.yaml`` as ``{name: url}`` (empty when recbole or the file is missing)."""
    root = _recbole_dir()
    if root is None or not (root / URL_TABLE).is_file():
        return {}
    with open(root / URL_TABLE, "r", encoding="utf-8") as handle:
        table = yaml.safe_load(handle) or {}
    return {str(k): str(v) for k, v in table.items()} if isinstance(table, dict) else {}


def recbole_url(name: str) -> Optional[str]:
    """The URL RecBole downloads dataset ``name`` from, or None when RecBole does not know it."""
    return url_table().get(name)


def remote_size(url: str, timeout: float = HEAD_TIMEOUT) -> Optional[int]:
    """The archive's size in bytes from a HEAD request's Content-Length; None when unavailable."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            length = answer.headers.get("Content-Length")
    except (OSError, ValueError, urllib.error.URLError):
        return None
    try:
        return int(length) if length is not None else None
    except ValueError:
        return None


def describe_size(size: Optional[int]) -> str:
    """``1.23 GB`` / ``45.6 MB`` / ``789 bytes`` / ``size unknown``."""
    if size is None:
        return "size unknown"
    if size >= 1 << 30:
        return f"{size / (1 << 30):.2f} GB"
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MB"
    if size >= 1 << 10:
        return f"{size / (1 << 10):.1f} KB"
    return f"{size} bytes"


def stdin_is_terminal() -> bool:
    """Whether there is someone to ask (stdin is a TTY)."""
    stdin = sys.stdin
    try:
        return stdin is not None and stdin.isatty()
    except (AttributeError, ValueError):
        return False


def confirm(url: str, size: Optional[int]) -> bool:
    """RecBole's question (``recbole.utils.url.decide_download``): only ``y`` proceeds."""
    what = describe_size(size) if size is not None else "an archive of unknown size"
    answer = input(f"This will download {what} from {url}. Will you proceed? (y/N)\n")
    return answer.strip().lower() == "y"


def wants_download(value) -> bool:
    """Whether the ``download`` setting says to download without asking."""
    if isinstance(value, str):
        value = value.strip().lower()
    return value in YES_VALUES


def fetch_known_dataset(name: str, folder, download=None, logger=None) -> bool:
    """Download RecBole's atomic files of ``name`` into ``folder`` (``ROOT/NAME``).

    Returns False when RecBole's URL table does not list ``name`` (nothing done), True once the
    files are in place. Raises :class:`DatasetNotFoundError` when the user declines, when there is
    no terminal to ask and ``download`` is not true, and when the download or the archive fails
    (nothing is left behind).
    """
    logger = logger or logging.getLogger()
    url = recbole_url(name)
    if url is None:
        return False
    folder = Path(folder)
    if not wants_download(download):
        size = remote_size(url)
        if not stdin_is_terminal():
            raise DatasetNotFoundError(
                f"Dataset {name!r} is not in {folder}, but RecBole knows it: it would be downloaded from "
                f"{url} ({describe_size(size)}) and its CTR view built. There is no terminal to ask for "
                f"confirmation, so nothing was downloaded: add --download=true to download it (or set "
                f"`download: true` in a config file), or put its atomic files in {folder}."
            )
        if not confirm(url, size):
            raise DatasetNotFoundError(
                f"Dataset {name!r} was not downloaded (the answer was not 'y'), so it is still missing from "
                f"{folder}. Answer 'y', or add --download=true to download {url} without the question."
            )
    download_into(name, url, folder, logger)
    return True


def download_into(name: str, url: str, folder, logger=None) -> Path:
    """Download, check and extract ``url`` beside ``folder``, then move its atomic files into ``folder``."""
    from recbole.utils.url import extract_zip, rename_atomic_files

    logger = logger or logging.getLogger()
    folder = Path(folder)
    root = folder.parent
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(folder, logger=logger)
    staging = new_staging(folder, DOWNLOAD)
    try:
        expected = remote_size(url)
        logger.info(f"Downloading dataset [{name}] from [{url}] ({describe_size(expected)}) into {staging}.")
        try:
            archive, sent = fetch_url(url, staging)
        except (OSError, ValueError, urllib.error.URLError, http.client.HTTPException) as exc:
            raise DatasetNotFoundError(
                f"Downloading dataset {name!r} from {url} failed ({exc}); nothing was kept. Check the "
                "connection and run the same command again: the download restarts from the beginning."
            ) from None
        _check_archive(name, url, archive, sent if sent is not None else expected)
        extracted = staging / "extracted"
        extract_zip(str(archive), str(extracted))
        archive.unlink()
        atomic_dir = _atomic_folder(extracted)
        rename_atomic_files(str(atomic_dir), archive.stem, name)
        if not (atomic_dir / f"{name}.inter").is_file():
            found = ", ".join(sorted(p.name for p in atomic_dir.iterdir())) or "nothing"
            raise DatasetNotFoundError(
                f"The archive {url} for dataset {name!r} holds no '{archive.stem}.inter' interaction file "
                f"(it holds {found}); nothing was kept. Put the dataset's atomic files in {folder} by hand."
            )
        _move_into_place(atomic_dir, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info(f"Downloaded dataset [{name}] into {folder}.")
    return folder


def fetch_url(url: str, folder: Path, timeout: float = HEAD_TIMEOUT):
    """Download ``url`` into ``folder`` (file named as the URL's last part); ``(path, Content-Length or None)``.

    RecBole's ``download_url`` cannot be used: it needs a Content-Length (``int(None)`` otherwise), and its
    bare ``except:`` turns Ctrl-C into "Stopped downloading" (a RuntimeError). Here the body is read until
    the server closes it, and Ctrl-C stays a ``KeyboardInterrupt``."""
    path = folder / (url.rpartition("/")[2].split("?")[0] or "download.zip")
    with urllib.request.urlopen(url, timeout=timeout) as answer, open(path, "wb") as out:
        length = answer.headers.get("Content-Length")
        try:
            sent = int(length) if length is not None else None
        except ValueError:
            sent = None
        while True:
            chunk = answer.read(DOWNLOAD_CHUNK)
            if not chunk:
                break
            out.write(chunk)
    return path, sent


def _check_archive(name: str, url: str, archive: Path, expected: Optional[int]) -> None:
    """A complete download of a valid zip, or a clear error."""
    got = archive.stat().st_size if archive.is_file() else 0
    if expected is not None and got != expected:
        raise DatasetNotFoundError(
            f"The download of dataset {name!r} from {url} stopped after {got} of {expected} bytes (the "
            "connection was cut); nothing was kept. Run the same command again to restart it."
        )
    try:
        with zipfile.ZipFile(archive) as handle:
            bad = handle.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise DatasetNotFoundError(
            f"The file downloaded from {url} for dataset {name!r} ({got} bytes) is not a readable zip "
            f"archive ({exc}); nothing was kept. Run the same command again; if it keeps failing the file "
            "on the server is damaged: put the dataset's atomic files in place by hand."
        ) from None
    if bad is not None:
        raise DatasetNotFoundError(
            f"The zip archive downloaded from {url} for dataset {name!r} is corrupt (member {bad!r} fails "
            "its CRC check); nothing was kept. Run the same command again; if it keeps failing the file "
            "on the server is damaged."
        )


def _atomic_folder(extracted: Path) -> Path:
    """The folder holding the atomic files: the archive's top level, or its only sub-folder."""
    if any(p.suffix in ATOMIC_SUFFIXES for p in extracted.iterdir()):
        return extracted
    subfolders = [p for p in extracted.iterdir() if p.is_dir()]
    return subfolders[0] if len(subfolders) == 1 else extracted


def _move_into_place(atomic_dir: Path, folder: Path) -> None:
    """Move the files into ``folder``, the ``.inter`` files last (each move is an atomic rename).

    Not :func:`~recbole_iacn.checkpoint.atomic_write` (the files are complete already, extracted in a staging
    folder on the same file system: renaming them is what it would do, after copying gigabytes once more)
    nor :func:`~recbole_iacn.data.staging.build_in_place` (``folder`` is the user's dataset folder, which may
    hold other files and a ``ctr/`` view: the download only adds files to it, the ``.inter`` last)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted((p for p in atomic_dir.iterdir() if p.is_file()), key=lambda p: (p.suffix == ".inter", p.name))
    for path in files:
        os.replace(path, folder / path.name)
