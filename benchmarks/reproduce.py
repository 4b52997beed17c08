"""Reproduce the IaCN paper's Tables 1-2 and δ sweep on the data at hand.

For every (model, dataset, setting) the base host and its ``_IaCN`` variant are trained over the same
seeds; test AUC is reported as mean ± SD (sample SD, ddof = 1) and the IaCN − base difference with a
paired t-test over seeds (``scipy.stats.ttest_rel``, n = number of seeds both sides finished).

Usage (full run; see benchmarks/README.md)::

    python benchmarks/reproduce.py --table all --datasets ml-100k ml-1m-sample --seeds 5
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

HOSTS = ("WideDeep", "DIN", "DIEN", "DAIN")
HOST_LABELS = {"WideDeep": "Wide&Deep", "DIN": "DIN", "DIEN": "DIEN", "DAIN": "DAIN"}
IACN_SUFFIX = "_IaCN"
TABLES = ("1", "2", "delta", "all")
DEFAULT_DATASETS = ("ml-100k", "ml-1m-sample")
DEFAULT_SEEDS = 5
FIRST_SEED = 2020
DEFAULT_LENGTHS = (10, 20, 50)
DEFAULT_DELTAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
DEFAULT_LENGTH_HOSTS = ("DIEN",)
DEFAULT_DELTA_HOST = "DIEN"
METRIC = "auc"
DECIMALS = 4

#: The paper's reported AUC (IACN_SPEC.md section 6): Amazon Books / Electronics, DIEN protocol.
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
    """One training run: ``model`` on ``dataset`` with ``seed`` and extra config ``overrides``."""

    table: str
    dataset: str
    host: str
    variant: str  # "base" or "iacn"
    seed: int
    max_len: Optional[int] = None
    delta: Optional[float] = None

    @property
    def model(self) -> str:
        return self.host + (IACN_SUFFIX if self.variant == "iacn" else "")

    def overrides(self) -> dict:
        extra = {"seed": self.seed}
        if self.max_len is not None:
            extra["MAX_ITEM_LIST_LENGTH"] = self.max_len
        if self.delta is not None:
            extra["iacn_delta"] = self.delta
        return extra


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
         deltas: Sequence[float] = DEFAULT_DELTAS, delta_host: str = DEFAULT_DELTA_HOST) -> list[RunSpec]:
    """Every run the requested tables need (runs shared by two tables are planned twice, on purpose:
    each table is a self-contained experiment)."""
    runs: list[RunSpec] = []
    for dataset in datasets:
        if "1" in tables:
            runs += [RunSpec("1", dataset, h, v, s) for h in hosts for v in ("base", "iacn") for s in seeds]
        if "2" in tables:
            runs += [RunSpec("2", dataset, h, v, s, max_len=l)
                     for h in length_hosts for l in lengths for v in ("base", "iacn") for s in seeds]
        if "delta" in tables:
            runs += [RunSpec("delta", dataset, delta_host, "iacn", s, delta=d) for d in deltas for s in seeds]
    return runs


def expand_tables(table: str) -> tuple[str, ...]:
    return ("1", "2", "delta") if table == "all" else (table,)


# ------------------------------------------------------------------------------ running
def train_once(spec: RunSpec, base_config: dict, checkpoint_dir: str) -> dict:
    """Train and test one run; returns its raw metrics row (``error`` set if it failed)."""
    from recbole_iacn.quick_start import run

    config = {**base_config, **spec.overrides(), "checkpoint_dir": checkpoint_dir}
    row = {**asdict(spec), "model": spec.model}
    started = time.perf_counter()
    try:
        result = run(spec.model, spec.dataset, config_dict=config, saved=True)
    except Exception as exc:  # one failed run must not lose the others: recorded in the CSV
        row.update(error=f"{type(exc).__name__}: {exc}", seconds=round(time.perf_counter() - started, 2))
        return row
    test, valid = result["test_result"], result["best_valid_result"]
    row.update(
        test_auc=float(test.get("auc", math.nan)),
        test_logloss=float(test.get("logloss", math.nan)),
        valid_auc=float(valid.get("auc", math.nan)),
        epochs=result["config"].get("epochs"),
        max_len_used=result["config"].get("MAX_ITEM_LIST_LENGTH"),
        delta_used=result["config"].get("iacn_delta"),
        seconds=round(time.perf_counter() - started, 2),
        error="",
    )
    return row


def run_all(runs: Sequence[RunSpec], base_config: dict, on_row: Callable[[list], None] | None = None,
            log=print) -> list[dict]:
    """Run every planned run in order, calling ``on_row(rows)`` after each (to save progress)."""
    rows: list[dict] = []
    scratch = tempfile.mkdtemp(prefix="iacn-bench-")
    try:
        for i, spec in enumerate(runs, 1):
            row = train_once(spec, base_config, scratch)
            rows.append(row)
            status = row["error"] or f"test AUC {row['test_auc']:.4f}"
            log(f"[{i}/{len(runs)}] table {spec.table} {spec.dataset} {spec.model} seed={spec.seed}"
                f"{'' if spec.max_len is None else f' l={spec.max_len}'}"
                f"{'' if spec.delta is None else f' δ={spec.delta}'}: {status} ({row['seconds']} s)")
            if on_row is not None:
                on_row(rows)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


# ------------------------------------------------------------------------------ summarising
def auc_by_seed(rows: Sequence[dict], **match) -> dict:
    """``{seed: test_auc}`` of the successful rows matching every ``key=value`` in ``match``."""
    return {r["seed"]: r["test_auc"] for r in rows
            if not r.get("error") and all(r.get(k) == v for k, v in match.items())}


def table1_markdown(rows: Sequence[dict], hosts: Sequence[str], datasets: Sequence[str]) -> str:
    """Table 1 (models × datasets), the differences with their paired tests, and the paper's figures."""
    columns = ["model", *datasets]
    body, diffs = [], []
    for host in hosts:
        comps = [paired_test(auc_by_seed(rows, table="1", dataset=d, host=host, variant="base"),
                             auc_by_seed(rows, table="1", dataset=d, host=host, variant="iacn")) for d in datasets]
        body.append([HOST_LABELS.get(host, host), *[fmt_mean_sd(c.base_mean, c.base_sd) for c in comps]])
        body.append([f"{HOST_LABELS.get(host, host)} + IaCN", *[fmt_mean_sd(c.iacn_mean, c.iacn_sd) for c in comps]])
        diffs.append([f"{HOST_LABELS.get(host, host)}: IaCN − base", *[fmt_comparison(c) for c in comps]])
    text = "## Table 1: test AUC (mean ± SD over seeds)\n\n" + common.markdown_table(columns, body)
    text += "\n### IaCN − base (mean ± SD of the paired differences; paired t-test over seeds)\n\n"
    text += common.markdown_table(columns, diffs)
    text += "\n" + paper_table1_markdown(hosts)
    return text


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
            "protocol, IACN_SPEC.md section 6). They come from different datasets and are not "
            "comparable with the numbers measured above. The paper has no DAIN row.\n\n"
            + common.markdown_table(["model", "paper: Amazon Books", "paper: Amazon Electronics"], rows))


def table2_markdown(rows: Sequence[dict], hosts: Sequence[str], datasets: Sequence[str],
                    lengths: Sequence[int]) -> str:
    """Table 2: AUC by behaviour length l (MAX_ITEM_LIST_LENGTH), base vs IaCN, per dataset."""
    columns = ["dataset", "model", *[f"l = {l}" for l in lengths]]
    body = []
    for dataset in datasets:
        for host in hosts:
            comps = [paired_test(auc_by_seed(rows, table="2", dataset=dataset, host=host, variant="base", max_len=l),
                                 auc_by_seed(rows, table="2", dataset=dataset, host=host, variant="iacn", max_len=l))
                     for l in lengths]
            label = HOST_LABELS.get(host, host)
            body.append([dataset, label, *[fmt_mean_sd(c.base_mean, c.base_sd) for c in comps]])
            body.append([dataset, f"{label} + IaCN", *[fmt_mean_sd(c.iacn_mean, c.iacn_sd) for c in comps]])
            body.append([dataset, "IaCN − base", *[fmt_comparison(c) for c in comps]])
    text = "## Table 2: test AUC by behaviour length l\n\n" + common.markdown_table(columns, body)
    paper = [[l, *PAPER_TABLE2[l]] for l in lengths if l in PAPER_TABLE2]
    if paper:
        text += ("\n### For reference only: the PAPER's Table 2 on AMAZON BOOKS (not the data above)\n\n"
                 + common.markdown_table(["l", "paper: DIEN", "paper: DIEN + IaCN"], paper))
    return text


def delta_markdown(rows: Sequence[dict], host: str, datasets: Sequence[str], deltas: Sequence[float]) -> str:
    """δ sweep of ``<host>_IaCN``: AUC mean ± SD per δ and dataset, beside the paper's Books figures."""
    columns = ["δ", *datasets, "paper: Amazon Books (reference only)"]
    body = []
    for d in deltas:
        cells = [fmt_mean_sd(*mean_sd(list(auc_by_seed(rows, table="delta", dataset=ds, host=host, delta=d).values())))
                 for ds in datasets]
        paper = PAPER_DELTA.get(round(d, 2))
        body.append([f"{d:g}", *cells, "n/a" if paper is None else f"{paper:.3f}"])
    return (f"## δ sweep: {HOST_LABELS.get(host, host)} + IaCN test AUC by iacn_delta\n\n"
            + common.markdown_table(columns, body))


# ------------------------------------------------------------------------------ plots
def plot_results(rows: Sequence[dict], out: Path, tables: Sequence[str], hosts, datasets, lengths, length_hosts,
                 deltas, delta_host, footer: str) -> list[Path]:
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
            for k, variant in enumerate(("base", "iacn")):
                stats_ = [mean_sd(list(auc_by_seed(rows, table="1", dataset=dataset, host=h, variant=variant).values()))
                          for h in hosts]
                xs = [i + (k - 0.5) * 0.38 for i in range(len(hosts))]
                ax.bar(xs, [s[0] for s in stats_], width=0.38, yerr=[0 if math.isnan(s[1]) else s[1] for s in stats_],
                       label="base" if variant == "base" else "+ IaCN", capsize=3)
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
    csv_path = common.write_csv(out / "runs.csv", list(rows), header)
    tables = expand_tables(args.table)
    text = common.markdown_header("IaCN reproduction: test AUC, base vs + IaCN", command, info)
    text += (f"\nSettings: seeds {list(args.seed_list)}, epochs {args.epochs or 'dataset default'}, "
             f"overrides {args.overrides or {}}. Differences are IaCN − base on the same seed; the "
             "paired t-test is scipy.stats.ttest_rel over the n seeds both finished (two-sided). "
             "A negative difference means IaCN did worse; numbers are reported as measured.\n")
    failed = [r for r in rows if r.get("error")]
    if failed:
        text += f"\n**{len(failed)} run(s) failed** (see the `error` column of runs.csv).\n"
    text += "\n"
    if "1" in tables:
        text += table1_markdown(rows, args.models, args.datasets) + "\n"
    if "2" in tables:
        text += table2_markdown(rows, args.length_models, args.datasets, args.lengths) + "\n"
    if "delta" in tables:
        text += delta_markdown(rows, args.delta_model, args.datasets, args.deltas) + "\n"
    footer = common.png_note(out, command, info)
    plots = plot_results(rows, out, tables, args.models, args.datasets, args.lengths, args.length_models,
                         args.deltas, args.delta_model, footer)
    text += "\nPlots: " + (", ".join(f"![{p.stem}]({p.name})" for p in plots) if plots
                           else "none (install matplotlib: pip install 'recbole-iacn[plots]')") + "\n"
    md_path = out / "results.md"
    md_path.write_text(text, encoding="utf-8")
    return {"markdown": md_path, "csv": csv_path, "plots": plots}


# ------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(HOSTS), choices=HOSTS, help="host models (Table 1)")
    p.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS))
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="number of seeds")
    p.add_argument("--first-seed", type=int, default=FIRST_SEED, help="seeds are first-seed, first-seed+1, ...")
    p.add_argument("--table", choices=TABLES, default="1")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the dataset's YAML)")
    p.add_argument("--lengths", nargs="+", type=int, default=list(DEFAULT_LENGTHS), help="Table 2 behaviour lengths")
    p.add_argument("--length-models", nargs="+", default=list(DEFAULT_LENGTH_HOSTS), choices=HOSTS,
                   help="host models of Table 2")
    p.add_argument("--deltas", nargs="+", type=float, default=list(DEFAULT_DELTAS), help="δ values of the sweep")
    p.add_argument("--delta-model", default=DEFAULT_DELTA_HOST, choices=HOSTS, help="host of the δ sweep")
    p.add_argument("--data_path", default=str(common.DEFAULT_DATA_PATH))
    p.add_argument("--device", choices=common.DEVICE_CHOICES, default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--out", default=None, help="output folder (default benchmarks/results/<date>/reproduce)")
    p.add_argument("--config_dict", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for every run, e.g. learning_rate=0.0001 train_batch_size=128")
    return p


def parse_args(argv: Optional[Sequence[str]] = None):
    args = build_parser().parse_args(argv)
    if args.seeds < 1:
        raise SystemExit("--seeds must be at least 1.")
    args.seed_list = [args.first_seed + i for i in range(args.seeds)]
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
    base_config = {**common.QUIET, **common.device_config(device), "data_path": args.data_path, **args.overrides}
    if args.epochs is not None:
        base_config["epochs"] = args.epochs
    command = common.command_line(None if argv is None else [sys.argv[0], *argv])
    info = common.machine_info(device)
    runs = plan(expand_tables(args.table), args.models, args.datasets, args.seed_list, args.lengths,
                args.length_models, args.deltas, args.delta_model)
    print(f"{len(runs)} runs on {info['device']}; results in {out}", flush=True)
    header = common.header_lines(command, info)
    rows = run_all(runs, base_config, on_row=lambda r: common.write_csv(out / "runs.csv", r, header),
                   log=lambda m: print(m, flush=True))
    paths = write_outputs(rows, out, args, command, info)
    print(paths["markdown"].read_text(encoding="utf-8"))
    return paths


if __name__ == "__main__":
    main()
