"""What ``reproduce.py`` trains: the runs of each table, seed by seed, and the settings each run overrides.

Table 1 trains four variants of each host over the same seeds (``VARIANTS``, see ``reproduce.py``); Table 2
trains base and IaCN at each behaviour length; the δ sweep trains ``<host>_IaCN`` at each δ; ``hosts`` trains
our host beside RecBole's class on the same CTR rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from benchmarks import common

HOSTS = tuple(common.host_names())
HOST_LABELS = common.host_labels()
IACN_SUFFIX = "_IaCN"
TABLES = ("1", "2", "delta", "hosts", "all")
#: Table 1's variants of each host (see reproduce.py's docstring) and RecBole's class on our rows (hosts).
VARIANTS = ("base", "wide", "lambda0", "iacn")
RECBOLE_VARIANT = "recbole"
DEFAULT_MAX_EPOCHS = 100
DEFAULT_STOPPING_STEP = 5
DEFAULT_DATASETS = ("ml-100k", "ml-1m-sample")
DEFAULT_SEEDS = 5
FIRST_SEED = common.FIRST_SEED
DEFAULT_LENGTHS = (10, 20, 50)
DEFAULT_DELTAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
DEFAULT_LENGTH_HOSTS = ("DIEN",)
DEFAULT_DELTA_HOST = "DIEN"
#: The columns that identify a run in ``runs.csv``.
KEY_COLUMNS = ("table", "dataset", "host", "variant", "seed", "max_len", "delta")


@dataclass(frozen=True)
class RunSpec:
    """One training run: ``variant`` of ``host`` on ``dataset`` with ``seed`` (and Table 2's length l
    or the δ sweep's δ)."""

    table: str
    dataset: str
    host: str
    variant: str  # one of VARIANTS or RECBOLE_VARIANT
    seed: int
    max_len: Optional[int] = None
    delta: Optional[float] = None

    @property
    def model(self) -> str:
        if self.variant == RECBOLE_VARIANT:
            return f"recbole.{self.host}{common.SAME_DATA}"
        return self.host + (IACN_SUFFIX if self.variant in ("lambda0", "iacn") else "")

    def overrides(self) -> dict:
        extra = {"seed": self.seed}
        if self.max_len is not None:
            extra["MAX_ITEM_LIST_LENGTH"] = self.max_len
        if self.delta is not None:
            extra["iacn_delta"] = self.delta
        if self.variant == "lambda0":
            extra["iacn_lambda"] = 0.0
        return extra

    def key(self) -> tuple:
        """What identifies a finished run in ``runs.csv`` (as text, the way the CSV reads back)."""
        return tuple("" if v is None else str(v) for v in
                     (self.table, self.dataset, self.host, self.variant, self.seed, self.max_len, self.delta))


def row_key(row: dict) -> tuple:
    """The :meth:`RunSpec.key` of a row of ``runs.csv`` (as :func:`benchmarks.reproduce_runs.read_rows` reads it
    back: a column left empty is ``None``), so that a finished run is found again.

    >>> row = {"table": "2", "dataset": "d", "host": "DIEN", "variant": "iacn", "seed": 2020, "max_len": 10,
    ...        "delta": None, "test_auc": 0.8, "error": ""}
    >>> row_key(row) == RunSpec("2", "d", "DIEN", "iacn", 2020, max_len=10).key()
    True
    """
    return tuple("" if row.get(k) in (None, "") or row.get(k) != row.get(k) else str(row.get(k))
                 for k in KEY_COLUMNS)


def plan(tables: Sequence[str], hosts: Sequence[str], datasets: Sequence[str], seeds: Sequence[int],
         lengths: Sequence[int] = DEFAULT_LENGTHS, length_hosts: Sequence[str] = DEFAULT_LENGTH_HOSTS,
         deltas: Sequence[float] = DEFAULT_DELTAS, delta_host: str = DEFAULT_DELTA_HOST,
         variants: Sequence[str] = VARIANTS) -> list[RunSpec]:
    """Every run the requested tables need, seed by seed: a table cut short holds complete pairs for
    the seeds it reached (runs shared by two tables are planned twice, on purpose: each table is a
    self-contained experiment).

    >>> runs = plan(("1", "2", "delta"), ["DIN", "DIEN"], ["d"], [1, 2], lengths=[10, 20], length_hosts=["DIEN"],
    ...             deltas=[0.1, 0.5], delta_host="DIEN")
    >>> [sum(r.table == t for r in runs) for t in ("1", "2", "delta")]  # hosts x variants x seeds, ...
    [16, 8, 4]
    >>> [r.seed for r in runs][:8]
    [1, 1, 1, 1, 1, 1, 1, 1]
    >>> sorted({r.model for r in runs if r.table == "1" and r.host == "DIN"}), {r.model for r in runs if r.table == "delta"}
    (['DIN', 'DIN_IaCN'], {'DIEN_IaCN'})
    >>> [r for r in runs if r.variant == "lambda0"][0].overrides(), runs[-1].overrides()
    ({'seed': 1, 'iacn_lambda': 0.0}, {'seed': 2, 'iacn_delta': 0.5})
    >>> [r.model for r in plan(("hosts",), ["DIN", "DAIN"], ["d"], [1])]  # RecBole's class only where it exists
    ['DIN', 'recbole.DIN@ctr']
    """
    runs: list[RunSpec] = []
    for seed in seeds:
        for dataset in datasets:
            if "1" in tables:
                runs += [RunSpec("1", dataset, h, v, seed) for h in hosts for v in variants]
            if "hosts" in tables:
                runs += [RunSpec("hosts", dataset, h, v, seed) for h in hosts if h in common.SAME_DATA_HOSTS
                         for v in ("base", RECBOLE_VARIANT)]
            if "2" in tables:
                runs += [RunSpec("2", dataset, h, v, seed, max_len=l)
                         for h in length_hosts for l in lengths for v in ("base", "iacn")]
            if "delta" in tables:
                runs += [RunSpec("delta", dataset, delta_host, "iacn", seed, delta=d) for d in deltas]
    return runs


def expand_tables(table: str) -> tuple[str, ...]:
    return ("1", "2", "delta") if table == "all" else (table,)
