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

The parts: ``reproduce_plan.py`` (which runs each table needs), ``reproduce_runs.py`` (training a run, resuming
the plan, ``runs.csv``), ``stats.py`` (the tests over seeds), ``reproduce_report.py`` (the Markdown tables) and
``reproduce_plots.py`` (the PNG plots); this file is the command line.

Usage (see benchmarks/README.md)::

    python benchmarks/reproduce.py --table 1 --datasets ml-100k ml-1m-sample --seeds 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from benchmarks.reproduce_plan import (DEFAULT_DATASETS, DEFAULT_DELTA_HOST, DEFAULT_DELTAS,  # noqa: E402
                                       DEFAULT_LENGTH_HOSTS, DEFAULT_LENGTHS, DEFAULT_MAX_EPOCHS, DEFAULT_SEEDS,
                                       DEFAULT_STOPPING_STEP, HOSTS, TABLES, VARIANTS, expand_tables, plan)
from benchmarks.reproduce_plots import plot_results  # noqa: E402
from benchmarks.reproduce_report import (delta_markdown, hosts_markdown, machines_sentence,  # noqa: E402
                                         table1_markdown, table2_markdown)
from benchmarks.reproduce_runs import read_rows, run_all, write_rows  # noqa: E402


# ------------------------------------------------------------------------------ output
def write_outputs(rows: Sequence[dict], out: Path, args, command: str, info: dict) -> dict:
    """Write results.md, runs.csv and the PNG plots; returns their paths. With ``--report-only`` runs.csv is
    left as it is: its header names the command and commit that trained the rows."""
    out.mkdir(parents=True, exist_ok=True)
    header = common.header_lines(command, info)
    csv_path = out / "runs.csv" if args.report_only else write_rows(out / "runs.csv", list(rows), header)
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
    args = parse_args(argv)  # before torch is imported: a wrong option fails at once
    import torch

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
    runs = plan(expand_tables(args.table), args.models, args.datasets, args.seed_list, args.lengths,
                args.length_models, args.deltas, args.delta_model, args.variants)
    print(f"{len(runs)} runs on {info['device']}; results in {out}", flush=True)
    header = common.header_lines(command, info)
    with common.exclusive(out):
        done = read_rows(out / "runs.csv")
        if args.report_only:
            rows = done
        else:
            rows = run_all(runs, base_config, on_row=lambda r: write_rows(out / "runs.csv", r, header),
                           log=lambda m: print(m, flush=True), done=done,
                           commit=info["commit"])  # the code this process imported, read once at start
        paths = write_outputs(rows, out, args, command, info)
    print(paths["markdown"].read_text(encoding="utf-8"))
    return paths


if __name__ == "__main__":
    common.run_main(main)
