"""Where a user's behaviours come from: the dataset folder, or a history typed by the user.

A checkpoint holds the model, its feature schema and every vocabulary, so the item catalogue (ids and
categories) comes from the checkpoint alone. It does not hold the users' histories or profiles: those
come from the dataset's files (the latest sample of each user, i.e. the behaviours before the user's
last, held-out interaction in the ``dense`` view) or from a history given explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from recbole_iacn.data.common import SPLITS, read_header
from recbole_iacn.data.prepare import VIEW_FOLDER
from recbole_iacn.errors import DatasetNotFoundError, UnknownIdError

#: Split files searched for a user's latest sample, latest split first.
SPLITS_LATEST_FIRST = tuple(reversed(SPLITS))


@dataclass
class UserHistory:
    """One user's behaviours (item tokens, oldest first) and profile (field → token)."""

    user: str
    items: List[str]
    profile: Dict[str, str] = field(default_factory=dict)
    source: str = ""  # the file the history was read from, or "given"


def dataset_folder(data_path, dataset: str) -> Path:
    """The folder holding ``<dataset>.test.inter`` under ``data_path``: ``data_path`` itself,
    ``data_path/<dataset>`` or its cached CTR view ``data_path/<dataset>/ctr``."""
    root = Path(data_path)
    candidates = [root, root / dataset, root / dataset / VIEW_FOLDER]
    for folder in candidates:
        if all((folder / f"{dataset}.{split}.inter").is_file() for split in SPLITS_LATEST_FIRST):
            return folder
    looked = ", ".join(str(c / f"{dataset}.test.inter") for c in candidates)
    raise DatasetNotFoundError(
        f"No CTR files of dataset {dataset!r} under {str(root)!r} (looked for {looked}). A checkpoint holds "
        "the item catalogue but not the users' histories: point --data_path (and --dataset) at the folder "
        "the model was trained from, or give the behaviours yourself with --history \"ITEM ITEM ...\"."
    )


def _read_atomic(path: Path, columns: Optional[Sequence[str]] = None):
    """An atomic file as a DataFrame of strings with ``name:type`` headers cut to ``name``."""
    import pandas as pd

    names = [name for name, _ in read_header(path)]
    usecols = None if columns is None else [i for i, n in enumerate(names) if n in columns]
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, usecols=usecols, quoting=3)
    frame.columns = [names[i] for i in (usecols if usecols is not None else range(len(names)))]
    return frame


def read_histories(folder, dataset: str, users: Sequence[str], user_field: str, history_field: str,
                   profile_fields: Sequence[str] = ()) -> Dict[str, UserHistory]:
    """Each user's latest sample in the dataset's split files (test, then valid, then train; within
    a file, the user's last row) and profile from ``<dataset>.user`` when it exists.

    Raises :class:`UnknownIdError` for a user found in none of the split files.
    """
    folder = Path(folder)
    wanted = [str(u) for u in users]
    found: Dict[str, UserHistory] = {}
    for split in SPLITS_LATEST_FIRST:
        missing = [u for u in wanted if u not in found]
        if not missing:
            break
        path = folder / f"{dataset}.{split}.inter"
        frame = _read_atomic(path, [user_field, history_field])
        if history_field not in frame or user_field not in frame:
            raise DatasetNotFoundError(f"{path} has no {user_field!r} or {history_field!r} column.")
        rows = frame[frame[user_field].isin(missing)].drop_duplicates(user_field, keep="last")
        for user, history in zip(rows[user_field], rows[history_field]):
            found[user] = UserHistory(user, history.split(), source=str(path))
    absent = [u for u in wanted if u not in found]
    if absent:
        raise UnknownIdError(
            f"User(s) {', '.join(absent)} have no sample in the {dataset} split files under {folder}: "
            "check the ids (raw ids as in the .inter files), or give the behaviours with --history."
        )
    user_file = folder / f"{dataset}.user"
    if profile_fields and user_file.is_file():
        profiles = _read_atomic(user_file)
        profiles = profiles[profiles[user_field].isin(wanted)].drop_duplicates(user_field, keep="last")
        columns = [f for f in profile_fields if f in profiles]
        for record in profiles.to_dict("records"):
            found[record[user_field]].profile = {f: record[f] for f in columns}
    return {u: found[u] for u in wanted}


def default_data_location(config) -> tuple[Optional[str], Optional[str]]:
    """``(data_path, dataset)`` the checkpoint was trained from (its stored, resolved config)."""
    data_path, dataset = config.get("data_path"), config.get("dataset")
    if data_path and not os.path.isabs(data_path):
        data_path = os.path.abspath(data_path)
    return data_path, dataset
