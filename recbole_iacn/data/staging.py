"""Write a dataset folder all at once: build into a hidden temporary sibling, then rename it into place.

A crash or Ctrl-C during a build leaves the earlier dataset as it was (or nothing), never new split
files beside an old ``.item`` and ``build.json``.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Callable

from recbole_iacn.checkpoint import LEGACY_TEMP_AGE, follow_umask, process_alive

from .common import SPLITS


def dataset_files(name: str) -> set:
    """The files a build of ``name`` owns (a stale one is not carried over into the new build)."""
    return {f"{name}.{split}.inter" for split in SPLITS} | {f"{name}.item", f"{name}.user", f"{name}.build.json"}


def target_folder(out, name: str) -> Path:
    """``<out>/<name>``, the folder a build of ``name`` writes, after checking that ``name`` is one plain
    folder name (so the folder stays inside ``out``) and that the folder can be written (no file in its
    place or above it, not read-only): before the build, not after it."""
    from recbole_iacn.checkpoint import check_output_folder
    from recbole_iacn.settings import check_dataset_name

    name = check_dataset_name(name, option="--name", parent="--out")
    check_output_folder(out, "--out")
    check_output_folder(Path(out) / name, "--out/--name")
    return Path(out) / name


def build_in_place(out_dir, name: str, build: Callable[[Path], dict]) -> dict:
    """Run ``build(staging)`` in ``.<folder>.building-<random>`` beside ``out_dir``, then swap it in.

    Other entries of an existing ``out_dir`` (a ``ctr/`` cache, raw atomic files, a ``source/`` the
    build did not remake) are carried over; the earlier build's own files are replaced as a whole.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=f"{_staging_prefix(out_dir)}{socket.gethostname()}-{os.getpid()}-",
                                    dir=out_dir.parent))
    try:
        summary = build(staging)
        follow_umask(staging, folder=True)  # mkdtemp made it 0700
        _name_final_folder(staging / f"{name}.build.json", staging, out_dir)
        _swap_in(staging, out_dir, dataset_files(name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary["out_dir"] = str(out_dir)
    return summary


def _staging_prefix(out_dir: Path) -> str:
    return f".{out_dir.name}.building-"


def remove_stale_staging(out_dir) -> list:
    """Remove the staging folders that killed builds of ``out_dir`` left beside it
    (``.NAME.building-HOST-PID-*``): this machine's whose process is gone, and ones without a process id
    (older versions) older than :data:`~recbole_iacn.checkpoint.LEGACY_TEMP_AGE`."""
    import time

    out_dir = Path(out_dir)
    prefix, host = _staging_prefix(out_dir), socket.gethostname()
    removed = []
    try:
        candidates = [p for p in out_dir.parent.iterdir() if p.name.startswith(prefix) and p.is_dir()]
    except OSError:
        return removed
    for path in candidates:
        rest = path.name[len(prefix):]
        owner = rest[len(host) + 1:].split("-", 1)[0] if rest.startswith(host + "-") else None
        try:
            if owner is not None:
                stale = owner.isdigit() and int(owner) != os.getpid() and not process_alive(int(owner))
            else:
                stale = rest.count("-") == 0 and path.stat().st_mtime < time.time() - LEGACY_TEMP_AGE
        except OSError:
            continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _name_final_folder(info: Path, staging: Path, out_dir: Path) -> None:
    """build.json names the final folder, not the temporary one (e.g. movielens' ``source/``)."""
    if info.is_file():
        text = info.read_text(encoding="utf-8")
        if str(staging) in text:
            info.write_text(text.replace(str(staging), str(out_dir)), encoding="utf-8")


def _swap_in(staging: Path, out_dir: Path, owned: set) -> None:
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.rmdir(old)
    os.replace(out_dir, old)
    os.replace(staging, out_dir)
    for entry in old.iterdir():
        if entry.name not in owned and not (out_dir / entry.name).exists():
            os.replace(entry, out_dir / entry.name)
    shutil.rmtree(old, ignore_errors=True)
