"""Shared constants, errors and small helpers for the dataset tools.

Everything here is stdlib/numpy/pandas only: importing it never pulls in torch, ray or recbole.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from pathlib import Path
from typing import Iterator, Tuple

import numpy as np
import pandas as pd

from recbole_iacn.errors import DataFormatError

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
SPLITS = ("train", "valid", "test")

INTER_HEADER = "label:float\tuser_id:token\titem_id:token\titem_id_list:token_seq\tcate_id_list:token_seq"
ITEM_HEADER = "item_id:token\tcate_id:token"
#: The separator between tokens of a token_seq field in RecBole atomic files.
SEQ_SEPARATOR = " "
#: What a run of whitespace inside an id or a category becomes.
WHITESPACE_REPLACEMENT = "_"
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
UTF8_BOM = b"\xef\xbb\xbf"
BUILD_FORMAT_VERSION = 1

_WHITESPACE_RUN = re.compile(r"\s+")


class DataError(DataFormatError):
    """Any problem with the input data or the build parameters (the CLI turns it into exit code 2)."""


class MalformedLineError(DataError):
    """A line of an input file could not be understood.

    Attributes ``path`` and ``line_no`` (1-based) say where, ``reason`` says what is wrong.
    """

    def __init__(self, path, line_no: int, reason: str, hint: str = ""):
        self.path = str(path)
        self.line_no = int(line_no)
        self.reason = reason
        message = f"{self.path}:{self.line_no}: malformed line: {reason}."
        if hint:
            message += f" {hint}"
        super().__init__(message)


class MissingFieldError(DataError):
    """A required field/column is absent from an input file."""

    def __init__(self, path, field: str, available, hint: str = ""):
        self.path = str(path)
        self.field = field
        message = (
            f"{self.path}: required field '{field}' is missing (fields present: "
            f"{', '.join(available) if available else 'none'})."
        )
        if hint:
            message += f" {hint}"
        super().__init__(message)


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
    id of ``values[i]``. An empty id raises :class:`DataError`.
    """
    raw_codes, raw_uniques = pd.factorize(np.asarray(values, dtype=object), sort=False)
    cleaned = np.array([sanitize_token(str(v)) for v in raw_uniques], dtype=object)
    empty = np.flatnonzero(cleaned == "")
    if empty.size:
        first_row = int(np.flatnonzero(raw_codes == empty[0])[0])
        raise DataError(
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
        raise DataError(f"{what} {path} is a folder, not a file; pass the file inside it.")
    if not path.exists():  # a character device such as /dev/null reads as an empty file
        raise FileNotFoundError(f"{what} not found: {path} (check the path; no such file).")
    return path


def open_binary_maybe_gzip(path) -> io.BufferedIOBase:
    """Open ``path`` for binary reading, transparently decompressing when it starts with gzip magic."""
    path = check_existing_file(path, "input file")
    with open(path, "rb") as probe:
        magic = probe.read(4)
    if magic.startswith(ZIP_MAGICS):
        raise DataError(f"{path} is a zip archive, not a text or .gz file: unzip it and pass the file inside "
                        "(e.g. reviews_Books_5.json).")
    if magic[:len(GZIP_MAGIC)] == GZIP_MAGIC:
        return gzip.open(path, "rb")
    return open(path, "rb")


def iter_text_lines(path) -> Iterator[Tuple[int, str]]:
    """Yield ``(line_no, text)`` for every non-blank line (1-based numbers, CR/LF stripped).

    Gzip or plain files are detected by magic bytes (a zip archive is refused); text is decoded as UTF-8
    (a byte-order mark on line 1 is dropped) and an undecodable line raises :class:`MalformedLineError`
    naming the file and line; truncated or corrupt gzip data raises :class:`DataError`.
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
            raise DataError(
                f"{path}:{line_no + 1}: the gzip data is truncated or corrupt ({exc}). The file is damaged (an "
                "interrupted download?): fetch it again; --skip-malformed cannot skip damage inside the "
                "compressed data."
            ) from None


def check_ratio(value: float, name: str) -> float:
    """Validate a split ratio in [0, 1)."""
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise DataError(f"{name} must be in [0, 1), got {value}.")
    return value


def check_choice(value: str, choices, name: str) -> str:
    """Validate that ``value`` is one of ``choices``."""
    if value not in choices:
        raise DataError(f"{name} must be one of {', '.join(choices)}; got '{value}'.")
    return value


def check_max_history(value) -> int | None:
    """Validate ``max_history``: a positive int, or None/0 for unlimited (returned as None)."""
    if value is None or int(value) == 0:
        return None
    value = int(value)
    if value < 0:
        raise DataError(f"max_history must be positive (or 0 for unlimited), got {value}.")
    return value
