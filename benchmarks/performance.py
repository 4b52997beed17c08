"""Training/evaluation throughput and peak memory of every model, as ratios within one run.

Each model is measured in a fresh subprocess (so that peak RSS is its own): load the data, build the
model and the optimizer its trainer builds (fused Adam for plugin models, RecBole's Adam for
RecBole's), run ``--warmup`` training batches untimed, then time ``--batches`` training batches (data
loading included: the loader is part of each side's cost), then the same for evaluation (``predict``
on the validation loader, ``--eval-batches``). Throughput is samples (rows: positives and negatives)
per second. Memory: peak RSS of the subprocess (``resource.getrusage``) and its increase over the RSS
right after the imports; on CUDA also ``torch.cuda.max_memory_allocated``. A model may carry its own
settings, ``DIN_IaCN:iacn_lambda=0``: with λ = 0 no auxiliary loss is computed, so that row splits
``X_IaCN``'s overhead into the wider item embedding and the capsule network.

Common ground with RecBole's own DIN, DIEN and WideDeep (``recbole.DIN`` ...): the same raw data
(ml-100k by default), ``train_batch_size``, ``eval_batch_size``, ``embedding_size``,
``MAX_ITEM_LIST_LENGTH`` and learning rate. Our models read the package's dense CTR view (per
interaction after a user's first: a positive with its earlier history and one popularity-sampled
negative; the last two per user are valid/test). RecBole's DIN/DIEN read a SequentialDataset
(prefix augmentation of the time-sorted ``.inter``: one sample per interaction after a user's first,
with its history, leave-one-out valid/test) with one uniform negative per positive drawn by the
training loader; RecBole's WideDeep (a context model) reads the raw interactions with one uniform
negative each. The per-epoch training row counts of each side are printed in the table.
"""

# The parts: performance_measure.py (what one worker process measures), performance_report.py (the target ratios
# and performance.md) and stats.py (the medians over --repeats rounds); this file is the command line, and runs
# each model in a worker process (this same file, with --worker).

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from benchmarks.performance_measure import LOADER_KEY, LOADERS, measure, with_setting  # noqa: E402
from benchmarks.performance_report import (HOSTS, SAME_DATA, SAME_DATA_HOSTS, WIDENING_ONLY, csv_fields,  # noqa: E402
                                           results_markdown)
from benchmarks.reproduce_plan import DEFAULT_MAX_EPOCHS, FIRST_SEED, plan  # noqa: E402
from benchmarks.reproduce_report import hosts_markdown  # noqa: E402
from benchmarks.reproduce_runs import run_all, write_rows  # noqa: E402
from benchmarks.stats import median_rows  # noqa: E402

#: What each side trains on: the docstring after its first two paragraphs, quoted in every report.
PROTOCOL = __doc__.split("\n\n", 2)[2]
PLUGIN_MODELS = tuple(m for h in HOSTS for m in (h, f"{h}_IaCN:{WIDENING_ONLY}", f"{h}_IaCN"))
RECBOLE_MODELS = ("recbole.DIN", "recbole.DIEN", "recbole.WideDeep", *(f"recbole.{h}{SAME_DATA}" for h in SAME_DATA_HOSTS))
DEFAULT_DATASET = "ml-100k"
DEFAULT_BATCH_SIZE = 1024
DEFAULT_EVAL_BATCH_SIZE = 4096
DEFAULT_EMBEDDING_SIZE = 18
DEFAULT_MAX_LEN = 20
DEFAULT_LR = 0.001
DEFAULT_WARMUP = 5
DEFAULT_BATCHES = 50
DEFAULT_EVAL_BATCHES = 20
DEFAULT_AUC_EPOCHS = 1
DEFAULT_SYNTHETIC_BATCHES = 200
DEFAULT_SYNTHETIC_MODELS = ("DIN_IaCN", "DIEN_IaCN")
SYNTHETIC_NAME = "synthetic-books"
DEFAULT_BLOCK = 5


# ------------------------------------------------------------------------------ orchestration
def run_worker(model: str, dataset: str, args, argv_common: list[str]) -> list[dict]:
    """Measure ``model`` in a fresh Python process; its result rows (``error`` set on failure)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_path = f.name
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", model, "--worker-dataset", dataset,
           "--worker-out", result_path, *argv_common]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=args.workdir)
    try:
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            error = lines[-1] if lines else f"exit {proc.returncode}"
            names = [with_setting(model, LOADER_KEY, loader) for loader in LOADERS] if args.interleave_loaders else [model]
            return [{"model": name, "dataset": dataset, "error": error} for name in names]
        with open(result_path, encoding="utf-8") as f:
            results = json.load(f)
    finally:
        os.unlink(result_path)
    for result in results:
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        result["error"] = ""
    return results


def synthetic_dataset(data_path: str, scale: float, name: str = SYNTHETIC_NAME) -> str:
    """Build (once) the SYNTHETIC Books-shaped dataset at ``scale``; its name."""
    from recbole_iacn.data import build_synthetic
    from recbole_iacn.data.prepare import has_ctr_files

    name = f"{name}-{scale:g}"
    folder = Path(data_path) / name
    if not has_ctr_files(folder, name):
        build_synthetic(folder, name, scale=scale)
    return name


# ------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Throughput and memory ratios of recbole-iacn models.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", default=[*PLUGIN_MODELS, *RECBOLE_MODELS])
    p.add_argument("--baseline", default="DIN", help="model the ratio columns divide by")
    p.add_argument("--convergence-seeds", type=int, default=0,
                   help="also train our DIN/DIEN and RecBole's on the same CTR rows to convergence over this many "
                        "seeds (early stopping, best epoch tested) and report test AUC and CPU seconds to the best "
                        "epoch beside the throughput ratios (reproduce.py --table hosts); 0 skips")
    p.add_argument("--convergence-models", nargs="+", default=list(SAME_DATA_HOSTS), choices=SAME_DATA_HOSTS)
    p.add_argument("--convergence-stopping-step", type=int, default=5)
    p.add_argument("--dataset", default=DEFAULT_DATASET)
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--eval-batch-size", type=int, default=DEFAULT_EVAL_BATCH_SIZE)
    p.add_argument("--embedding-size", type=int, default=DEFAULT_EMBEDDING_SIZE)
    p.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN, help="MAX_ITEM_LIST_LENGTH")
    p.add_argument("--learning-rate", type=float, default=DEFAULT_LR)
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed batches before timing")
    p.add_argument("--batches", "--max-batches", type=int, default=DEFAULT_BATCHES, dest="batches",
                   help="timed training batches")
    p.add_argument("--eval-batches", type=int, default=DEFAULT_EVAL_BATCHES, help="timed evaluation batches")
    p.add_argument("--full-epoch", action="store_true", help="time one full training epoch instead of --batches")
    p.add_argument("--auc-epochs", type=int, default=DEFAULT_AUC_EPOCHS,
                   help="epochs trained afterwards for the AUC column (0: skip)")
    p.add_argument("--synthetic-scale", type=float, default=0.0,
                   help="also measure peak RSS on SYNTHETIC Books-shaped data of this scale (1.0 = Books size; 0: skip)")
    p.add_argument("--synthetic-models", nargs="+", default=list(DEFAULT_SYNTHETIC_MODELS))
    p.add_argument("--synthetic-batches", type=int, default=DEFAULT_SYNTHETIC_BATCHES,
                   help="timed training batches on the synthetic data")
    p.add_argument("--interleave-loaders", action="store_true",
                   help="measure each plugin model through RecBole's and the tensor data loader in one process, "
                        "alternating blocks of --block batches (rows X:data_loader=recbole and X:data_loader=tensor)")
    p.add_argument("--block", type=int, default=DEFAULT_BLOCK, help="batches per block with --interleave-loaders")
    p.add_argument("--profile-batches", type=int, default=0,
                   help="also profile this many training steps per model (torch.profiler; 0: skip)")
    p.add_argument("--profile-top", type=int, default=15, help="operators listed per profile")
    p.add_argument("--repeats", type=int, default=1,
                   help="measure every model this many times, in rounds (model 1..n, then again), and report each "
                        "figure's median over the rounds; performance.csv keeps every round (column round)")
    p.add_argument("--seed", type=int, default=common.FIRST_SEED)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-dataset", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    return common.add_common_arguments(p, "performance", threads=os.cpu_count())


#: Options passed through to every worker unchanged.
_PASSED = ("data_path", "batch_size", "eval_batch_size", "embedding_size", "max_len", "learning_rate", "warmup",
           "eval_batches", "auc_epochs", "threads", "device", "seed", "profile_batches", "profile_top", "block")


def worker_argv(args, batches: int, auc_epochs: int) -> list[str]:
    argv = []
    for name in _PASSED:
        value = auc_epochs if name == "auc_epochs" else getattr(args, name)
        argv += [f"--{name.replace('_', '-') if name != 'data_path' else name}", str(value)]
    argv += ["--batches", str(batches)]
    if args.full_epoch:
        argv.append("--full-epoch")
    if args.interleave_loaders:
        argv.append("--interleave-loaders")
    if args.config_dict:
        argv += ["--config_dict", *args.config_dict]
    return argv


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1.")
    args.overrides = common.parse_overrides(args.config_dict)
    if args.worker:
        args.checkpoint_dir = tempfile.mkdtemp(prefix="iacn-perf-")
        try:
            result = measure(args.worker, args.worker_dataset, args)
        finally:
            shutil.rmtree(args.checkpoint_dir, ignore_errors=True)
        with open(args.worker_out, "w", encoding="utf-8") as f:
            json.dump(result, f)
        return result
    import torch

    torch.set_num_threads(args.threads)
    device = common.resolve_device(args.device)
    common.ensure_dataset(args.dataset, args.data_path)
    out = Path(args.out) if args.out else common.default_out_dir("performance") / "performance"
    out.mkdir(parents=True, exist_ok=True)
    args.workdir = tempfile.mkdtemp(prefix="iacn-perf-run-")  # RecBole writes log/ into the cwd
    command = common.command_line(None if argv is None else [sys.argv[0], *argv])
    info = common.machine_info(device)
    results, synthetic, convergence = {}, {}, []
    rounds: list[dict] = []  # with --repeats: each round's {model: row}; results holds their medians

    def write_results():
        """(Re)write the tables: after every row, so that a run cut short keeps what it measured."""
        header = common.header_lines(command, info)
        if len(rounds) > 1 or args.repeats > 1:
            rows = [{**csv_fields(r), "part": args.dataset, "round": i}
                    for i, measured in enumerate(rounds, 1) for r in measured.values()]
            rows += [{**csv_fields(r), "part": args.dataset, "round": "median"} for r in results.values()]
        else:
            rows = [{**csv_fields(r), "part": args.dataset} for r in results.values()]
        rows += [{**csv_fields(r), "part": "synthetic"} for r in synthetic.values()]
        csv_path = common.write_csv(out / "performance.csv", rows, header)
        text = results_markdown(results, args.baseline, synthetic, args, command, info, PROTOCOL)
        if convergence:
            write_rows(out / "convergence.csv", convergence, header)
            text += "\n" + hosts_markdown(convergence, args.convergence_models, [args.dataset])
        md_path = common.write_text(out / "performance.md", text)
        return text, md_path, csv_path

    try:
        for _ in range(args.repeats):
            rounds.append({})
            for model in args.models:
                for row in run_worker(model, args.dataset, args, worker_argv(args, args.batches, args.auc_epochs)):
                    rounds[-1][row["model"]] = row
                    _progress(row["model"], args.dataset, row)
                results.clear()
                results.update(median_rows(rounds))
                write_results()
        if args.synthetic_scale > 0:
            name = synthetic_dataset(args.data_path, args.synthetic_scale)
            for model in args.synthetic_models:
                for row in run_worker(model, name, args, worker_argv(args, args.synthetic_batches, 0)):
                    synthetic[row["model"]] = row
                    _progress(row["model"], name, row)
                write_results()
        if args.convergence_seeds > 0:
            run_convergence(args, device, convergence, write_results)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
    text, md_path, csv_path = write_results()
    print(text)
    return {"markdown": md_path, "csv": csv_path, "results": results, "synthetic": synthetic}


def run_convergence(args, device: str, rows: list, on_row) -> list[dict]:
    """Our hosts and RecBole's classes on the same CTR rows, early-stopped (``reproduce.py --table hosts``):
    the AUC-at-convergence and time-to-best-epoch pair, in this run, beside the throughput ratios. ``rows``
    is filled as runs finish, and ``on_row()`` called after each (to rewrite the tables)."""
    seeds = [FIRST_SEED + i for i in range(args.convergence_seeds)]
    runs = plan(("hosts",), args.convergence_models, [args.dataset], seeds)
    base_config = {**common.QUIET, **common.device_config(device), "data_path": args.data_path,
                   "epochs": DEFAULT_MAX_EPOCHS, "stopping_step": args.convergence_stopping_step,
                   "train_batch_size": args.batch_size, "eval_batch_size": args.eval_batch_size,
                   "embedding_size": args.embedding_size, "MAX_ITEM_LIST_LENGTH": args.max_len,
                   "learning_rate": args.learning_rate, **args.overrides}

    def keep(done):
        rows[:] = done
        on_row()

    run_all(runs, base_config, on_row=keep, log=lambda m: print(m, flush=True))
    return rows


def _progress(model: str, dataset: str, r: dict) -> None:
    status = r["error"] or (f"train {r['train_samples_per_s']:,.0f}/s, eval {r['eval_samples_per_s']:,.0f}/s, "
                            f"peak RSS {r['peak_rss_mb']:,.0f} MB")
    print(f"{model} on {dataset}: {status}", flush=True)


if __name__ == "__main__":
    common.run_main(main)
