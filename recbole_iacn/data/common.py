"""Shared constants, errors and small helpers for the dataset tools.

Everything here is stdlib/numpy/pandas only: importing it never pulls in torch, ray or recbole.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import re
import zlib
from pathlib import Path
from typing import Iterator, Tuple

import numpy as np
import pandas as pd

from recbole_iacn.errors import DataFormatError, MalformedLineError, MissingFieldError

# ---------------------------------------------------------------------------------------------
# Defaults shared by every builder (see dataset/README.md for the contract they implement).
# ---------------------------------------------------------------------------------------------
DEFAULT_SEED = 2020
DEFAULT_MAX_HISTORY = 50
DEFAULT_VALID_RATIO = 0.1
DEFAULT_TEST_RATIO = 0.1
DEFAULT_CATEGORY = "default_cat"
PROTOCOLS = ("dense", "dien")
NEG_SAMPLINGS = ("popularity", "uniform")
DEFAULT_NEG_SAMPLING = "popularity"
#: The three CTR split files, ``<name>.<split>.inter``, in order (the only definition in the package).
SPLITS = ("train", "valid", "test")
#: RecBole's field types (``recbole.utils.FeatureType`` values), named here so reading a header needs no RecBole.
FIELD_TYPES = ("token", "float", "token_seq", "float_seq")
#: Line number of the typed ``name:type`` header in an atomic file.
HEADER_LINE = 1
#: Line number of the first row of an atomic file.
FIRST_DATA_LINE = HEADER_LINE + 1
#: Columns of a CTR ``.inter`` file: the config key naming each field, and its type.
INTER_COLUMNS = (
    ("LABEL_FIELD", "float"),
    ("USER_ID_FIELD", "token"),
    ("ITEM_ID_FIELD", "token"),
    ("HISTORY_ITEM_FIELD", "token_seq"),
    ("HISTORY_CATEGORY_FIELD", "token_seq"),
)
#: Columns of a CTR ``.item`` file.
ITEM_COLUMNS = (("ITEM_ID_FIELD", "token"), ("ITEM_CATEGORY_FIELD", "token"))
#: Names written for a field that overall.yaml sets to null (the converters always write every column).
DEFAULT_FIELD_NAMES = {
    "LABEL_FIELD": "label",
    "USER_ID_FIELD": "user_id",
    "ITEM_ID_FIELD": "item_id",
    "HISTORY_ITEM_FIELD": "item_id_list",
    "HISTORY_CATEGORY_FIELD": "cate_id_list",
    "ITEM_CATEGORY_FIELD": "cate_id",
}
#: The separator between tokens of a token_seq field in RecBole atomic files.
SEQ_SEPARATOR = " "
#: What a run of whitespace inside an id or a category becomes.
WHITESPACE_REPLACEMENT = "_"
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
UTF8_BOM = b"\xef\xbb\xbf"
BUILD_FORMAT_VERSION = 1

_WHITESPACE_RUN = re.compile(r"\s+")


def field_names() -> dict:
    """The configured field names (``USER_ID_FIELD``, ``ITEM_ID_FIELD``, ...) from ``properties/overall.yaml``.

    The converters run without a RecBole config, so they write the fields the YAML defaults name; a
    dataset loaded with other names in a config file needs those names in its files' headers."""
    from recbole_iacn.settings import defaults

    values = defaults([])
    return {key: values.get(key) for key, _ in INTER_COLUMNS + ITEM_COLUMNS}


def resolve_field_names(names=None) -> dict:
    """The name written for each column of the CTR files: config key -> field name.

    ``names`` (a dict or a config; default :func:`field_names`) gives the names; a key it lacks takes
    overall.yaml's name, and a field configured as null its :data:`DEFAULT_FIELD_NAMES` name (every
    converter writes all the columns)."""
    keys = [key for key, _ in INTER_COLUMNS + ITEM_COLUMNS]
    given = {} if names is None else {key: names[key] for key in keys if key in names}
    if len(given) < len(keys):
        given = {**field_names(), **given}
    return {key: given.get(key) or DEFAULT_FIELD_NAMES[key] for key in keys}


def _header(columns, names=None) -> str:
    names = resolve_field_names(names)
    return "\t".join(f"{names[key]}:{ftype}" for key, ftype in columns)


def inter_header(names=None) -> str:
    """Header of a CTR ``.inter`` file for the field names ``names`` (default: :func:`field_names`)."""
    return _header(INTER_COLUMNS, names)


def item_header(names=None) -> str:
    """Header of a CTR ``.item`` file for the field names ``names`` (default: :func:`field_names`)."""
    return _header(ITEM_COLUMNS, names)


def user_header(fields, user_field: str, path, names=None) -> str:
    """Header of a CTR ``.user`` file made from a source user file whose header is ``fields``
    (``[(field, type), ...]``, as :func:`read_header` returns it).

    The source's user column ``user_field`` (the name its ``.inter`` file uses) becomes
    ``USER_ID_FIELD:token`` (the configured name, as in :func:`inter_header`); the other columns are kept.
    A source without ``user_field`` raises :class:`MissingFieldError`, one whose other column already has
    the configured name :class:`DataFormatError`, both naming ``path``."""
    present = [field for field, _ in fields]
    if user_field not in present:
        raise MissingFieldError(path, user_field, present,
                                "The user file names its user column as the interaction file does (--user-field).")
    user_name = resolve_field_names(names)["USER_ID_FIELD"]
    if user_name != user_field and user_name in present:
        raise DataFormatError(
            f"{path}, line {HEADER_LINE}: the user column '{user_field}' is written as '{user_name}' "
            f"(USER_ID_FIELD), but another column already has that name; rename that column."
        )
    return "\t".join(f"{user_name}:token" if field == user_field else f"{field}:{ftype}" for field, ftype in fields)


def __getattr__(name):  # INTER_HEADER / ITEM_HEADER: read when asked, so they follow overall.yaml
    if name == "INTER_HEADER":
        return inter_header()
    if name == "ITEM_HEADER":
        return item_header()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_header(line: str, path, separator: str = "\t") -> list:
    """``[(field, type), ...]`` of an atomic file's typed header line (``name:type`` columns).

    A UTF-8 byte-order mark (editors on Windows write one) and the line end are dropped; a column
    that is not ``name:type``, or whose type is not one of RecBole's, raises :class:`DataFormatError`
    naming the file and line. The one header parser of the package: the converters and ``CTRDataset``
    both use it."""
    fields = []
    for position, spec in enumerate(line.rstrip("\r\n").lstrip("\ufeff").split(separator)):
        field, colon, type_name = spec.partition(":")
        if not colon or not field:
            raise DataFormatError(
                f"{path}, line {HEADER_LINE}: column {position + 1} is headed {spec!r}, not 'name:type'. An "
                f"atomic file starts with a typed header such as 'user_id:token{separator!r}item_id:token'; "
                f"types are {', '.join(FIELD_TYPES)}."
            )
        if type_name not in FIELD_TYPES:
            raise DataFormatError(
                f"{path}, line {HEADER_LINE}: column {field!r} has unknown type {type_name!r}; use one of "
                f"{', '.join(FIELD_TYPES)}."
            )
        fields.append((field, type_name))
    return fields


def read_header(path, separator: str = "\t", encoding: str = "utf-8") -> list:
    """:func:`parse_header` of the first line of the atomic file ``path``."""
    try:
        with open(path, "r", encoding=encoding, newline="") as handle:
            line = handle.readline()
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not readable as {encoding} text ({exc}).") from None
    return parse_header(line, path, separator)


def first_bad_width(path, columns: int):
    """``(line number, values)`` of the first non-blank row of a tab-separated atomic file without ``columns``
    values (None if every row has them)."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            raw = raw.rstrip(b"\r\n")
            if number > HEADER_LINE and raw and raw.count(b"\t") != columns - 1:
                return number, raw.count(b"\t") + 1
    return None


def wrong_width_error(path, columns: int, where) -> DataFormatError:
    """The error for the row ``where`` (from :func:`first_bad_width`) of ``path``."""
    return DataFormatError(f"{path}:{where[0]}: {where[1]} tab-separated values, but the header has {columns} "
                           "columns; every row of a RecBole atomic file needs one value per column.")


@contextlib.contextmanager
def no_wider_first_row(path, width: int):
    """Around ``pd.read_csv(..., names=<the header's fields>, index_col=False)``: pandas refuses a later row
    with more values than the header, but for the first row it only warns (``ParserWarning``) and drops the
    extra values. Turn that into a :class:`DataFormatError` naming the line."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            yield
        except pd.errors.ParserWarning:
            where = first_bad_width(path, width) or (FIRST_DATA_LINE, "more")
            raise wrong_width_error(path, width, where) from None


def sanitize_token(value: str) -> str:
    """Return ``value`` usable as a RecBole token: stripped, inner whitespace runs replaced by ``_``."""
    return _WHITESPACE_RUN.sub(WHITESPACE_REPLACEMENT, value.strip())


def sanitize_category(value) -> str:
    """Like :func:`sanitize_token` but an empty/missing category becomes ``default_cat``."""
    if value is None:
        return DEFAULT_CATEGORY
    token = sanitize_token(str(value))
    return token if token else DEFAULT_CATEGORY


def intern_tokens(values, path="<input>", what="id") -> Tuple[np.ndarray, np.ndarray]:
    """Map raw id strings to dense int codes in order of first appearance.

    Ids are sanitized (:func:`sanitize_token`) before interning, so two raw ids differing only in
    whitespace share one code. Returns ``(codes, tokens)`` with ``tokens[codes[i]]`` the sanitized
    id of ``values[i]``. An empty id raises :class:`DataFormatError`.
    """
    raw_codes, raw_uniques = pd.factorize(np.asarray(values, dtype=object), sort=False)
    cleaned = np.array([sanitize_token(str(v)) for v in raw_uniques], dtype=object)
    empty = np.flatnonzero(cleaned == "")
    if empty.size:
        first_row = int(np.flatnonzero(raw_codes == empty[0])[0])
        raise DataFormatError(
            f"{path}: empty {what} in data row {first_row + 1}; every row needs a non-empty {what}."
        )
    merged_codes, tokens = pd.factorize(cleaned, sort=False)
    return merged_codes[raw_codes].astype(np.int64), np.asarray(tokens, dtype=object)


def natural_order(tokens) -> np.ndarray:
    """Deterministic order of tokens: numeric when every token is a decimal integer, else by string."""
    tokens = list(tokens)
    if tokens and all(t.isdecimal() for t in tokens):
        keys = [(int(t), t) for t in tokens]
    else:
        keys = [(0, t) for t in tokens]
    return np.array(sorted(range(len(tokens)), key=keys.__getitem__), dtype=np.int64)


def check_existing_file(path, what: str) -> Path:
    """Return ``path`` as a Path, raising :class:`FileNotFoundError` with a clear message if absent."""
    path = Path(path)
    if path.is_dir():
        raise DataFormatError(f"{what} {path} is a folder, not a file; pass the file inside it.")
    if not path.exists():  # a character device such as /dev/null reads as an empty file
        raise FileNotFoundError(f"{what} not found: {path} (check the path; no such file).")
    return path


def open_binary_maybe_gzip(path) -> io.BufferedIOBase:
    """Open ``path`` for binary reading, transparently decompressing when it starts with gzip magic."""
    path = check_existing_file(path, "input file")
    with open(path, "rb") as probe:
        magic = probe.read(4)
    if magic.startswith(ZIP_MAGICS):
        raise DataFormatError(f"{path} is a zip archive, not a text or .gz file: unzip it and pass the file inside "
                        "(e.g. reviews_Books_5.json).")
    if magic[:len(GZIP_MAGIC)] == GZIP_MAGIC:
        return gzip.open(path, "rb")
    return open(path, "rb")


def iter_text_lines(path) -> Iterator[Tuple[int, str]]:
    """Yield ``(line_no, text)`` for every non-blank line (1-based numbers, CR/LF stripped).

    Gzip or plain files are detected by magic bytes (a zip archive is refused); text is decoded as UTF-8
    (a byte-order mark on line 1 is dropped) and an undecodable line raises :class:`MalformedLineError`
    naming the file and line; truncated or corrupt gzip data raises :class:`DataFormatError`.
    """
    with open_binary_maybe_gzip(path) as handle:
        line_no = 0
        try:
            for line_no, raw in enumerate(handle, start=1):
                raw = raw.rstrip(b"\r\n")
                if line_no == 1 and raw.startswith(UTF8_BOM):
                    raw = raw[len(UTF8_BOM):]
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise MalformedLineError(path, line_no, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
                yield line_no, text
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # raised while decompressing
            raise DataFormatError(
                f"{path}:{line_no + 1}: the gzip data is truncated or corrupt ({exc}). The file is damaged (an "
                "interrupted download?): fetch it again; --skip-malformed cannot skip damage inside the "
                "compressed data."
            ) from None


def check_ratio(value: float, name: str) -> float:
    """Validate a split ratio in [0, 1)."""
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise DataFormatError(f"{name} must be in [0, 1), got {value}.")
    return value


def check_choice(value: str, choices, name: str) -> str:
    """Validate that ``value`` is one of ``choices``."""
    if value not in choices:
        raise DataFormatError(f"{name} must be one of {', '.join(choices)}; got '{value}'.")
    return value


def check_max_history(value) -> int | None:
    """Validate ``max_history``: a positive int, or None/0 for unlimited (returned as None)."""
    if value is None or int(value) == 0:
        return None
    value = int(value)
    if value < 0:
        raise DataFormatError(f"max_history must be positive (or 0 for unlimited), got {value}.")
    return value
