"""``CTRDataset``: RecBole's ``Dataset`` for prepared CTR samples with behaviour sequences.

Differences from RecBole's ``Dataset`` (everything else, e.g. remapping, joins, dataloaders, is
RecBole's own):

* atomic files are read with pandas' C parser and validated: a malformed header, a row with the wrong
  number of columns, a non-numeric float or a label other than 0/1 is a :class:`DataFormatError`
  naming the file and line;
* behaviour sequences (``HISTORY_ITEM_FIELD`` / ``HISTORY_CATEGORY_FIELD``) keep their *most recent*
  ``MAX_ITEM_LIST_LENGTH`` entries, so the behaviour length is a per-run setting (RecBole's ``seq_len``
  keeps the first entries);
* ``share_vocab`` puts further fields in one id space, as ``alias_of_item_id`` does for items
  (e.g. ``{cate_id: [cate_id_list]}``).
"""

from __future__ import annotations

import csv
import os
from itertools import chain

import numpy as np
import pandas as pd
import torch
from recbole.data.dataset import Dataset
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType, set_color

from recbole_iacn.data.common import HEADER_LINE, INTER_COLUMNS, ITEM_COLUMNS, inter_header, item_header, read_header
from recbole_iacn.checkpoint import interrupts_kept
from recbole_iacn.errors import DataFormatError

TAB = "\t"
_CHUNK_BYTES = 1 << 26  # row-width check reads the file in 64 MiB blocks
#: type every CTR field must have: name of the config key -> FeatureType
REQUIRED_TYPES = {
    "USER_ID_FIELD": FeatureType.TOKEN,
    "ITEM_ID_FIELD": FeatureType.TOKEN,
    "LABEL_FIELD": FeatureType.FLOAT,
    "HISTORY_ITEM_FIELD": FeatureType.TOKEN_SEQ,
    "HISTORY_CATEGORY_FIELD": FeatureType.TOKEN_SEQ,
}


def find_bad_row(filepath, separator: str, columns: int):
    """First data row whose number of ``separator``-separated values differs from ``columns``.

    Returns ``(line_number, values_found)`` or None. Blank lines are ignored (pandas skips them).
    Vectorised over 64 MiB blocks, so checking a large file costs about one extra read.
    """
    sep = ord(separator)
    line_number = 0  # lines completed before the current block
    pending = 0  # separators seen on the unfinished line carried over from the previous block
    pending_length = 0
    with open(filepath, "rb") as f:
        while True:
            block = f.read(_CHUNK_BYTES)
            data = np.frombuffer(block, dtype=np.uint8)
            ends = np.flatnonzero(data == 10)
            seps = np.flatnonzero(data == sep)
            counts = np.diff(np.concatenate([[0], np.searchsorted(seps, ends)]))
            starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else np.array([], dtype=np.int64)
            lengths = ends - starts
            lengths = lengths - (data[np.maximum(ends - 1, 0)] == 13) if len(ends) else lengths  # CRLF
            if len(ends):
                counts[0] += pending
                lengths[0] += pending_length
            for index in np.flatnonzero((counts != columns - 1) & (lengths > 0)):
                number = line_number + int(index) + 1
                if number > HEADER_LINE:
                    return number, int(counts[index]) + 1
            line_number += len(ends)
            tail = data[ends[-1] + 1 :] if len(ends) else data
            pending = (pending if not len(ends) else 0) + int((tail == sep).sum())
            pending_length = (pending_length if not len(ends) else 0) + len(tail)
            if not block:
                break
    if pending_length > 0 and pending != columns - 1:
        return line_number + 1, pending + 1
    return None


def split_token_sequences(values, separator: str) -> list:
    """Separator-joined strings → one (view of a) string array per row, empty tokens dropped."""
    if separator == " ":
        rows = [s.split() for s in values]
    else:
        rows = [[t for t in s.split(separator) if t] for s in values]
    lengths = sequence_lengths(rows)
    flat = np.array(list(chain.from_iterable(rows)), dtype=str)
    return np.split(flat, np.cumsum(lengths)[:-1]) if len(rows) else []


def sequence_lengths(values) -> np.ndarray:
    return np.fromiter(map(len, values), dtype=np.int64, count=len(values))


def concat_sequences(values) -> np.ndarray:
    return np.concatenate(list(values)) if len(values) else np.array([], dtype=str)


def pad_sequences(values, width: int) -> torch.Tensor:
    """Rows of ids (each at most ``width`` long after truncation) → ``[N, width]`` right-padded with 0."""
    values = [v[:width] for v in values]
    lengths = sequence_lengths(values)
    out = np.zeros((len(values), width), dtype=np.int64)
    if len(values):
        out[np.arange(width) < lengths[:, None]] = np.concatenate(values).astype(np.int64)
    return torch.from_numpy(out)


class CTRDataset(Dataset):
    """A RecBole dataset of labeled CTR samples whose rows carry the user's behaviour sequence."""

    def _get_field_from_config(self):
        super()._get_field_from_config()
        self.history_item_field = self.config["HISTORY_ITEM_FIELD"]
        self.history_category_field = self.config["HISTORY_CATEGORY_FIELD"]
        self.item_category_field = self.config["ITEM_CATEGORY_FIELD"]
        self.max_history = self.config["MAX_ITEM_LIST_LENGTH"]
        if not isinstance(self.max_history, int) or self.max_history < 1:
            raise DataFormatError(
                f"MAX_ITEM_LIST_LENGTH must be a positive integer, got {self.max_history!r}."
            )

    @property
    def history_fields(self) -> list[str]:
        return [f for f in (self.history_item_field, self.history_category_field) if f]

    # ------------------------------------------------------------------ loading
    def _load_feat(self, filepath, source):
        load_col, unload_col = self._get_load_and_unload_col(source)
        if load_col == set():
            return None
        separator = self.config["field_separator"]
        encoding = self.config["encoding"]
        columns, width = self._read_header(filepath, source, separator, encoding, load_col, unload_col)
        for _, field, ftype in columns:  # before the values: a wrong type would be reported as a wrong value
            self._check_type(filepath, field, ftype)
        bad = find_bad_row(filepath, separator, width)
        if bad is not None:
            raise DataFormatError(
                f"{filepath}, line {bad[0]}: {bad[1]} {separator!r}-separated values, but the header "
                f"has {width} columns. Every row needs one value per column (an empty value is allowed)."
            )
        if not columns:
            self.logger.warning(f"No columns have been loaded from [{filepath}]")
            return None
        df = self._read_body(filepath, separator, encoding, columns)
        self._raw_lengths = {}
        for position, field, ftype in columns:
            df[field] = self._convert_column(filepath, field, ftype, df[field])
        self._check_label(filepath, df)
        self._check_history_lengths(filepath)
        if source == FeatureSource.INTERACTION:
            self._inter_files.append((str(filepath), df))
        return df

    def _check_type(self, where, field, ftype) -> None:
        """A field that a CTR model reads (``REQUIRED_TYPES``) declared with another type in the header of
        ``where`` is a :class:`DataFormatError` naming the type to write."""
        for key, wanted in REQUIRED_TYPES.items():
            if field and field == self.config[key] and ftype != wanted:
                raise DataFormatError(
                    f"{where}, line {HEADER_LINE}: {field} is declared {field}:{ftype.value}, but "
                    f"{key} fields are {wanted.value}: write '{field}:{wanted.value}' in the header"
                    + (" (a behaviour list holds space-separated tokens)." if wanted == FeatureType.TOKEN_SEQ else ".")
                )

    def _check_history_lengths(self, filepath):
        """Each row's behaviour lists (items, categories) must be equally long: the i-th category is the
        i-th item's."""
        fields = [f for f in self.history_fields if f in self._raw_lengths]
        if len(fields) < 2:
            return
        a, b = (self._raw_lengths[f] for f in fields[:2])
        bad = np.flatnonzero(a != b)
        if len(bad):
            row = int(bad[0])
            raise DataFormatError(
                f"{filepath}, line {row + HEADER_LINE + 1}: {fields[0]} has {a[row]} behaviours but {fields[1]} "
                f"has {b[row]} (and {len(bad) - 1} more such rows); the i-th category is the i-th behaviour's, so "
                "both lists need one entry per behaviour."
            )

    def _read_header(self, filepath, source, separator, encoding, load_col, unload_col):
        fields = read_header(filepath, separator, encoding)
        self._headers[str(filepath)] = fields
        columns = []
        for position, (field, type_name) in enumerate(fields):
            ftype = FeatureType(type_name)
            if load_col is not None and field not in load_col:
                continue
            if unload_col is not None and field in unload_col:
                continue
            if isinstance(source, FeatureSource) or source != "link":
                self.field2source[field] = source
                self.field2type[field] = ftype
                if not ftype.value.endswith("seq"):
                    self.field2seqlen[field] = 1
                if "float" in ftype.value:
                    self.field2bucketnum[field] = 2
            columns.append((position, field, ftype))
        return columns, len(fields)

    def _read_body(self, filepath, separator, encoding, columns):
        positions = [p for p, _, _ in columns]
        names = [f for _, f, _ in columns]
        try:
            with interrupts_kept():  # Ctrl-C during the read is not a parser error
                df = pd.read_csv(
                    filepath,
                    sep=separator,
                    header=None,
                    skiprows=1,
                    usecols=positions,
                    dtype=str,
                    keep_default_na=False,
                    na_filter=False,
                    quoting=csv.QUOTE_NONE,
                    encoding=encoding,
                    engine="c",
                )
        except pd.errors.EmptyDataError:
            df = pd.DataFrame({p: pd.Series(dtype=str) for p in positions})
        except pd.errors.ParserError as exc:
            raise DataFormatError(
                f"{filepath}: {exc}. Every row must have as many {separator!r}-separated values as "
                "the header has columns (line numbers count the header as line 1)."
            ) from None
        except ValueError as exc:  # usecols beyond the data
            raise DataFormatError(f"{filepath}: {exc}.") from None
        df = df[positions]
        df.columns = names
        return df

    def _convert_column(self, filepath, field, ftype, column):
        values = column.to_numpy(dtype=object)
        if ftype == FeatureType.TOKEN:
            return column.where(column != "", np.nan)
        if ftype == FeatureType.FLOAT:
            numbers = pd.to_numeric(column, errors="coerce")
            bad = numbers.isna().to_numpy() & (column.str.strip() != "").to_numpy()
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataFormatError(
                    f"{filepath}, line {row + HEADER_LINE + 1}: {field} is a float field, but the "
                    f"value is {values[row]!r}."
                )
            return numbers.astype(np.float64)
        separator = self.config["seq_separator"]
        if ftype == FeatureType.TOKEN_SEQ:
            seqs = split_token_sequences(values, separator)
            self._raw_lengths[field] = sequence_lengths(seqs)
        else:
            try:
                seqs = [np.array([float(t) for t in s.split(separator) if t]) for s in values]
            except ValueError as exc:
                raise DataFormatError(f"{filepath}: {field} is a float_seq field: {exc}.") from None
        seqs = self._limit_length(field, seqs)
        self.field2seqlen[field] = max(self.field2seqlen.get(field, 1), max(map(len, seqs), default=1), 1)
        return pd.Series(seqs, index=column.index, dtype=object)

    def _limit_length(self, field, seqs):
        if field in self.history_fields:
            limit = self.max_history
            return [s[-limit:] if len(s) > limit else s for s in seqs]
        seq_len = self.config["seq_len"]
        if seq_len and field in seq_len:
            limit = seq_len[field]
            seqs = [s[:limit] if len(s) > limit else s for s in seqs]
        return seqs

    def _check_label(self, filepath, df):
        if self.label_field not in df:
            return
        labels = df[self.label_field].to_numpy()
        bad = ~np.isin(labels, (0.0, 1.0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataFormatError(
                f"{filepath}, line {row + HEADER_LINE + 1}: {self.label_field} must be 0 or 1 for "
                f"click-through-rate training, got {labels[row]!r}."
            )

    def _load_data(self, token, dataset_path):
        self._headers = {}
        self._inter_files = []
        try:
            super()._load_data(token, dataset_path)
            self._check_split_files()
            self._check_required_fields()
            self._check_items_known()
        finally:
            self._inter_files = []

    def _check_split_files(self):
        """The split files must declare the same fields (a field missing from one split would be
        filled with its mean there) and hold at least one row each (an empty test split gave an empty
        test result)."""
        files = [path for path, _ in self._inter_files]
        headers = {path: self._headers.get(path, []) for path in files}
        declared = list(dict.fromkeys(f for path in files for f in headers[path]))
        problems = []
        for path in files:
            lacking = [f for f in declared if f not in headers[path]]
            if lacking:
                having = [p for p in files if lacking[0] in headers[p]]
                problems.append(f"{path} lacks {', '.join(f'{n}:{t}' for n, t in lacking)} (declared by "
                                f"{', '.join(having)})")
        if problems:
            raise DataFormatError(
                f"The split files of dataset {self.dataset_name!r} declare different fields on line {HEADER_LINE}: "
                + "; ".join(problems) + ". A field missing from a split would be filled with its mean there; give "
                "every split file the same header, or rebuild the files with `python -m recbole_iacn.data ...`."
            )
        for path, df in self._inter_files:
            if len(df) == 0:
                raise DataFormatError(
                    f"{path} has no rows (only its header): training, validation and testing each need at "
                    "least one sample. Rebuild the dataset, or check that the file was written completely."
                )

    def _check_items_known(self):
        """Candidate and behaviour items must have a row in the item file (which gives their category);
        otherwise RecBole would silently make them new items without features."""
        if self.item_feat is None or self.iid_field not in self.item_feat:
            return
        known = pd.Index(self.item_feat[self.iid_field].dropna().unique())
        item_file = os.path.join(self.dataset_path, f"{self.dataset_name}.item")
        for path, df in self._inter_files:
            for field in (self.iid_field, self.history_item_field):
                if not field or field not in df:
                    continue
                values = df[field]
                if self.field2type.get(field) == FeatureType.TOKEN_SEQ:
                    lengths = sequence_lengths(values.values)
                    tokens = concat_sequences(values.values)
                    rows = np.repeat(np.arange(len(values)), lengths)
                else:
                    tokens = values.to_numpy(dtype=object)
                    rows = np.arange(len(values))
                    present = ~pd.isna(tokens)
                    tokens, rows = tokens[present], rows[present]
                if not len(tokens):
                    continue
                missing = ~pd.Index(tokens).isin(known)
                if missing.any():
                    first = int(np.flatnonzero(missing)[0])
                    count = len(pd.unique(tokens[missing]))
                    raise DataFormatError(
                        f"{path}, line {int(rows[first]) + HEADER_LINE + 1}: {field} holds {str(tokens[first])!r}, "
                        f"which has no row in {item_file} ({count} such item(s) in this file). Every item, as a "
                        "candidate or a behaviour, needs a row there with its category; add the rows, or rebuild "
                        "the dataset with `python -m recbole_iacn.data ...`."
                    )

    def _check_required_fields(self):
        required = [self.uid_field, self.iid_field, self.label_field, *self.history_fields]
        missing = [f for f in required if f and f not in self.field2type]
        if self.item_category_field and self.item_category_field not in self.field2type:
            missing.append(self.item_category_field)
        if missing:
            names = {key: self.config[key] for key, _ in INTER_COLUMNS + ITEM_COLUMNS}
            raise DataFormatError(
                f"Dataset {self.dataset_name!r} in {self.dataset_path} lacks the field(s) "
                f"{', '.join(missing)}. CTR models read '<name>.train/valid/test.inter' with "
                f"'{' '.join(inter_header(names).split(TAB))}' and '<name>.item' with "
                f"'{' '.join(item_header(names).split(TAB))}'; "
                "build them with `python -m recbole_iacn.data ...` (see dataset/README.md), or name "
                "your fields with USER_ID_FIELD, ITEM_ID_FIELD, LABEL_FIELD, HISTORY_ITEM_FIELD, "
                "HISTORY_CATEGORY_FIELD and ITEM_CATEGORY_FIELD (null to go without categories)."
            )
        files = ", ".join(p for p, _ in self._inter_files) or self.dataset_path
        for field, ftype in list(self.field2type.items()):
            self._check_type(files, field, ftype)
        lengths = sequence_lengths(self.inter_feat[self.history_item_field].values)
        empty = int((lengths == 0).sum())
        if empty:
            self.logger.warning(
                set_color(f"{empty} of {len(lengths)} samples have an empty behaviour sequence", "yellow")
                + "; they train the host model only (IaCN skips them)."
            )

    # ------------------------------------------------------------------ sequence handling
    # RecBole's _remap splits the new ids of a token sequence at np.cumsum(feat[field].agg(len)), an
    # aggregation pandas has deprecated (a FutureWarning on every load; a later pandas returns one number
    # there and the split breaks): this one counts the lengths directly. Kept for that, not for speed
    # (benchmarks/results/2026-11-30/dataset-overrides/dataset_overrides.md). RecBole's own
    # _concat_remaped_tokens is used: flattening on flat arrays gained too little to keep (same file).
    def _remap(self, remap_list):
        if len(remap_list) == 0:
            return
        tokens, split_point = self._concat_remaped_tokens(remap_list)
        new_ids_list, uniques = pd.factorize(tokens)
        new_ids_list = np.split(new_ids_list + 1, split_point)
        id_token = np.array(["[PAD]"] + list(uniques))
        token_id = {t: i for i, t in enumerate(id_token)}
        for (feat, field, ftype), new_ids in zip(remap_list, new_ids_list):
            if field not in self.field2id_token:
                self.field2id_token[field] = id_token
                self.field2token_id[field] = token_id
            if ftype == FeatureType.TOKEN:
                feat[field] = new_ids
            else:
                lengths = sequence_lengths(feat[field].values)
                feat[field] = pd.Series(np.split(new_ids, np.cumsum(lengths)[:-1]), index=feat.index, dtype=object)

    # Pads token sequences in one numpy step instead of one tensor per row; kept for speed, see
    # benchmarks/results/2026-11-30/dataset-overrides/dataset_overrides.md.
    def _dataframe_to_interaction(self, data):
        sequences = [k for k in data if self.field2type[k] == FeatureType.TOKEN_SEQ]
        interaction = super()._dataframe_to_interaction(data.drop(columns=sequences))
        padded = {k: pad_sequences(data[k].values, self.field2seqlen[k]) for k in sequences}
        return Interaction({**interaction.interaction, **padded})

    # ------------------------------------------------------------------ behaviour length
    def _remap_ID_all(self):
        super()._remap_ID_all()
        self._add_history_length()

    def _add_history_length(self):
        """Store each sample's number of real behaviours in ``ITEM_LIST_LENGTH_FIELD`` (as RecBole's
        sequential datasets do), so models mask by length, never by the ids found in padding."""
        field = self.config["ITEM_LIST_LENGTH_FIELD"]
        lengths = sequence_lengths(self.inter_feat[self.history_item_field].values)
        self.inter_feat[field] = lengths
        self.set_field_property(field, FeatureType.TOKEN, FeatureSource.INTERACTION, 1)

    # ------------------------------------------------------------------ shared vocabularies
    def _init_alias(self):
        super()._init_alias()
        for key, fields in (self.config["share_vocab"] or {}).items():
            group = [f for f in [key, *(fields or [])] if f in self.field2type]
            if len(group) < 2:
                continue
            for name, alias in self.alias.items():
                clash = np.intersect1d(alias, group)
                if len(clash):
                    raise DataFormatError(
                        f"share_vocab[{key!r}] and alias_of_{name} both contain {list(clash)}."
                    )
            self.alias[key] = np.array(group)
            self._rest_fields = np.setdiff1d(self._rest_fields, group, assume_unique=True)
