"""Explain each user's interest capsules, and retrieve candidates with the capsule network.

From Python::

    from recbole_iacn.explain import explain, retrieve

    records = explain("saved/DIN_IaCN-....pth", ["196", "305"], candidate="242", top=10, out="explained")
    ranked = retrieve("saved/DIN_IaCN-....pth", ["196"], top=50)

From the command line: ``python -m recbole_iacn.explain --model-file saved/DIN_IaCN-....pth --users 196 305``.

What comes from where: the checkpoint holds the model, its schema and every vocabulary, so the item
catalogue (ids, categories, ``E_aux``) needs nothing else. The users' histories and profiles are not in
it: they are read from the dataset's files (``data_path``/``dataset``, by default the folder the model
was trained from, as stored in the checkpoint; each user's latest sample, i.e. the behaviours before
the last, held-out interaction), or given with ``history`` for one user.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence, Union

from recbole_iacn.errors import ConfigError, DatasetNotFoundError

# numpy, pandas (.histories, recbole_iacn.checkpoint) and torch (.core) are imported on first use, so that
# ``python -m recbole_iacn.explain`` imports them inside its main, whose handler makes a Ctrl-C exit 130
_CORE = ("InterestExplainer", "interest_purity", "rank_items", "recovery")


def __getattr__(name):
    if name in _CORE:
        from recbole_iacn.explain import core

        return getattr(core, name)
    if name == "UserHistory":
        from recbole_iacn.explain.histories import UserHistory

        return UserHistory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "InterestExplainer",
    "UserHistory",
    "explain",
    "interest_purity",
    "load_histories",
    "rank_items",
    "recovery",
    "retrieve",
    "write_json",
]


def load_histories(explainer: InterestExplainer, users: Sequence[str], data_path=None, dataset: Optional[str] = None,
                   history: Union[str, Sequence[str], None] = None) -> List[UserHistory]:
    """The users' behaviours: ``history`` (one user; a space-separated string or a list of item ids,
    oldest first) or each user's latest sample in the dataset's files."""
    from recbole_iacn.explain.histories import UserHistory, dataset_folder, default_data_location, read_histories

    users = [str(u) for u in users]
    if not users:
        raise ConfigError("Give at least one user id.")
    stored_path, stored_dataset = default_data_location(explainer.loaded.config)
    dataset = dataset or stored_dataset
    if history is not None:
        if len(users) != 1:
            raise ConfigError(f"A given history belongs to one user; got {len(users)} users ({' '.join(users)}).")
        items = history.split() if isinstance(history, str) else [str(i) for i in history]
        profile = {}
        if data_path or stored_path:  # the profile, when the dataset's user file is at hand
            try:
                folder = dataset_folder(data_path or stored_path, dataset)
                profile = _profile(folder, dataset, users[0], explainer)
            except (DatasetNotFoundError, OSError, ValueError):  # optional: a given history needs no dataset
                profile = {}
        return [UserHistory(users[0], items, profile, source="given")]
    if not (data_path or stored_path) or not dataset:
        raise ConfigError("The checkpoint does not say where its dataset is: give --data_path and --dataset, or --history.")
    folder = dataset_folder(data_path or stored_path, dataset)
    s = explainer.schema
    found = read_histories(folder, dataset, users, s.user_field, s.history_item_field, explainer.profile_fields())
    return [found[u] for u in users]


def _profile(folder, dataset, user, explainer) -> dict:
    from recbole_iacn.explain.histories import _read_atomic

    path = Path(folder) / f"{dataset}.user"
    if not path.is_file():
        return {}
    frame = _read_atomic(path)
    rows = frame[frame[explainer.schema.user_field] == user]
    fields = [f for f in explainer.profile_fields() if f in rows]
    return {f: rows.iloc[-1][f] for f in fields} if len(rows) else {}


def write_json(path, data) -> Path:
    """Write ``data`` as JSON to a temporary file beside ``path``, then rename it into place."""
    from recbole_iacn.checkpoint import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as staging:
        with open(staging, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, ensure_ascii=False, allow_nan=False)
            f.write("\n")
    return path


def _document(explainer: InterestExplainer, model_file, kind: str, records: list, **settings) -> dict:
    return {
        "model_file": str(model_file),
        "model": explainer.loaded.config["model"],
        "kind": kind,
        "catalogue": f"{explainer.schema.num_items - 1} items, from the checkpoint",
        "history_length": explainer.history_length,
        **settings,
        "users": records,
    }


def diagnostics_caption(diagnostics: dict) -> str:
    """One line on whether the routing follows content, for a picture's caption and the summary."""
    def pct(value):
        return "n/a" if value is None else f"{100 * value:.0f} %"

    text = (f"routing moved {pct(diagnostics['moved_share'])} of {diagnostics['behaviours_with_a_choice']} "
            f"behaviours from the start logits' choice; mean ‖x̂‖ {diagnostics['behaviour_norm_mean']}")
    if diagnostics.get("e_aux_neighbour_category_agreement") is not None:
        text += (f"; E_aux nearest neighbour shares the category {pct(diagnostics['e_aux_neighbour_category_agreement'])}"
                 f" (chance {pct(diagnostics['e_aux_neighbour_category_chance'])})")
    return text


def safe_name(user: str) -> str:
    """A file-name-safe form of a user id."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(user)) or "user"


def explain(model_file, users: Sequence[str], candidate: Optional[str] = None, top: int = 10, data_path=None,
            dataset: Optional[str] = None, history=None, out=None, plots: bool = True, device: str = "cpu") -> dict:
    """Explain the interests of ``users`` (see :meth:`InterestExplainer.explain` for a record's fields).

    With ``out``, writes ``out/explanations.json`` and, unless ``plots`` is False, one picture
    ``out/user_<id>.png`` per user. Returns the JSON document (``document["users"]`` the records).
    """
    if out is not None:
        from recbole_iacn.checkpoint import check_output_folder

        check_output_folder(out, "--out")
    if out is not None and plots:
        from recbole_iacn.explain.plot import require_matplotlib

        require_matplotlib()  # before any work: say it now, not after the JSON
    from recbole_iacn.explain.core import InterestExplainer

    explainer = InterestExplainer.from_checkpoint(model_file, device=device)
    histories = load_histories(explainer, users, data_path, dataset, history)
    records = explainer.explain(histories, candidate=candidate, top=top)
    document = _document(explainer, model_file, "explanation", records, top=top, candidate=candidate)
    document["diagnostics"] = explainer.diagnostics(records)
    if out is not None:
        out = Path(out)
        document["files"] = {"json": str(out / "explanations.json")}
        if plots:
            from recbole_iacn.explain.plot import plot_user

            caption = diagnostics_caption(document["diagnostics"])
            pictures = [str(plot_user(r, out / f"user_{safe_name(r['user'])}.png", caption=caption)) for r in records]
            document["files"]["pictures"] = pictures
        write_json(out / "explanations.json", document)
    return document


def retrieve(model_file, users: Sequence[str], top: int = 50, data_path=None, dataset: Optional[str] = None,
             history=None, exclude_history: bool = True, out=None, device: str = "cpu") -> dict:
    """Rank the whole catalogue for each user by ``max_k R_score`` (the capsule network as a
    MIND-style candidate generator). With ``out``, writes ``out/retrieved.json``."""
    if out is not None:
        from recbole_iacn.checkpoint import check_output_folder

        check_output_folder(out, "--out")
    from recbole_iacn.explain.core import InterestExplainer

    explainer = InterestExplainer.from_checkpoint(model_file, device=device)
    histories = load_histories(explainer, users, data_path, dataset, history)
    records = explainer.retrieve(histories, top=top, exclude_history=exclude_history)
    document = _document(explainer, model_file, "retrieval", records, top=top, exclude_history=exclude_history)
    if out is not None:
        document["files"] = {"json": str(Path(out) / "retrieved.json")}
        write_json(Path(out) / "retrieved.json", document)
    return document
