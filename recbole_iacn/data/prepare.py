"""Find, or build and cache, the CTR dataset a run asks for.

For ``--dataset=NAME`` with ``data_path`` ROOT, plugin models look, in order, for

1. ``ROOT/NAME/NAME.train.inter`` (and ``.valid.inter``, ``.test.inter``): a prepared CTR dataset,
   e.g. from ``python -m recbole_iacn.data amazon ... --name NAME``;
2. ``ROOT/NAME/ctr/NAME.train.inter``: the cached CTR view of a raw RecBole dataset, rebuilt when the
   settings it was written with (the ``ctr_*`` settings and the field names of its columns, see
   :func:`wanted_build`) differ from the run's;
3. a raw RecBole dataset with user, item and timestamp: ``ROOT/NAME/NAME.inter``, or, for
   ``ml-100k``, the copy bundled with RecBole. Its CTR view is built into ``ROOT/NAME/ctr/`` on first use
   by the source :func:`recbole_iacn.data.sources.for_raw_dataset` names:
   :func:`recbole_iacn.data.builder.build_from_atomic`, or, for ``amazon-*`` names,
   :func:`recbole_iacn.data.recbole_amazon.build_from_recbole_amazon` (DIEN protocol on the 5-core);
4. failing all three, a dataset RecBole can download by name (its ``url.yaml``): downloaded into
   ``ROOT/NAME/`` after a y/N question or with ``download: true`` (:mod:`recbole_iacn.data.download`),
   then treated as 3.

``ctr_protocol: auto`` is ``dien`` for ``amazon-*`` names and ``dense`` otherwise; ``ctr_max_history:
auto`` is the protocol's default (100 under ``dien``, 50 under ``dense``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from recbole_iacn.checkpoint import atomic_write
from recbole_iacn.data.common import SPLITS
from recbole_iacn.data.sources import for_raw_dataset
from recbole_iacn.data.staging import build_in_place, remove_stale_staging
from recbole_iacn.errors import DataFormatError, DatasetNotFoundError

VIEW_FOLDER = "ctr"
BUNDLED = "ml-100k"
AUTO = "auto"
#: records sizes and modification times of files whose sums matched build.json (see verify_build)
VERIFIED_SUFFIX = ".verified.json"
#: how earlier versions named the staging folders of the view (``.ctr-HOST-PID-*``, ``.ctr-<random>``):
#: a killed build's is removed as :func:`~recbole_iacn.data.staging.remove_stale_staging` removes its own
EARLIER_STAGING_PREFIXES = (f".{VIEW_FOLDER}-",)
#: ctr_* config key -> build parameter recorded in <name>.build.json
BUILD_SETTINGS = {
    "ctr_protocol": "protocol",
    "ctr_seed": "seed",
    "ctr_max_history": "max_history",
    "ctr_neg_sampling": "neg_sampling",
}


def split_files(folder, name) -> list[Path]:
    return [Path(folder) / f"{name}.{split}.inter" for split in SPLITS]


def has_ctr_files(folder, name) -> bool:
    return all(p.is_file() for p in split_files(folder, name))


def raw_source(folder, name):
    """``(source_dir, source_name)`` of a raw RecBole dataset NAME, or None."""
    if (Path(folder) / f"{name}.inter").is_file():
        return str(folder), name
    if name == BUNDLED:
        from recbole_iacn.data.builder import default_ml100k_source

        return default_ml100k_source()
    return None


def default_protocol(name: str) -> str:
    """``ctr_protocol: auto``: the protocol of the source that builds the raw dataset ``name`` (the DIEN
    papers' for Amazon datasets, ``dense`` otherwise)."""
    return for_raw_dataset(name).protocol


def wanted_build(config) -> dict:
    """The build parameters of the run's CTR view, ``auto`` values resolved: every setting that changes the
    files written, so the cached view is rebuilt when one differs from its build.json (:func:`view_is_current`).

    They are the :data:`BUILD_SETTINGS` and ``fields``: the names the columns are written under, config key ->
    name for the keys of :data:`~recbole_iacn.data.common.INTER_COLUMNS` and ``ITEM_COLUMNS`` (``USER_ID_FIELD``,
    ``ITEM_ID_FIELD``, ``LABEL_FIELD``, ``HISTORY_ITEM_FIELD``, ``HISTORY_CATEGORY_FIELD``, ``ITEM_CATEGORY_FIELD``;
    a null one is written under its default name). ``TIME_FIELD``, ``RATING_FIELD`` and
    ``ITEM_LIST_LENGTH_FIELD`` name no written column (the lengths are computed at load), so they are not here.
    """
    from recbole_iacn.data.common import resolve_field_names
    from recbole_iacn.data.ctr import resolve_max_history

    wanted = {param: config[key] for key, param in BUILD_SETTINGS.items()}
    if wanted["protocol"] in (None, AUTO):
        wanted["protocol"] = default_protocol(config["dataset"])
    wanted["max_history"] = resolve_max_history(wanted["max_history"], wanted["protocol"])
    if wanted["max_history"] == 0:
        wanted["max_history"] = None  # unlimited, as build.json records it
    wanted["fields"] = resolve_field_names(config)
    return wanted


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stat(path: Path) -> list:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def verify_build(folder, name) -> list[str]:
    """Problems of the files in ``folder`` against ``<name>.build.json`` (empty: they match, or there is no
    build.json to check against).

    Every call compares sizes (recorded in build.json) and, against ``<name>.verified.json``, sizes and
    modification times; only when those differ are the sha256 sums computed and compared. Files whose sums
    match are recorded in ``<name>.verified.json``, so a copied or touched dataset is hashed once.
    """
    folder = Path(folder)
    info_path = folder / f"{name}.build.json"
    if not info_path.is_file():
        return []
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        sums = dict(info["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{info_path} cannot be read ({type(exc).__name__}: {exc})"]
    sizes = info.get("sizes") or {}
    problems, stats = [], {}
    for fname in sums:
        path = folder / fname
        if not path.is_file():
            problems.append(f"{path} is missing")
            continue
        stats[fname] = _stat(path)
        if fname in sizes and stats[fname][0] != sizes[fname]:
            problems.append(f"{path} has {stats[fname][0]} bytes, but build.json records {sizes[fname]} "
                            "(truncated or edited)")
    if problems:
        return problems
    verified_path = folder / f"{name}{VERIFIED_SUFFIX}"
    try:
        verified = json.loads(verified_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        verified = {}
    if isinstance(verified, dict) and verified.get("checksum") == info.get("checksum") and \
            verified.get("stats") == stats:
        return []
    for fname, expected in sums.items():
        if _sha256(folder / fname) != expected:
            problems.append(f"{folder / fname} does not match the sha256 sum in build.json (edited or corrupt)")
    if not problems:
        _write_json_atomic(verified_path, {"checksum": info.get("checksum"), "stats": stats})
    return problems


def record_verified(folder, name) -> None:
    """Record the current sizes and times of a build that was just written (its sums are the ones in
    build.json), so that its first load does not hash it again."""
    folder = Path(folder)
    try:
        info = json.loads((folder / f"{name}.build.json").read_text(encoding="utf-8"))
        stats = {fname: _stat(folder / fname) for fname in info["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return
    _write_json_atomic(folder / f"{name}{VERIFIED_SUFFIX}", {"checksum": info.get("checksum"), "stats": stats})


def _write_json_atomic(path: Path, data: dict) -> None:
    """Best effort (a read-only dataset folder is fine: the sums are then checked on every load)."""
    try:
        with atomic_write(path) as staging:
            with open(staging, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
    except OSError:
        pass


def view_is_current(view, name, wanted: dict) -> bool:
    """Whether the CTR view in ``view`` exists and its build.json records the parameters ``wanted``
    (:func:`wanted_build`); a view whose build.json lacks one (e.g. ``fields``, recorded since the field
    names are part of the key) is not current."""
    info_path = Path(view) / f"{name}.build.json"
    if not has_ctr_files(view, name) or not info_path.is_file():
        return False
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    recorded = info.get("parameters", info)
    return all(recorded.get(param) == value for param, value in wanted.items())


def build_view(source, view, name, wanted: dict, logger=None, progress: bool = False) -> dict:
    """Build the CTR view into a temporary folder beside ``view`` with the source of raw ``name``
    (:func:`~recbole_iacn.data.sources.for_raw_dataset`), then swap it in as a whole
    (:func:`~recbole_iacn.data.staging.build_in_place`: no file of an earlier view survives, and the earlier
    view stays whole until the new one is in place)."""
    builder = for_raw_dataset(name)
    shown = {"progress": progress} if builder.progress else {}

    def build(staging: Path) -> dict:
        summary = builder.function()(source_dir=source[0], source_name=source[1], out_dir=staging, name=name,
                                     **wanted, **shown)
        record_verified(staging, name)  # inside the staging folder: in place with the view, never after it
        return summary

    summary = build_in_place(view, name, build, carry_over=False, logger=logger,
                             earlier_prefixes=EARLIER_STAGING_PREFIXES)
    if logger is not None:
        logger.info(
            f"Built the CTR view of {name} ({wanted['protocol']} protocol) in {view}: "
            f"checksum {summary.get('checksum', '?')}"
        )
    return summary


def resolve_ctr_dataset(config, logger=None) -> str:
    """Point ``config['data_path']`` at the folder holding the CTR files; build them if needed."""
    logger = logger or logging.getLogger()
    name = config["dataset"]
    folder = config["data_path"]  # ROOT/NAME (set by IaCNConfig)
    if has_ctr_files(folder, name):
        problems = verify_build(folder, name)
        if problems:
            raise DataFormatError(
                f"Dataset {name!r} in {folder} no longer matches its {name}.build.json: "
                + "; ".join(problems) + ". Training on it could use cut-off or edited data. Rebuild it with the "
                "`python -m recbole_iacn.data ...` command that made it (build.json records its source and "
                f"parameters), or, if you changed the files on purpose, delete {name}.build.json."
            )
        return folder
    view = os.path.join(folder, VIEW_FOLDER)
    wanted = wanted_build(config)
    if os.path.isdir(folder):
        remove_stale_staging(view, logger=logger, earlier_prefixes=EARLIER_STAGING_PREFIXES)
    current = view_is_current(view, name, wanted)
    if current:
        problems = verify_build(view, name)
        if not problems:
            config["data_path"] = view
            return view
        logger.warning(f"The cached CTR view in {view} does not match its build.json ({'; '.join(problems)}); "
                       "rebuilding it.")
    for_raw_dataset(name).check_raw_name(name)  # before any download
    source = raw_source(folder, name)
    if source is None:
        from recbole_iacn.data.download import fetch_known_dataset

        if fetch_known_dataset(name, folder, config["download"], logger):
            source = raw_source(folder, name)
    if source is None:
        root = os.path.dirname(os.path.normpath(folder)) or "."
        looked = ", ".join(str(p) for p in split_files(folder, name))
        raise DatasetNotFoundError(
            f"Dataset {name!r} not found: looked for the CTR files {looked}, and for a raw RecBole "
            f"dataset {os.path.join(folder, name + '.inter')} to build them from (and RecBole's url.yaml does "
            f"not list {name!r} for download). Create them with "
            f"`python -m recbole_iacn.data ... --name {name} --out {root}` (amazon, dien, recbole, "
            "movielens or synthetic; see dataset/README.md), put a RecBole atomic dataset with user, "
            f"item and timestamp in {folder}, or set --data_path to the folder that holds '{name}/'."
        )
    if not current and has_ctr_files(view, name):
        logger.info(f"Rebuilding the CTR view of {name} in {view}: it was written with other settings (ctr_* or "
                    "field names) than this run's.")
    else:
        logger.info(f"Building the CTR view of {name} from {source[0]} (first use; cached afterwards).")
    build_view(source, view, name, wanted, logger, progress=bool(config["show_progress"]))
    config["data_path"] = view
    return view


def check_history_length(config, logger=None) -> None:
    """Warn when the run asks for more behaviours than the files store."""
    logger = logger or logging.getLogger()
    stored = wanted_build(config)["max_history"]
    if stored is not None and config["MAX_ITEM_LIST_LENGTH"] > stored:
        logger.warning(
            f"MAX_ITEM_LIST_LENGTH={config['MAX_ITEM_LIST_LENGTH']} exceeds the {stored} behaviours "
            "stored per sample (ctr_max_history); sequences are no longer than that."
        )
