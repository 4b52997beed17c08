"""Write a folder all at once: build it into a hidden temporary sibling, then rename it into place.

The one mechanism for the dataset folders of ``python -m recbole_iacn.data`` and for the cached CTR view
(:func:`recbole_iacn.data.prepare.build_view`); single files go through
:func:`recbole_iacn.checkpoint.atomic_write`. A crash or Ctrl-C during a build leaves the earlier folder as it
was (or nothing), never new split files beside an old ``.item`` and ``build.json``.

Beside ``out_dir`` a build names its folders ``.<folder>.<kind>-HOST-PID-<random>`` (this machine's name and
the building process's id, so that :func:`remove_stale_staging` can tell a killed build's folder from one
being written): ``building`` while it builds (``download`` while a download of the raw files into the
folder runs), and, for the moment of the swap, ``old`` (the earlier folder,
whose other entries are carried over) or ``replaced`` (the earlier folder, replaced as a whole).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

from recbole_iacn.checkpoint import LEGACY_TEMP_AGE, follow_umask, process_alive

from .common import SPLITS

BUILDING, OLD, REPLACED = "building", "old", "replaced"
#: the kind of a download's staging folder (:func:`recbole_iacn.data.download.download_into`)
DOWNLOAD = "download"
#: a swap that keeps losing the race to builds of the same folder running at once gives up after this
SWAP_TRIES = 20


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


def build_in_place(out_dir, name: str, build: Callable[[Path], dict], *, carry_over: bool = True,
                   logger=None, earlier_prefixes: Iterable[str] = ()) -> dict:
    """Run ``build(staging)`` in ``.<folder>.building-HOST-PID-<random>`` beside ``out_dir``, then swap it in.

    With ``carry_over``, other entries of an existing ``out_dir`` (a ``ctr/`` cache, raw atomic files, a
    ``source/`` the build did not remake) are carried over and the earlier build's own files
    (:func:`dataset_files`) are replaced; without it (a cache the package owns entirely, such as the CTR
    view) the earlier folder is replaced as a whole, so no file of it survives the rebuild. Either way the
    earlier folder stays whole until the new one is complete: it is renamed aside, the new one renamed into
    place, and only then is the earlier one emptied. Staging folders that killed builds left beside
    ``out_dir`` are removed first (:func:`remove_stale_staging`, which logs each to ``logger`` when given).
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out_dir, logger=logger, earlier_prefixes=earlier_prefixes)
    staging = new_staging(out_dir)
    try:
        summary = build(staging)
        follow_umask(staging, folder=True)  # mkdtemp made it 0700
        _name_final_folder(staging / f"{name}.build.json", staging, out_dir)
        _swap_in(staging, out_dir, dataset_files(name) if carry_over else None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary["out_dir"] = str(out_dir)
    return summary


def new_staging(out_dir, kind: str = BUILDING) -> Path:
    """A new, empty ``.<folder>.<kind>-HOST-PID-<random>`` beside ``out_dir`` (mode 0700, as ``mkdtemp``
    makes it), which :func:`remove_stale_staging` removes once this process is gone."""
    out_dir = Path(out_dir)
    return Path(tempfile.mkdtemp(prefix=f"{_prefix(out_dir, kind)}{_owner()}", dir=out_dir.parent))


def _prefix(out_dir: Path, kind: str) -> str:
    return f".{out_dir.name}.{kind}-"


def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-"


def remove_stale_staging(out_dir, logger=None, earlier_prefixes: Iterable[str] = ()) -> list:
    """Clean up after killed builds of ``out_dir``, from the folders they left beside it: this machine's
    whose process is gone, and ones without a process id (older versions) older than
    :data:`~recbole_iacn.checkpoint.LEGACY_TEMP_AGE`. Returns their paths.

    A ``building`` or ``download`` folder (and one named by a prefix in ``earlier_prefixes``: the staging folders of
    earlier versions) is removed. An earlier folder set aside by a swap that was killed (``old`` or
    ``replaced``) is put back when ``out_dir`` is missing (the kill came between the two renames); else the
    swap is finished: an ``old`` folder's entries that ``out_dir`` lacks are carried over, then it is
    removed. A live process's folders, and other machines', are left alone. Each one handled is logged to
    ``logger`` (info) when given."""
    out_dir = Path(out_dir)
    kinds = [(_prefix(out_dir, kind), kind) for kind in (BUILDING, DOWNLOAD, OLD, REPLACED)]
    kinds += [(prefix, BUILDING) for prefix in earlier_prefixes]
    host = socket.gethostname()
    handled = []
    try:
        candidates = [p for p in out_dir.parent.iterdir() if p.name.startswith(".") and p.is_dir()]
    except OSError:
        return handled
    for path in sorted(candidates):
        prefix, kind = next(((prefix, kind) for prefix, kind in kinds if path.name.startswith(prefix)), (None, None))
        if prefix is None:
            continue
        rest = path.name[len(prefix):]
        owner = rest[len(host) + 1:].split("-", 1)[0] if rest.startswith(host + "-") else None
        try:
            if owner is not None:
                stale = owner.isdigit() and int(owner) != os.getpid() and not process_alive(int(owner))
            else:  # older versions named them without a process id (never an aside folder)
                stale = kind in (BUILDING, DOWNLOAD) and "-" not in rest and \
                    path.stat().st_mtime < time.time() - LEGACY_TEMP_AGE
            if not stale:
                continue
            if kind in (BUILDING, DOWNLOAD):
                shutil.rmtree(path, ignore_errors=True)
                done = f"Removed {path}, the staging folder of a {'download' if kind == DOWNLOAD else 'build'} " \
                       "that was killed."
            elif not out_dir.exists():
                os.rename(path, out_dir)
                done = f"Put {path} back as {out_dir}: a build was killed while swapping its new folder in."
            else:
                _settle_aside(path, out_dir, set() if kind == OLD else None)
                done = f"Removed {path}, the earlier {out_dir.name} folder that a killed build had replaced."
        except OSError:  # removed by another run meanwhile, or not ours to handle
            continue
        handled.append(path)
        if logger is not None:
            logger.info(done)
    return handled


def _name_final_folder(info: Path, staging: Path, out_dir: Path) -> None:
    """build.json names the final folder, not the temporary one (e.g. movielens' ``source/``)."""
    if info.is_file():
        text = info.read_text(encoding="utf-8")
        if str(staging) in text:
            info.write_text(text.replace(str(staging), str(out_dir)), encoding="utf-8")


def _swap_in(staging: Path, out_dir: Path, owned: Optional[set]) -> None:
    """Rename the complete ``staging`` to ``out_dir``: an existing ``out_dir`` is first renamed aside whole,
    so that there is never a half-written folder under that name, then (:func:`_settle_aside`) emptied,
    its entries not in ``owned`` carried over (``owned`` None: none, the folder is replaced as a whole).

    Builds of the same folder may run at once: one whose rename finds another's new folder in place sets
    that one aside too and tries again (the last one in wins; the folders are equivalent)."""
    asides = []
    try:
        for _ in range(SWAP_TRIES):
            aside = out_dir.parent / f"{_prefix(out_dir, REPLACED if owned is None else OLD)}{_owner()}" \
                                     f"{secrets.token_hex(4)}"
            try:
                os.rename(out_dir, aside)
                asides.append(aside)
            except FileNotFoundError:
                pass
            try:
                os.rename(staging, out_dir)
                break
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        else:
            raise OSError(errno.EBUSY, f"other builds kept replacing {out_dir} while this one tried to", str(out_dir))
    finally:
        if not out_dir.exists() and asides:  # the new folder did not go in: put the earlier one back
            os.rename(asides.pop(0), out_dir)
    for aside in asides:
        _settle_aside(aside, out_dir, owned)


def _settle_aside(aside: Path, out_dir: Path, owned: Optional[set]) -> None:
    """Remove the earlier folder ``aside`` once the new ``out_dir`` is in place, first moving its entries
    that are not in ``owned`` and that ``out_dir`` lacks into ``out_dir`` (``owned`` None: none)."""
    if owned is not None:
        # the earlier build's own files first, so that what a kill leaves in ``aside`` is only what
        # remove_stale_staging must carry over (a kill in the moment before that carries them over too)
        for entry in list(aside.iterdir()):
            if entry.name not in owned:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        for entry in list(aside.iterdir()):
            if not os.path.lexists(out_dir / entry.name):
                os.rename(entry, out_dir / entry.name)
    shutil.rmtree(aside, ignore_errors=True)
