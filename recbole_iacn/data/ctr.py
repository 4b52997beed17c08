"""Turn interned interactions into a prepared CTR dataset (the format in dataset/README.md).

The pipeline is: stable sort by (user, time) -> choose sample positions by protocol -> draw one
negative per positive -> split -> write ``<name>.{train,valid,test}.inter``, ``<name>.item``,
optional ``<name>.user`` and ``<name>.build.json``.

Randomness comes from a single ``numpy.random.default_rng(seed)`` used in a fixed order: first the
negatives of all samples (in output order), then (``dien`` protocol only) the user split.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np

from recbole_iacn.checkpoint import atomic_write

from .common import (
    BUILD_FORMAT_VERSION,
    DEFAULT_CATEGORY,
    NEG_SAMPLINGS,
    PROTOCOLS,
    SEQ_SEPARATOR,
    SPLITS,
    check_choice,
    check_max_history,
    check_ratio,
    inter_header,
    item_header,
    natural_order,
    read_header,
    resolve_field_names,
    user_header,
)
from recbole_iacn.errors import DataFormatError

SPLIT_CODES = {name: code for code, name in enumerate(SPLITS)}
#: ``max_history`` meaning "the protocol's default" (a function default, or ``ctr_max_history: auto``).
AUTO_MAX_HISTORY = "auto"
#: The protocol's default history length: DIEN's training reads up to 100 behaviours per sample
#: (``maxlen = 100`` in its train.py), so the ``dien`` protocols keep 100; ``dense`` keeps 50.
#: ``MAX_ITEM_LIST_LENGTH`` trims further per run.
PROTOCOL_MAX_HISTORY = {"dense": 50, "dien": 100, "dien-prepared": 100}
#: Minimum number of distinct items needed to draw a negative different from the positive.
MIN_ITEMS_FOR_NEGATIVES = 2


@dataclass
class Interactions:
    """Interactions in file order, with ids interned to dense int codes.

    ``user``, ``item``, ``time`` are aligned arrays. ``user_tokens[c]`` / ``item_tokens[c]`` give the
    (sanitized) id of code ``c``; ``item_cat[c]`` is the category code of item ``c`` and
    ``cat_tokens`` the category names. User codes are in processing order (first appearance).
    """

    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    user_tokens: np.ndarray
    item_tokens: np.ndarray
    item_cat: np.ndarray
    cat_tokens: np.ndarray


@dataclass
class Samples:
    """Positive/negative sample pairs chosen from the sorted interactions."""

    position: np.ndarray  # index into the sorted interactions of the positive
    hist_start: np.ndarray  # first history index (inclusive) into the sorted interactions
    negative: np.ndarray  # negative item code
    split: np.ndarray  # split code per sample (SPLIT_CODES)
    counts: Dict[str, int] = field(default_factory=dict)


@dataclass
class BuildOptions:
    """Protocol parameters shared by every builder, and the field names the files are headed with.

    ``fields``: config key (``USER_ID_FIELD``, ...) -> the column name written; None, a missing key or a
    null name as :func:`~recbole_iacn.data.common.resolve_field_names` resolves them (overall.yaml's names).
    """

    protocol: str = "dense"
    seed: int = 2020
    max_history: Optional[int] | str = AUTO_MAX_HISTORY
    neg_sampling: str = "popularity"
    valid_ratio: float = 0.1
    test_ratio: float = 0.1
    fields: Optional[dict] = None

    def validated(self) -> "BuildOptions":
        """Return a checked copy (raises :class:`DataFormatError` on a bad value)."""
        return BuildOptions(
            protocol=check_choice(self.protocol, PROTOCOLS, "protocol"),
            seed=int(self.seed),
            max_history=check_max_history(resolve_max_history(self.max_history, self.protocol)),
            neg_sampling=check_choice(self.neg_sampling, NEG_SAMPLINGS, "neg_sampling"),
            valid_ratio=check_ratio(self.valid_ratio, "valid_ratio"),
            test_ratio=check_ratio(self.test_ratio, "test_ratio"),
            fields=resolve_field_names(self.fields),
        )

    def as_dict(self) -> dict:
        """Parameters as recorded in build.json (every setting that changes the written files)."""
        return {
            "protocol": self.protocol,
            "seed": self.seed,
            "max_history": self.max_history,
            "neg_sampling": self.neg_sampling,
            "valid_ratio": self.valid_ratio,
            "test_ratio": self.test_ratio,
            "fields": self.fields,
        }


def resolve_max_history(value, protocol: str):
    """``value``, or the protocol's default (:data:`PROTOCOL_MAX_HISTORY`) when it is ``auto``."""
    if isinstance(value, str) and value.strip().lower() == AUTO_MAX_HISTORY:
        return PROTOCOL_MAX_HISTORY.get(protocol, PROTOCOL_MAX_HISTORY["dense"])
    return value


# ---------------------------------------------------------------------------------------------
# sample selection
# ---------------------------------------------------------------------------------------------
def sort_interactions(inter: Interactions) -> np.ndarray:
    """Return the permutation sorting interactions by (user code, time); ties keep file order."""
    n = inter.user.shape[0]
    return np.lexsort((np.arange(n), inter.time, inter.user))


def _user_layout(sorted_user: np.ndarray, n_users: int):
    """Per sorted position: (start of its user's block, end of its user's block, rank in block)."""
    counts = np.bincount(sorted_user, minlength=n_users)
    ends = np.cumsum(counts)
    starts = ends - counts
    pos_start = starts[sorted_user]
    pos_end = ends[sorted_user]
    rank = np.arange(sorted_user.shape[0]) - pos_start
    return pos_start, pos_end, rank


def draw_negatives(positives: np.ndarray, item_popularity: np.ndarray, how: str, rng) -> np.ndarray:
    """Draw one negative item code per positive, never equal to it.

    ``popularity``: proportional to ``item_popularity`` (interaction counts); ``uniform``: uniform
    over all item codes. Both exclude the positive itself (rejection for popularity, an exact shift
    for uniform).
    """
    n_items = item_popularity.shape[0]
    candidates = int(np.count_nonzero(item_popularity)) if how == "popularity" else n_items
    if candidates < MIN_ITEMS_FOR_NEGATIVES:
        raise DataFormatError(
            f"cannot sample negatives: only {candidates} distinct item(s) in the data; "
            f"at least {MIN_ITEMS_FOR_NEGATIVES} are needed."
        )
    size = positives.shape[0]
    if how == "uniform":
        draw = rng.integers(0, n_items - 1, size=size)
        return draw + (draw >= positives)
    prob = item_popularity / item_popularity.sum()
    negatives = rng.choice(n_items, size=size, p=prob)
    clash = np.flatnonzero(negatives == positives)
    while clash.size:
        negatives[clash] = rng.choice(n_items, size=clash.size, p=prob)
        clash = clash[negatives[clash] == positives[clash]]
    return negatives


def _history_starts(position: np.ndarray, block_start: np.ndarray, max_history) -> np.ndarray:
    """First history index for each sample, truncated to the ``max_history`` most recent."""
    if max_history is None:
        return block_start.copy()
    return np.maximum(block_start, position - max_history)


def split_users_at_random(n_users: int, valid_ratio: float, test_ratio: float, rng) -> np.ndarray:
    """Split code per user: ``test_ratio`` of users to test, then ``valid_ratio`` of the rest to valid."""
    split = np.full(n_users, SPLIT_CODES["train"], dtype=np.int8)
    order = rng.permutation(n_users)
    n_test = int(round(n_users * test_ratio))
    n_valid = int(round((n_users - n_test) * valid_ratio))
    split[order[:n_test]] = SPLIT_CODES["test"]
    split[order[n_test:n_test + n_valid]] = SPLIT_CODES["valid"]
    return split


def select_samples(inter: Interactions, sorted_idx: np.ndarray, opts: BuildOptions, rng) -> Samples:
    """Choose sample positions, histories, negatives and splits for ``opts.protocol``."""
    sorted_user = inter.user[sorted_idx]
    sorted_item = inter.item[sorted_idx]
    n_users = inter.user_tokens.shape[0]
    block_start, block_end, rank = _user_layout(sorted_user, n_users)
    counts_per_user = np.bincount(sorted_user, minlength=n_users)
    users_present = int(np.count_nonzero(counts_per_user))
    single = int(np.count_nonzero(counts_per_user == 1))

    if opts.protocol == "dense":
        position = np.flatnonzero(rank >= 1)
    else:  # dien: the last interaction of users with a non-empty history
        is_last = np.arange(sorted_idx.size) == block_end - 1
        position = np.flatnonzero(is_last & (rank >= 1))
    hist_start = _history_starts(position, block_start[position], opts.max_history)
    popularity = np.bincount(inter.item, minlength=inter.item_tokens.shape[0]).astype(np.float64)
    negative = draw_negatives(sorted_item[position], popularity, opts.neg_sampling, rng)

    if opts.protocol == "dense":
        from_end = block_end[position] - 1 - position
        split = np.where(from_end == 0, SPLIT_CODES["test"],
                         np.where(from_end == 1, SPLIT_CODES["valid"], SPLIT_CODES["train"])).astype(np.int8)
    else:
        split = split_users_at_random(position.size, opts.valid_ratio, opts.test_ratio, rng)

    counts = {
        "interactions": int(sorted_idx.size),
        "users_in_source": users_present,
        "users_dropped_single_interaction": single,
    }
    return Samples(position=position, hist_start=hist_start, negative=negative, split=split, counts=counts)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def _write_lines(path: Path, header: str, lines: Iterable[str]) -> None:
    """Write a header plus lines, UTF-8 with '\\n' line ends."""
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(header)
        handle.write("\n")
        for line in lines:
            handle.write(line)
            handle.write("\n")


def _sample_lines(inter: Interactions, sorted_idx: np.ndarray, samples: Samples, chosen: np.ndarray) -> List[str]:
    """Rows (positive then negative) for the samples ``chosen``, histories oldest first."""
    sorted_item = inter.item[sorted_idx]
    item_tok = inter.item_tokens[sorted_item].tolist()
    cat_tok = inter.cat_tokens[inter.item_cat[sorted_item]].tolist()
    user_tok = inter.user_tokens[inter.user[sorted_idx]].tolist()
    neg_tok = inter.item_tokens[samples.negative].tolist()
    join = SEQ_SEPARATOR.join
    lines = []
    for s in chosen.tolist():
        p = int(samples.position[s])
        a = int(samples.hist_start[s])
        hist = join(item_tok[a:p])
        cats = join(cat_tok[a:p])
        user = user_tok[p]
        lines.append(f"1\t{user}\t{item_tok[p]}\t{hist}\t{cats}")
        lines.append(f"0\t{user}\t{neg_tok[s]}\t{hist}\t{cats}")
    return lines


def _items_in_output(inter: Interactions, sorted_idx: np.ndarray, samples: Samples) -> np.ndarray:
    """Item codes appearing in any output row (candidates or histories), in natural token order."""
    sorted_item = inter.item[sorted_idx]
    coverage = np.zeros(sorted_item.size + 1, dtype=np.int64)
    np.add.at(coverage, samples.hist_start, 1)
    np.add.at(coverage, samples.position, -1)
    in_history = np.cumsum(coverage[:-1]) > 0
    used = np.zeros(inter.item_tokens.shape[0], dtype=bool)
    used[sorted_item[in_history]] = True
    used[sorted_item[samples.position]] = True
    used[samples.negative] = True
    codes = np.flatnonzero(used)
    return codes[natural_order(inter.item_tokens[codes])]


def write_item_file(path: Path, item_tokens, cat_tokens, names=None) -> None:
    """Write ``<name>.item`` rows (already in the wanted order), headed with the field names ``names``
    (default: the configured ones, see :func:`inter_header`)."""
    _write_lines(path, item_header(names), (f"{i}\t{c}" for i, c in zip(item_tokens, cat_tokens)))


def write_split_files(out_dir: Path, name: str, lines_by_split: Dict[str, List[str]], names=None) -> Dict[str, int]:
    """Write the three ``.inter`` files, headed with the field names ``names`` (default: the configured ones,
    see :func:`inter_header`); returns rows per split."""
    rows = {}
    header = inter_header(names)
    for split in SPLITS:
        _write_lines(out_dir / f"{name}.{split}.inter", header, lines_by_split[split])
        rows[split] = len(lines_by_split[split])
    return rows


def write_user_file(source, target, user_field: str, names=None) -> None:
    """Write ``<name>.user`` (``target``) from the source's user atomic file, headed like the ``.inter`` files.

    The source's user column ``user_field`` is headed ``USER_ID_FIELD:token`` (:func:`user_header`; ``names``
    as in :func:`inter_header`); every other column and every row are copied byte for byte. Header errors
    name the file and line (:func:`read_header`). Written to a temporary name and renamed into place, so
    ``source`` may be ``target`` (a build into the source's folder under its name)."""
    source, target = Path(source), Path(target)
    header = user_header(read_header(source), user_field, source, names)
    with open(source, "r", encoding="utf-8", newline="") as handle:
        header_bytes = len(handle.readline().encode("utf-8"))  # the line read_header parsed, with its line end
    with atomic_write(target) as staging:  # its mode as open() gives the other outputs
        with open(staging, "wb") as out, open(source, "rb") as rows:
            out.write(header.encode("utf-8") + b"\n")
            rows.seek(header_bytes)
            shutil.copyfileobj(rows, out)


def output_file_names(name: str, with_user: bool) -> List[str]:
    """Output files in the fixed checksum order."""
    names = [f"{name}.{split}.inter" for split in SPLITS] + [f"{name}.item"]
    if with_user:
        names.append(f"{name}.user")
    return names


def checksum_files(out_dir: Path, names: List[str]) -> Dict[str, object]:
    """sha256 per file, and an overall sha256 over the lines ``<file>\\t<sha256>\\n`` in order."""
    per_file = {}
    for fname in names:
        digest = hashlib.sha256()
        with open(out_dir / fname, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        per_file[fname] = digest.hexdigest()
    overall = hashlib.sha256("".join(f"{f}\t{per_file[f]}\n" for f in names).encode("utf-8")).hexdigest()
    return {"files": per_file, "checksum": overall}


def finalize_build(out_dir: Path, name: str, user_source: Optional[Path], info: dict, user_field: str = "user_id",
                   names=None) -> dict:
    """Write/remove ``<name>.user``, checksum the outputs and write ``<name>.build.json``.

    ``<name>.user`` is written from ``user_source`` by :func:`write_user_file` (its column ``user_field``
    renamed to the configured user field, ``names`` as in :func:`inter_header`). ``info`` holds parameters,
    counts, source and the ``synthetic`` flag; the returned summary is ``info`` plus ``files``, ``checksum``,
    ``out_dir`` and ``name``.
    """
    user_target = out_dir / f"{name}.user"
    if user_source is not None:
        write_user_file(user_source, user_target, user_field, names)
    elif user_target.exists():
        user_target.unlink()  # stale file from an earlier build of the same name
    names = output_file_names(name, user_source is not None)
    sums = checksum_files(out_dir, names)
    sizes = {fname: (out_dir / fname).stat().st_size for fname in names}  # a fast first check on load
    build = {"format_version": BUILD_FORMAT_VERSION, "name": name, **info, **sums, "sizes": sizes}
    with open(out_dir / f"{name}.build.json", "w", encoding="utf-8", newline="\n") as handle:
        json.dump(build, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
    return {**build, "out_dir": str(out_dir)}


def build_ctr_dataset(
    inter: Interactions,
    out_dir,
    name: str,
    opts: BuildOptions,
    *,
    source: dict,
    extra_counts: Optional[dict] = None,
    user_source=None,
    user_field: str = "user_id",
    synthetic: bool = False,
    rng=None,
) -> dict:
    """Run the protocol on ``inter`` and write the full prepared dataset; returns the summary.

    The files are headed with the field names ``opts.fields``. ``user_source`` (optional): the source's user
    atomic file, whose user column is ``user_field``; it becomes ``<name>.user`` (:func:`write_user_file`).
    ``rng`` (optional) continues an existing ``numpy.random.Generator`` (the synthetic generator passes the
    one it generated the data with); by default ``default_rng(opts.seed)``.
    """
    opts = opts.validated()
    if inter.user.size == 0:
        raise DataFormatError(f"no interactions to build '{name}' from ({source}).")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(opts.seed) if rng is None else rng
    sorted_idx = sort_interactions(inter)
    samples = select_samples(inter, sorted_idx, opts, rng)
    if samples.position.size == 0:
        raise DataFormatError(f"'{name}': no user has two or more interactions, so no sample has a history.")

    lines = {split: _sample_lines(inter, sorted_idx, samples, np.flatnonzero(samples.split == SPLIT_CODES[split]))
             for split in SPLITS}
    rows = write_split_files(out_dir, name, lines, opts.fields)
    items = _items_in_output(inter, sorted_idx, samples)
    item_cats = inter.cat_tokens[inter.item_cat[items]]
    write_item_file(out_dir / f"{name}.item", inter.item_tokens[items], item_cats, opts.fields)

    counts = dict(samples.counts)
    counts.update(extra_counts or {})
    counts.update({
        "users": int(samples.position.size and np.unique(inter.user[sorted_idx][samples.position]).size),
        "items": int(items.size),
        "categories": int(np.unique(item_cats).size),
        "items_with_default_category": int(np.count_nonzero(item_cats == DEFAULT_CATEGORY)),
        "samples": int(2 * samples.position.size),
        **{f"{split}_rows": rows[split] for split in SPLITS},
        **{f"{split}_users": int(np.count_nonzero(samples.split == SPLIT_CODES[split])) if opts.protocol == "dien"
           else int(np.unique(inter.user[sorted_idx][samples.position[samples.split == SPLIT_CODES[split]]]).size)
           for split in SPLITS},
    })
    info = {"parameters": opts.as_dict(), "counts": counts, "source": source, "synthetic": bool(synthetic)}
    return finalize_build(out_dir, name, user_source, info, user_field=user_field, names=opts.fields)


def format_summary(summary: dict) -> str:
    """Human-readable multi-line summary (printed by the CLI)."""
    head = f"dataset '{summary['name']}' -> {summary['out_dir']}"
    if summary.get("synthetic"):
        head = "SYNTHETIC " + head + " (generated data, NOT a real dataset)"
    lines = [head]
    params = dict(summary.get("parameters", {}))
    fields = params.pop("fields", None) or {}
    lines.append("  parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    if fields:
        lines.append("  fields: " + ", ".join(f"{k}={v}" for k, v in fields.items()))
    for key, value in summary.get("counts", {}).items():
        lines.append(f"  {key}: {value}")
    lines.append(f"  checksum (sha256): {summary['checksum']}")
    return "\n".join(lines)
