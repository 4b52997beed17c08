"""Reproduce the IaCN paper's Tables 1-2 and δ sweep on the data at hand, every model trained to convergence.

Every run trains with early stopping on the validation AUC (``--stopping-step`` epochs without a better
one, at most ``--epochs``), reloads the best epoch and tests it. Table 1 trains four variants of each
host over the same seeds, so that IaCN's gain can be told apart from its extra width:

* ``base``: the host ``X``;
* ``wide``: ``X`` with an item table as wide as ``X_IaCN``'s (``item_embedding_size = d + d_aux``, no
  IaCN): the same item-vector width and the same host layers, without the auxiliary task;
* ``lambda0``: ``X_IaCN`` with λ = 0 (``E_aux`` read by the host, no auxiliary loss);
* ``iacn``: ``X_IaCN``.

``--table hosts`` trains our DIN / DIEN beside RecBole's own classes on the same CTR rows
(``recbole.X@ctr``), both early-stopped, and compares test AUC and time to the best epoch.

Test AUC is reported as mean ± SD (sample SD, ddof = 1) and each comparison as the paired difference
with a t-test over seeds (``scipy.stats.ttest_rel``, n = number of seeds both sides finished).

Each finished run is written to ``runs.csv`` at once (the file is replaced atomically); the same command
run again skips the runs already there, so a multi-hour table survives a stop.

Usage (see benchmarks/README.md)::

    python benchmarks/reproduce.py --table 1 --datasets ml-100k ml-1m-sample --seeds 5
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

HOSTS = tuple(common.host_names())
HOST_LABELS = common.host_labels()
IACN_SUFFIX = "_IaCN"
TABLES = ("1", "2", "delta", "hosts", "all")
#: Table 1's variants of each host (see the module docstring) and RecBole's class on our rows (hosts).
VARIANTS = ("base", "wide", "lambda0", "iacn")
RECBOLE_VARIANT = "recbole"
VARIANT_LABELS = {"base": "{h}", "wide": "{h}, E_orig of d + d_aux", "lambda0": "{h} + IaCN, λ = 0",
                  "iacn": "{h} + IaCN", RECBOLE_VARIANT: "RecBole's {h} (same rows)"}
DEFAULT_MAX_EPOCHS = 100
DEFAULT_STOPPING_STEP = 5
HOSTS_TARGET_AUC_GAP = 0.002  # ours ≥ RecBole's − this
HOSTS_TARGET_TIME_RATIO = 0.5  # ours' time to best epoch ≤ this × RecBole's
#: the commit of the code this process imported (read once at start: a commit made while a long run goes
#: on must not be credited with rows trained by the older code)
CODE_COMMIT: Optional[str] = None
DEFAULT_DATASETS = ("ml-100k", "ml-1m-sample")
DEFAULT_SEEDS = 5
FIRST_SEED = common.FIRST_SEED
DEFAULT_LENGTHS = (10, 20, 50)
DEFAULT_DELTAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
DEFAULT_LENGTH_HOSTS = ("DIEN",)
DEFAULT_DELTA_HOST = "DIEN"
METRIC = "auc"
DECIMALS = 4

#: The paper's reported AUC (docs/method.md, "Paper settings"): Amazon Books / Electronics, DIEN protocol.
PAPER_TABLE1 = {
    "WideDeep": (("0.7860 ± 0.0013", "0.7461 ± 0.0015"), ("0.7928 ± 0.0009", "0.7502 ± 0.0010")),
    "DIN": (("0.7970 ± 0.0010", "0.7569 ± 0.0009"), ("0.8002 ± 0.0009", "0.7606 ± 0.0013")),
    "DIEN": (("0.8534 ± 0.0018", "0.7706 ± 0.0021"), ("0.8633 ± 0.0019", "0.7723 ± 0.0002")),
}
PAPER_TABLE2 = {10: ("0.854", "0.857"), 20: ("0.853", "0.863"), 50: ("0.850", "0.861")}  # Books
PAPER_DELTA = {0.1: 0.862, 0.2: 0.864, 0.3: 0.864, 0.4: 0.864, 0.5: 0.861, 0.6: 0.861,
               0.7: 0.862, 0.8: 0.862, 0.9: 0.862, 1.0: 0.860}  # DIEN + IaCN, Books


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
    return tuple("" if row.get(k) in (None, "") or row.get(k) != row.get(k) else str(row.get(k))
                 for k in ("table", "dataset", "host", "variant", "seed", "max_len", "delta"))


@dataclass
class Comparison:
    """Summary of base vs IaCN over paired seeds."""

    base_mean: float
    base_sd: float
    iacn_mean: float
    iacn_sd: float
    diff_mean: float
    diff_sd: float
    t: float
    p: float
    n: int
    base_n: int = 0
    iacn_n: int = 0


# ------------------------------------------------------------------------------ statistics
def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample SD (ddof = 1; NaN for fewer than 2 values, NaN mean for none)."""
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return statistics.fmean(values), sd


def paired_test(base: dict, iacn: dict) -> Comparison:
    """Compare ``{seed: auc}`` maps: mean ± SD of each side and of the paired differences
    (IaCN − base), and the paired t-test over the seeds both sides have (two-sided)."""
    from scipy import stats

    seeds = sorted(set(base) & set(iacn))
    diffs = [iacn[s] - base[s] for s in seeds]
    bm, bs = mean_sd(list(base.values()))
    im, isd = mean_sd(list(iacn.values()))
    dm, ds = mean_sd(diffs)
    t = p = math.nan
    if len(seeds) >= 2 and ds > 0:
        result = stats.ttest_rel([iacn[s] for s in seeds], [base[s] for s in seeds])
        t, p = float(result.statistic), float(result.pvalue)
    return Comparison(bm, bs, im, isd, dm, ds, t, p, len(seeds), len(base), len(iacn))


def fmt_mean_sd(mean: float, sd: float, decimals: int = DECIMALS) -> str:
    """``0.7860 ± 0.0013``; ``n/a`` without a value; the SD is left out when undefined (n = 1)."""
    if math.isnan(mean):
        return "n/a"
    if math.isnan(sd):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {sd:.{decimals}f}"


def fmt_signed(value: float, decimals: int = DECIMALS) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.{decimals}f}"


def fmt_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def fmt_comparison(c: Comparison) -> str:
    """``+0.0032 ± 0.0010 (t=3.46, p=0.074, n=3)``: the difference column of every table."""
    t = "n/a" if math.isnan(c.t) else f"{c.t:.2f}"
    return f"{fmt_signed(c.diff_mean)} ± {fmt_signed(c.diff_sd).lstrip('+')} (t={t}, p={fmt_p(c.p)}, n={c.n})"


# ------------------------------------------------------------------------------ planning
def plan(tables: Sequence[str], hosts: Sequence[str], datasets: Sequence[str], seeds: Sequence[int],
         lengths: Sequence[int] = DEFAULT_LENGTHS, length_hosts: Sequence[str] = DEFAULT_LENGTH_HOSTS,
         deltas: Sequence[float] = DEFAULT_DELTAS, delta_host: str = DEFAULT_DELTA_HOST,
         variants: Sequence[str] = VARIANTS) -> list[RunSpec]:
    """Every run the requested tables need, seed by seed: a table cut short holds complete pairs for
    the seeds it reached (runs shared by two tables are planned twice, on purpose: each table is a
    self-contained experiment)."""
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


# ------------------------------------------------------------------------------ running
def wide_item_size(host: str, dataset: str, base_config: dict) -> int:
    """``d + d_aux``: the item-vector width of ``host_IaCN`` under the same settings."""
    from recbole_iacn.pipeline import make_config

    config, _, _ = make_config(host + IACN_SUFFIX, dataset, config_dict=base_config)
    return int(config["item_embedding_size"] or config["embedding_size"]) + int(config["iacn_embedding_size"])


def train_once(spec: RunSpec, base_config: dict, checkpoint_dir: str) -> dict:
    """Train one run to its best epoch (early stopping on the validation AUC), test that epoch; returns
    its metrics row (``error`` set if it failed)."""
    from recbole_iacn.pipeline import prepare, run

    # the machine in every row, failed ones too: a folder filled over several sessions must say which run ran where
    device = "cuda" if base_config.get("use_gpu") else "cpu"
    row = {**asdict(spec), "model": spec.model, "cpu": common.cpu_model(), "device": common.device_name(device)}
    started = time.perf_counter()
    try:
        config = {**base_config, **spec.overrides(), "checkpoint_dir": checkpoint_dir}
        if spec.variant == "wide":
            config["item_embedding_size"] = wide_item_size(spec.host, spec.dataset, base_config)
        if spec.variant == RECBOLE_VARIANT:  # RecBole's class on our CTR view: same rows, its own settings
            prepared = common.on_ctr_view(prepare(spec.host, spec.dataset, config_dict=config), spec.host)
        else:
            prepared = prepare(spec.model, spec.dataset, config_dict=config)
        # (epoch, valid score, wall seconds, CPU seconds of this process since training began): CPU time
        # is what a 1-thread run costs whatever else shares the machine
        curve: list[tuple[int, float, float, float]] = []
        fit_started, cpu_started = time.perf_counter(), time.process_time()
        result = run(spec.model, spec.dataset, prepared=prepared, saved=True,
                     epoch_callback=lambda trainer, epoch, score, _: curve.append(
                         (epoch, float(score), time.perf_counter() - fit_started, time.process_time() - cpu_started)))
    except Exception as exc:  # one failed run must not lose the others: recorded in the CSV
        row.update(error=f"{type(exc).__name__}: {exc}", seconds=round(time.perf_counter() - started, 2))
        return row
    finally:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    test, valid = result["test_result"], result["best_valid_result"]
    best = best_epoch(curve)
    plain = result["config"]
    row.update(
        test_auc=float(test.get("auc", math.nan)),
        test_logloss=float(test.get("logloss", math.nan)),
        valid_auc=float(valid.get("auc", math.nan)),
        best_epoch=best[0] if best else "",
        epochs_run=len(curve),
        seconds_to_best=round(best[2], 2) if best else "",
        train_seconds=round(curve[-1][2], 2) if curve else "",
        cpu_seconds_to_best=round(best[3], 2) if best else "",
        cpu_train_seconds=round(curve[-1][3], 2) if curve else "",
        seconds=round(time.perf_counter() - started, 2),
        max_epochs=plain.get("epochs"),
        stopping_step=plain.get("stopping_step"),
        max_len_used=plain.get("MAX_ITEM_LIST_LENGTH"),
        delta_used=plain.get("iacn_delta"),
        lambda_used=plain.get("iacn_lambda"),
        item_embedding_size=plain.get("item_embedding_size") or plain.get("embedding_size"),
        learning_rate=plain.get("learning_rate"),
        threads=_torch_threads(),
        commit=CODE_COMMIT or common.git_commit(),
        error="",
    )
    return row


def machines_sentence(rows: Sequence[dict], csv_name: str = "runs.csv") -> str:
    """Which machines the rows were trained on, with run counts (column ``cpu``; rows written before that
    column existed count as not recorded), and a warning when times compare runs from different machines."""
    counts: dict[str, int] = {}
    for row in rows:
        if row.get("error"):
            continue
        name = str(row.get("cpu") or "not recorded")
        if row.get("device") and str(row["device"]) != "cpu":
            name += f" with {row['device']}"
        counts[name] = counts.get(name, 0) + 1
    if not counts:
        return ""
    listed = "; ".join(f"{name} ({n} run{'s' if n != 1 else ''})" for name, n in sorted(counts.items()))
    text = (f"Runs were trained on: {listed} (column `cpu` of {csv_name}; the `# cpu:` header above names the "
            "machine that wrote this report).")
    if len(counts) > 1:
        text += (" **The runs come from more than one machine (or some machines were not recorded): their seconds "
                 "are comparable only between runs on the same machine.**")
    return "\n" + text + "\n"


def best_epoch(curve: Sequence[tuple]) -> Optional[tuple]:
    """The first point ``(epoch, score, ...)`` with the highest validation score, as RecBole's early
    stopping keeps it."""
    best = None
    for point in curve:
        if best is None or point[1] > best[1]:
            best = point
    return best


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def read_rows(path: Path) -> list[dict]:
    """The rows of an earlier ``runs.csv`` (numbers parsed back), or none."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    for row in rows:
        for key, value in list(row.items()):
            row[key] = _parse_cell(key, value)
    return rows


_INT_COLUMNS = ("seed", "max_len", "best_epoch", "epochs_run", "max_epochs", "stopping_step", "max_len_used",
                "item_embedding_size", "threads")


def _parse_cell(key: str, value):
    if value in (None, ""):
        return None if key in ("max_len", "delta") else ("" if key == "error" else value)
    if key in _INT_COLUMNS:
        try:
            return int(float(value))
        except ValueError:
            return value
    if key in ("table", "dataset", "host", "variant", "model", "error", "commit"):
        return value
    try:
        return float(value)
    except ValueError:
        return value


def write_rows(path: Path, rows: Sequence[dict], header: list[str]) -> Path:
    """Write ``runs.csv`` to a temporary sibling and rename it into place: a stop never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    common.write_csv(partial, list(rows), header)
    os.replace(partial, path)
    return path


@contextlib.contextmanager
def exclusive(folder: Path):
    """Hold ``folder/.lock`` for the length of a benchmark: a second run into the same folder stops at
    once with a clear message instead of interleaving its rows with the first's."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"Another benchmark is writing to {folder} (it holds {folder / '.lock'}). Wait for it "
                             "to finish, or pass a different --out.") from None
        yield


def run_all(runs: Sequence[RunSpec], base_config: dict, on_row: Callable[[list], None] | None = None,
            log=print, done: Sequence[dict] = ()) -> list[dict]:
    """Run every planned run in order, calling ``on_row(rows)`` after each (to save progress). Runs
    whose successful row is in ``done`` are skipped (their row is kept); failed ones run again."""
    finished = {row_key(r): r for r in done if not r.get("error")}
    rows: list[dict] = [r for r in done if not r.get("error")]
    todo = [spec for spec in runs if spec.key() not in finished]
    if finished:
        log(f"{len(runs) - len(todo)} of {len(runs)} runs already finished (kept); {len(todo)} to run")
    scratch = tempfile.mkdtemp(prefix="iacn-bench-")
    try:
        for i, spec in enumerate(todo, 1):
            row = train_once(spec, base_config, os.path.join(scratch, str(i)))
            rows.append(row)
            status = row["error"] or (f"test AUC {row['test_auc']:.4f}, best epoch {row['best_epoch']} "
                                      f"of {row['epochs_run']}")
            log(f"[{i}/{len(todo)}] table {spec.table} {spec.dataset} {spec.model} ({spec.variant}) seed={spec.seed}"
                f"{'' if spec.max_len is None else f' l={spec.max_len}'}"
                f"{'' if spec.delta is None else f' δ={spec.delta}'}: {status} ({row['seconds']} s)")
            if on_row is not None:
                on_row(rows)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


# ------------------------------------------------------------------------------ summarising
def auc_by_seed(rows: Sequence[dict], column: str = "test_auc", **match) -> dict:
    """``{seed: value of column}`` of the successful rows matching every ``key=value`` in ``match``."""
    return {r["seed"]: float(r[column]) for r in rows
            if not r.get("error") and r.get(column) not in (None, "") and all(r.get(k) == v for k, v in match.items())}


def variant_label(variant: str, host: str) -> str:
    return VARIANT_LABELS[variant].format(h=HOST_LABELS.get(host, host))


def mean_of(rows: Sequence[dict], column: str, **match) -> str:
    values = list(auc_by_seed(rows, column, **match).values())
    return "n/a" if not values else f"{statistics.fmean(values):.1f}"


def table1_markdown(rows: Sequence[dict], hosts: Sequence[str], datasets: Sequence[str],
                    variants: Sequence[str] = VARIANTS) -> str:
    """Table 1 (variants × datasets), X_IaCN against each control with its paired test, the epochs and
    times to the best epoch, and the paper's figures."""
    columns = ["model", *datasets]
    body, diffs, epochs = [], [], []
    tested = {d: [] for d in datasets}  # dataset -> [(label, comparison)] of X + IaCN against each control
    for host in hosts:
        for variant in variants:
            cells = [fmt_mean_sd(*mean_sd(list(auc_by_seed(rows, table="1", dataset=d, host=host,
                                                           variant=variant).values()))) for d in datasets]
            body.append([variant_label(variant, host), *cells])
            epochs.append([variant_label(variant, host), *[
                f"{mean_of(rows, 'best_epoch', table='1', dataset=d, host=host, variant=variant)} / "
                f"{mean_of(rows, 'cpu_seconds_to_best', table='1', dataset=d, host=host, variant=variant)} s"
                for d in datasets]])
        if "iacn" not in variants:
            continue
        for control in (v for v in variants if v != "iacn"):
            comps = [paired_test(auc_by_seed(rows, table="1", dataset=d, host=host, variant=control),
                                 auc_by_seed(rows, table="1", dataset=d, host=host, variant="iacn")) for d in datasets]
            label = f"{variant_label('iacn', host)} − {variant_label(control, host)}"
            diffs.append([label, *[fmt_comparison(c) for c in comps]])
            for d, c in zip(datasets, comps):
                tested[d].append((label, c))
    text = "## Table 1: test AUC at the best validation epoch (mean ± SD over seeds)\n\n"
    text += common.markdown_table(columns, body)
    if diffs:
        text += ("\n### X + IaCN − each control (mean ± SD of the paired differences; paired t-test over seeds)\n\n"
                 + common.markdown_table(columns, diffs))
        text += "\n" + "".join(f"- {multiple_comparisons(d, tested[d])}\n" for d in datasets)
    text += ("\n### Best epoch (0-based) / CPU seconds of the run from the start of training to the end of its "
             "validation (means over seeds)\n\n" + common.markdown_table(columns, epochs))
    text += "\n" + paper_table1_markdown(hosts)
    return text


def multiple_comparisons(dataset: str, tested: Sequence[tuple[str, Comparison]]) -> str:
    """One line: how many comparisons were tested on ``dataset``, the Bonferroni threshold for 0.05, and those
    below it (or below 0.05 only), so that no single p value is read as if it were the only test made."""
    done = [(label, c) for label, c in tested if not math.isnan(c.p)]
    if not done:
        return f"{dataset}: no comparison has a p value yet."
    threshold = 0.05 / len(done)
    strong = [f"{label} ({fmt_p(c.p)})" for label, c in done if c.p < threshold]
    weak = [f"{label} ({fmt_p(c.p)})" for label, c in done if threshold <= c.p < 0.05]
    return (f"{dataset}: {len(done)} comparisons tested; with a Bonferroni correction p < {threshold:.4f} is needed "
            f"for 0.05. Below it: {'; '.join(strong) or 'none'}. Below 0.05 only: {'; '.join(weak) or 'none'}.")


def hosts_markdown(rows: Sequence[dict], hosts: Sequence[str], datasets: Sequence[str]) -> str:
    """Our DIN / DIEN against RecBole's class on the same CTR rows: test AUC and time to the best epoch."""
    columns = ["dataset", "host", "ours", "RecBole's", "ours − RecBole's", f"AUC ≥ RecBole's − {HOSTS_TARGET_AUC_GAP}",
               "CPU s to best: ours", "RecBole's", "ratio", f"ratio ≤ {HOSTS_TARGET_TIME_RATIO}", "best epoch: ours",
               "RecBole's", "learning rate: ours", "RecBole's"]
    body = []
    for dataset in datasets:
        for host in (h for h in hosts if h in common.SAME_DATA_HOSTS):
            match = dict(table="hosts", dataset=dataset, host=host)
            c = paired_test(auc_by_seed(rows, variant=RECBOLE_VARIANT, **match), auc_by_seed(rows, variant="base", **match))
            ours_t = list(auc_by_seed(rows, "cpu_seconds_to_best", variant="base", **match).values())
            theirs_t = list(auc_by_seed(rows, "cpu_seconds_to_best", variant=RECBOLE_VARIANT, **match).values())
            ratio = statistics.fmean(ours_t) / statistics.fmean(theirs_t) if ours_t and theirs_t else math.nan
            auc_met = "n/a" if math.isnan(c.diff_mean) else ("yes" if c.diff_mean >= -HOSTS_TARGET_AUC_GAP else "NO")
            time_met = "n/a" if math.isnan(ratio) else ("yes" if ratio <= HOSTS_TARGET_TIME_RATIO else "NO")
            body.append([dataset, HOST_LABELS.get(host, host), fmt_mean_sd(c.iacn_mean, c.iacn_sd),
                         fmt_mean_sd(c.base_mean, c.base_sd), fmt_comparison(c), auc_met,
                         f"{statistics.fmean(ours_t):.1f}" if ours_t else "n/a",
                         f"{statistics.fmean(theirs_t):.1f}" if theirs_t else "n/a",
                         "n/a" if math.isnan(ratio) else f"{ratio:.2f}", time_met,
                         mean_of(rows, "best_epoch", variant="base", **match),
                         mean_of(rows, "best_epoch", variant=RECBOLE_VARIANT, **match),
                         learning_rates(rows, variant="base", **match),
                         learning_rates(rows, variant=RECBOLE_VARIANT, **match)])
    return ("## Our hosts against RecBole's on the same CTR rows (both early-stopped, best epoch tested)\n\n"
            "RecBole's class reads the same samples, batches and test rows (`recbole.X@ctr`, settings from "
            "RecBole's model YAML except the shared embedding size; training settings, the learning rate among "
            "them, as both sides read them: RecBole's defaults, then the dataset's YAML, then --config_dict). "
            "CPU s to best: CPU seconds of the run "
            "from the start of training to the end of the best epoch's validation (with --threads 1 this is "
            "the compute the run needed, though other jobs on the machine still inflate it through shared caches "
            "and memory bandwidth: up to 2.6x per epoch was seen with three processes on two cores; wall seconds "
            "are in runs.csv). "
            "Best epoch: 0-based, mean over seeds. Learning rate: every value the side's runs used (both sides "
            "read the dataset's `learning_rate` unless --config_dict sets one; a side that lists two values mixed "
            "runs made at different settings).\n\n"
            + common.markdown_table(columns, body))


def learning_rates(rows: Sequence[dict], **match) -> str:
    """The learning rates the matching runs used, in order (``0.001, 0.003`` when they differ)."""
    used = sorted({float(v) for v in auc_by_seed(rows, "learning_rate", **match).values()})
    return ", ".join(f"{v:g}" for v in used) or "n/a"


def paper_table1_markdown(hosts: Sequence[str]) -> str:
    """The paper's Table 1, for reference only (different data: Amazon, DIEN protocol)."""
    rows = []
    for host in hosts:
        if host not in PAPER_TABLE1:
            continue
        base, iacn = PAPER_TABLE1[host]
        rows.append([HOST_LABELS[host], *base])
        rows.append([f"{HOST_LABELS[host]} + IaCN", *iacn])
    if not rows:
        return ""
    return ("### For reference only: the PAPER's Table 1 AUC on AMAZON data (not the data above)\n\n"
            "These are the figures reported in the IaCN paper on Amazon Books and Electronics (DIEN "
            "protocol, docs/method.md). They come from different datasets and are not "
            "comparable with the numbers measured above. The paper has no DAIN row.\n\n"
            + common.markdown_table(["model", "paper: Amazon Books", "paper: Amazon Electronics"], rows))


def table2_markdown(rows: Sequence[dict], hosts: Sequence[str], datasets: Sequence[str],
                    lengths: Sequence[int]) -> str:
    """Table 2: AUC by behaviour length l (MAX_ITEM_LIST_LENGTH), base vs IaCN, per dataset."""
    columns = ["dataset", "model", *[f"l = {l}" for l in lengths]]
    body, tested = [], {}
    for dataset in datasets:
        for host in hosts:
            comps = [paired_test(auc_by_seed(rows, table="2", dataset=dataset, host=host, variant="base", max_len=l),
                                 auc_by_seed(rows, table="2", dataset=dataset, host=host, variant="iacn", max_len=l))
                     for l in lengths]
            label = HOST_LABELS.get(host, host)
            body.append([dataset, label, *[fmt_mean_sd(c.base_mean, c.base_sd) for c in comps]])
            body.append([dataset, f"{label} + IaCN", *[fmt_mean_sd(c.iacn_mean, c.iacn_sd) for c in comps]])
            body.append([dataset, "IaCN − base", *[fmt_comparison(c) for c in comps]])
            tested.setdefault(dataset, []).extend((f"{label} + IaCN − {label}, l = {l}", c)
                                                  for l, c in zip(lengths, comps))
    text = "## Table 2: test AUC by behaviour length l\n\n" + common.markdown_table(columns, body)
    text += "\n" + "".join(f"- {multiple_comparisons(d, t)}\n" for d, t in tested.items())
    paper = [[l, *PAPER_TABLE2[l]] for l in lengths if l in PAPER_TABLE2]
    if paper:
        text += ("\n### For reference only: the PAPER's Table 2 on AMAZON BOOKS (not the data above)\n\n"
                 + common.markdown_table(["l", "paper: DIEN", "paper: DIEN + IaCN"], paper))
    return text


def delta_markdown(rows: Sequence[dict], host: str, datasets: Sequence[str], deltas: Sequence[float]) -> str:
    """δ sweep of ``<host>_IaCN``: AUC mean ± SD per δ and dataset beside the paper's Books figures; per
    dataset, each δ against δ = 1 (the auxiliary loss does not reach E_aux), a Friedman test of "δ makes no
    difference" over the seeds every δ finished, and every pair of δ values (paired t-tests)."""
    label = HOST_LABELS.get(host, host)
    by_seed = {(ds, d): auc_by_seed(rows, table="delta", dataset=ds, host=host, delta=d)
               for ds in datasets for d in deltas}
    control = 1.0 if any(math.isclose(d, 1.0) for d in deltas) else None
    columns = ["δ", *datasets, *([f"{ds}: − δ = 1" for ds in datasets] if control is not None else []),
               "paper: Amazon Books (reference only)"]
    body = []
    for d in deltas:
        cells = [fmt_mean_sd(*mean_sd(list(by_seed[ds, d].values()))) for ds in datasets]
        if control is not None:
            cells += ["" if math.isclose(d, control) else fmt_short(paired_test(by_seed[ds, control], by_seed[ds, d]))
                      for ds in datasets]
        paper = PAPER_DELTA.get(round(d, 2))
        body.append([f"{d:g}", *cells, "n/a" if paper is None else f"{paper:.3f}"])
    text = (f"## δ sweep: {label} + IaCN test AUC by iacn_delta\n\n" + common.markdown_table(columns, body))
    if control is not None:
        text += ("\nAt δ = 1 the auxiliary loss does not reach E_aux (the host's gradient trains it alone), so "
                 "the `− δ = 1` columns are what the auxiliary loss's share of E_aux's gradient adds.\n")
    pairs = len(deltas) * (len(deltas) - 1) // 2
    for ds in datasets:
        text += f"\n### {ds}: does δ matter?\n\n{friedman_line(by_seed, ds, deltas)}\n"
        if pairs > 1:
            text += (f"\nEvery pair, row − column, paired on the seed ({pairs} comparisons: Bonferroni needs "
                     f"p < {0.05 / pairs:.4f} for 0.05):\n\n")
            matrix = [[f"{a:g}", *[fmt_short(paired_test(by_seed[ds, b], by_seed[ds, a])) if j > i else ""
                                   for j, b in enumerate(deltas[1:], 1)]]
                      for i, a in enumerate(deltas[:-1])]
            text += common.markdown_table(["δ", *[f"{b:g}" for b in deltas[1:]]], matrix)
    return text


def fmt_short(c: Comparison) -> str:
    """``+0.0015 (p 0.039)``: a paired difference where a table has many."""
    return "n/a" if c.n == 0 else f"{fmt_signed(c.diff_mean)} (p {fmt_p(c.p)})"


def friedman_line(by_seed: dict, dataset: str, deltas: Sequence[float]) -> str:
    """Friedman's test (``scipy.stats.friedmanchisquare``; seeds as blocks, δ values as treatments): one test
    of "no δ differs", instead of the smallest of many pairwise p values. It needs every δ on every seed, so
    it takes the δ values that finished every seed any δ finished, and names those it left out."""
    from scipy import stats

    seeds = sorted(set().union(*(by_seed[dataset, d] for d in deltas))) if deltas else []
    complete = [d for d in deltas if set(by_seed[dataset, d]) >= set(seeds)]
    left_out = [f"{d:g}" for d in deltas if d not in complete and by_seed[dataset, d]]
    note = f" Left out, not run on every seed: δ = {', '.join(left_out)}." if left_out else ""
    if len(complete) < 3 or len(seeds) < 2:
        return (f"Friedman test: n/a (it needs at least 3 δ values run on the same 2 or more seeds; "
                f"{len(complete)} δ values have every one of seeds {seeds}).{note}")
    result = stats.friedmanchisquare(*[[by_seed[dataset, d][s] for s in seeds] for d in complete])
    return (f"Friedman test over {len(complete)} δ values, blocks = seeds {seeds}: χ² = {result.statistic:.2f}, "
            f"p = {fmt_p(float(result.pvalue))}.{note}")


# ------------------------------------------------------------------------------ plots
def plot_results(rows: Sequence[dict], out: Path, tables: Sequence[str], hosts, datasets, lengths, length_hosts,
                 deltas, delta_host, footer: str, variants: Sequence[str] = VARIANTS) -> list[Path]:
    """PNG plots of the tables that were run; an empty list when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []

    def finish(fig, name):
        fig.text(0.01, 0.005, footer, fontsize=6, va="bottom")
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        path = out / name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

    if "1" in tables:
        fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
        for ax, dataset in zip(axes[0], datasets):
            width = 0.8 / len(variants)
            for k, variant in enumerate(variants):
                stats_ = [mean_sd(list(auc_by_seed(rows, table="1", dataset=dataset, host=h, variant=variant).values()))
                          for h in hosts]
                xs = [i + (k - (len(variants) - 1) / 2) * width for i in range(len(hosts))]
                ax.bar(xs, [s[0] for s in stats_], width=width, yerr=[0 if math.isnan(s[1]) else s[1] for s in stats_],
                       label=variant_label(variant, "X"), capsize=3)
            ax.set_xticks(range(len(hosts)), [HOST_LABELS.get(h, h) for h in hosts])
            ax.set_title(f"Table 1: {dataset}")
            ax.set_ylabel("test AUC")
            _tight_ylim(ax, rows, dataset)
            ax.legend()
        finish(fig, "table1.png")
    if "2" in tables:
        fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
        for ax, dataset in zip(axes[0], datasets):
            for host in length_hosts:
                for variant in ("base", "iacn"):
                    stats_ = [mean_sd(list(auc_by_seed(rows, table="2", dataset=dataset, host=host, variant=variant,
                                                       max_len=l).values())) for l in lengths]
                    ax.errorbar(list(lengths), [s[0] for s in stats_], yerr=[0 if math.isnan(s[1]) else s[1] for s in stats_],
                                marker="o", capsize=3,
                                label=HOST_LABELS.get(host, host) + (" + IaCN" if variant == "iacn" else ""))
            ax.set_xlabel("behaviour length l (MAX_ITEM_LIST_LENGTH)")
            ax.set_ylabel("test AUC")
            ax.set_title(f"Table 2: {dataset}")
            ax.legend()
        finish(fig, "table2.png")
    if "delta" in tables:
        fig, ax = plt.subplots(figsize=(6, 4))
        for dataset in datasets:
            stats_ = [mean_sd(list(auc_by_seed(rows, table="delta", dataset=dataset, host=delta_host, delta=d).values()))
                      for d in deltas]
            ax.errorbar(list(deltas), [s[0] for s in stats_], yerr=[0 if math.isnan(s[1]) else s[1] for s in stats_],
                        marker="o", capsize=3, label=dataset)
        ax.set_xlabel("δ (iacn_delta)")
        ax.set_ylabel("test AUC")
        ax.set_title(f"δ sweep: {HOST_LABELS.get(delta_host, delta_host)} + IaCN")
        ax.legend()
        finish(fig, "delta.png")
    return written


def _tight_ylim(ax, rows, dataset, margin: float = 0.02) -> None:
    """Zoom the AUC axis on the measured values (bars from 0 hide the differences)."""
    values = [r["test_auc"] for r in rows if not r.get("error") and r["dataset"] == dataset and r["table"] == "1"]
    if values:
        ax.set_ylim(max(0.0, min(values) - margin), min(1.0, max(values) + margin))


# ------------------------------------------------------------------------------ output
def write_outputs(rows: Sequence[dict], out: Path, args, command: str, info: dict) -> dict:
    """Write results.md, runs.csv and the PNG plots; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    header = common.header_lines(command, info)
    csv_path = write_rows(out / "runs.csv", list(rows), header)
    tables = expand_tables(args.table)
    text = common.markdown_header("IaCN reproduction: test AUC at convergence", command, info)
    commits = sorted({str(r.get("commit")) for r in rows if r.get("commit")})
    text += (f"\nSettings: seeds {list(args.seed_list)}; early stopping on the validation AUC after "
             f"{args.stopping_step} epochs without a better one, at most {args.epochs} epochs; the best epoch "
             f"is reloaded and tested; overrides {args.overrides or {}}. Differences are paired on the seed; "
             "the paired t-test is scipy.stats.ttest_rel over the n seeds both sides finished (two-sided). "
             "A negative difference means IaCN did worse; numbers are reported as measured. "
             f"Runs were made at commit(s) {', '.join(commits) or 'n/a'} (column `commit` of runs.csv).\n")
    text += machines_sentence(rows)
    failed = [r for r in rows if r.get("error")]
    if failed:
        text += f"\n**{len(failed)} run(s) failed** (see the `error` column of runs.csv).\n"
    planned = len(plan(tables, args.models, args.datasets, args.seed_list, args.lengths, args.length_models,
                       args.deltas, args.delta_model, args.variants))
    finished = sum(1 for r in rows if not r.get("error"))
    if finished < planned:
        text += (f"\n**Incomplete: {finished} of the {planned} planned runs have finished.** The same command "
                 "without --report-only runs the rest.\n")
    text += "\n"
    if "1" in tables:
        text += table1_markdown(rows, args.models, args.datasets, args.variants) + "\n"
    if "hosts" in tables:
        text += hosts_markdown(rows, args.models, args.datasets) + "\n"
    if "2" in tables:
        text += table2_markdown(rows, args.length_models, args.datasets, args.lengths) + "\n"
    if "delta" in tables:
        text += delta_markdown(rows, args.delta_model, args.datasets, args.deltas) + "\n"
    footer = common.png_note(out, command, info)
    plots = plot_results(rows, out, tables, args.models, args.datasets, args.lengths, args.length_models,
                         args.deltas, args.delta_model, footer, args.variants)
    if set(tables) & {"1", "2", "delta"}:  # the tables that have a plot
        text += "\nPlots: " + (", ".join(f"![{p.stem}]({p.name})" for p in plots) if plots
                               else "none (install matplotlib: pip install 'recbole-iacn[plots]')") + "\n"
    md_path = out / "results.md"
    common.write_text(md_path, text)
    return {"markdown": md_path, "csv": csv_path, "plots": plots}


# ------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(HOSTS), choices=HOSTS, help="host models (Table 1, hosts)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                   help="Table 1 variants: base (X), wide (X with E_orig of d + d_aux), lambda0 (X_IaCN, λ = 0), iacn")
    p.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS))
    p.add_argument("--table", choices=TABLES, default="1")
    p.add_argument("--epochs", type=int, default=DEFAULT_MAX_EPOCHS, help="maximum epochs per run")
    p.add_argument("--stopping-step", type=int, default=DEFAULT_STOPPING_STEP,
                   help="stop after this many epochs without a better validation AUC")
    p.add_argument("--lengths", nargs="+", type=int, default=list(DEFAULT_LENGTHS), help="Table 2 behaviour lengths")
    p.add_argument("--length-models", nargs="+", default=list(DEFAULT_LENGTH_HOSTS), choices=HOSTS,
                   help="host models of Table 2")
    p.add_argument("--deltas", nargs="+", type=float, default=list(DEFAULT_DELTAS), help="δ values of the sweep")
    p.add_argument("--delta-model", default=DEFAULT_DELTA_HOST, choices=HOSTS, help="host of the δ sweep")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: write results.md and the plots from the runs already in --out's runs.csv "
                        "(e.g. for a table still being run, or stopped)")
    return common.add_common_arguments(p, "reproduce", seeds=DEFAULT_SEEDS)


def parse_args(argv: Optional[Sequence[str]] = None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.stopping_step < 1:
        parser.error("--epochs and --stopping-step must be at least 1.")
    args.seed_list = common.seed_list(args)
    args.overrides = common.parse_overrides(args.config_dict)
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    import torch

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = common.resolve_device(args.device)
    out = Path(args.out) if args.out else common.default_out_dir("reproduce") / "reproduce"
    for dataset in args.datasets:
        common.ensure_dataset(dataset, args.data_path)
    base_config = {**common.QUIET, **common.device_config(device), "data_path": args.data_path,
                   "epochs": args.epochs, "stopping_step": args.stopping_step, "eval_step": 1, **args.overrides}
    command = common.command_line(None if argv is None else [sys.argv[0], *argv])
    info = common.machine_info(device)
    global CODE_COMMIT
    CODE_COMMIT = info["commit"]
    runs = plan(expand_tables(args.table), args.models, args.datasets, args.seed_list, args.lengths,
                args.length_models, args.deltas, args.delta_model, args.variants)
    print(f"{len(runs)} runs on {info['device']}; results in {out}", flush=True)
    header = common.header_lines(command, info)
    with exclusive(out):
        done = read_rows(out / "runs.csv")
        if args.report_only:
            rows = done
        else:
            rows = run_all(runs, base_config, on_row=lambda r: write_rows(out / "runs.csv", r, header),
                           log=lambda m: print(m, flush=True), done=done)
        paths = write_outputs(rows, out, args, command, info)
    print(paths["markdown"].read_text(encoding="utf-8"))
    return paths


if __name__ == "__main__":
    main()
