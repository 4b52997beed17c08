"""The model-agnostic screen: IaCN on RecBole's context-aware models, each against itself and its width control.

For every RecBole context-aware model IaCN attaches to (``registry.attached_names()``: ``DeepFM_IaCN``, ...,
``recbole.WideDeep_IaCN``), three variants on the same CTR rows, each trained to convergence (early stopping
on the validation AUC, ``--stopping-step`` epochs without a better one, at most ``--epochs``), its best epoch
tested:

* ``itself``: RecBole's model on the CTR view (``iacn_fields: none``);
* ``wide``: the same two extra item fields as ``iacn``, fed by a plain item table (``iacn_fields: plain``);
* ``iacn``: ``E_aux`` through the fields, δ and λ (``iacn_fields: iacn``).

Beside them, ``--ours WideDeep`` trains our own Wide&Deep host on the same rows (variant ``ours``), to set
against RecBole's (``recbole.WideDeep_IaCN`` ``itself``).

Seeds: ``--seeds`` (3) for every model; a model whose mean paired difference between any two of its variants
exceeds ``--extend-above`` (0.005) in absolute value gets seeds up to ``--extend-to`` (5). Each comparison is a
paired t-test over the seeds both sides finished (``scipy.stats.ttest_rel``); the p-values of one comparison
across the models are Holm-corrected (family: the models screened), and ``screen.md`` states which models IaCN
helps beyond width (``iacn`` above ``wide`` at a corrected p < ``--alpha``), if any.

Every finished run is added to ``runs.csv`` at once (the file rewritten under a temporary name and renamed into
place); one screen at a time writes to a folder (a second stops at once); the same command run again skips
the runs already there (failed ones run again), so the screen survives a stop and can be spread over sessions.
``--report-only`` writes ``screen.md`` from the rows there without training (a screen run in parts, or read
while it runs). A run that reached ``--epochs`` was never stopped early: ``screen.md`` counts them per model and
names the models that had not converged.

    python benchmarks/recbole_screen.py --dataset ml-1m-sample --out benchmarks/results/<date>/recbole-screen
    python benchmarks/recbole_screen.py --dataset ml-100k --models DeepFM_IaCN --seeds 1 --extend-to 1 --epochs 2
"""

from __future__ import annotations

import argparse
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
from typing import Optional, Sequence

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from benchmarks.stats import fmt_p, holm, mean_sd, paired_test  # noqa: E402

VARIANTS = ("itself", "wide", "iacn")
OURS = "ours"
#: variant -> iacn_fields
FIELDS = {"itself": "none", "wide": "plain", "iacn": "iacn"}
#: the comparisons of every model: (better?, than)
COMPARISONS = (("iacn", "wide"), ("iacn", "itself"), ("wide", "itself"))
DEFAULT_DATASET = "ml-1m-sample"
DEFAULT_SEEDS = 3
DEFAULT_EXTEND_TO = 5
DEFAULT_EXTEND_ABOVE = 0.005
#: 300, not reproduce.py's 100: RecBole's AFM reached 100 epochs in all of its first 6 runs, still improving (best
#: epochs 95-128 at 300; the screen's README).
DEFAULT_MAX_EPOCHS = 300
DEFAULT_STOPPING_STEP = 5
DECIMALS = 4
COLUMNS = ["dataset", "model", "variant", "seed", "test_auc", "test_logloss", "valid_auc", "best_epoch", "epochs_run",
           "seconds_to_best", "cpu_seconds_to_best", "train_seconds", "seconds", "max_epochs", "stopping_step",
           "embedding_size", "iacn_fields", "delta_used", "lambda_used", "learning_rate", "threads", "cpu", "device",
           "commit", "error"]


@dataclass(frozen=True)
class Run:
    dataset: str
    model: str  # a registered <Name>_IaCN, or our host for the variant "ours"
    variant: str
    seed: int

    def key(self) -> tuple:
        return (self.dataset, self.model, self.variant, str(self.seed))

    def overrides(self) -> dict:
        extra = {"seed": self.seed}
        if self.variant in FIELDS:
            extra["iacn_fields"] = FIELDS[self.variant]
        return extra


# ------------------------------------------------------------------------------ the rows
def read_rows(path: Path) -> list[dict]:
    """The rows of ``runs.csv`` (comment lines skipped), numbers parsed back; a damaged row is an error naming its
    line (:func:`benchmarks.common.read_runs_csv`)."""
    return common.read_runs_csv(path, required=("dataset", "model", "variant", "seed", "test_auc"), parse=_parse_row)


def _parse_row(row: dict) -> dict:
    try:
        row["seed"] = int(row["seed"])
    except ValueError:
        raise ValueError(f"seed {row['seed']!r} is not a whole number") from None
    for key in ("test_auc", "test_logloss", "valid_auc"):
        try:
            row[key] = float(row[key]) if row.get(key) not in (None, "") else math.nan
        except ValueError:
            raise ValueError(f"{key} {row[key]!r} is not a number") from None
    return row


def append_row(path: Path, row: dict, header: Sequence[str] = ()) -> None:
    """Add one run's row to ``runs.csv`` (the header first when the file is new): the file with the row is written
    by :func:`recbole_iacn.checkpoint.atomic_write` (durably, under a temporary name renamed into place), so that a
    kill at any moment leaves either the old file or the new one, never a half-written row."""
    import io

    from recbole_iacn.checkpoint import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    text = io.StringIO()
    if not old:
        text.write("".join(f"# {line}\n" for line in header))
    writer = csv.DictWriter(text, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    if not old:
        writer.writeheader()
    writer.writerow({k: common._plain(row.get(k)) for k in COLUMNS})
    with atomic_write(path, fsync=True) as staging:
        with open(staging, "w", encoding="utf-8", newline="") as f:
            f.write(old + text.getvalue())


def done_keys(rows: Sequence[dict]) -> set:
    return {(r["dataset"], r["model"], r["variant"], str(r["seed"])) for r in rows if not r.get("error")}


def auc_by_seed(rows: Sequence[dict], model: str, variant: str) -> dict:
    return {r["seed"]: r["test_auc"] for r in rows if not r.get("error") and r["model"] == model
            and r["variant"] == variant and not math.isnan(r["test_auc"])}


# ------------------------------------------------------------------------------ planning
def plan(models: Sequence[str], dataset: str, seeds: Sequence[int], ours: Sequence[str] = ()) -> list[Run]:
    """Seed by seed, every model's three variants (and our hosts, ``ours``): a screen cut short holds complete
    triples for the seeds it reached.

    >>> runs = plan(["FM_IaCN", "recbole.WideDeep_IaCN"], "d", [1, 2], ours=["WideDeep"])
    >>> [(r.model, r.variant, r.seed) for r in runs[:4]], len(runs)
    ([('FM_IaCN', 'itself', 1), ('FM_IaCN', 'wide', 1), ('FM_IaCN', 'iacn', 1), ('recbole.WideDeep_IaCN', 'itself', 1)], 14)
    >>> runs[6] == Run("d", "WideDeep", "ours", 1), runs[1].overrides(), runs[6].overrides()
    (True, {'seed': 1, 'iacn_fields': 'plain'}, {'seed': 1})
    """
    runs = []
    for seed in seeds:
        runs += [Run(dataset, m, v, seed) for m in models for v in VARIANTS]
        runs += [Run(dataset, h, OURS, seed) for h in ours]
    return runs


def to_extend(rows: Sequence[dict], models: Sequence[str], above: float) -> list[str]:
    """The models whose mean paired difference between two of their variants exceeds ``above``.

    >>> rows = [{"dataset": "d", "model": m, "variant": v, "seed": s, "test_auc": auc, "error": ""}
    ...         for m, gap in (("FM_IaCN", 0.001), ("DCN_IaCN", 0.02)) for s in (1, 2, 3)
    ...         for v, auc in (("itself", 0.7 + 0.001 * s), ("wide", 0.7 + 0.001 * s), ("iacn", 0.7 + 0.001 * s + gap))]
    >>> to_extend(rows, ["FM_IaCN", "DCN_IaCN"], 0.005)
    ['DCN_IaCN']
    """
    extend = []
    for model in models:
        for a, b in COMPARISONS:
            left, right = auc_by_seed(rows, model, a), auc_by_seed(rows, model, b)
            seeds = sorted(set(left) & set(right))
            if seeds and abs(statistics.fmean(left[s] - right[s] for s in seeds)) > above:
                extend.append(model)
                break
    return extend


def at_cap(rows: Sequence[dict], model: str) -> tuple:
    """``(runs that reached the epoch cap, runs)`` of ``model``'s three variants. A run that reached
    ``max_epochs`` was never stopped early: its validation AUC still rose within its last ``stopping_step``
    epochs, so it had not converged, and its test AUC says how fast it learns as much as how well.

    >>> rows = [{"model": "AFM_IaCN", "variant": "itself", "epochs_run": "100", "max_epochs": "100", "error": ""},
    ...         {"model": "AFM_IaCN", "variant": "wide", "epochs_run": "41", "max_epochs": "100", "error": ""},
    ...         {"model": "AFM_IaCN", "variant": "iacn", "epochs_run": "", "max_epochs": "", "error": "ValueError"}]
    >>> at_cap(rows, "AFM_IaCN")
    (1, 2)
    """
    runs = [r for r in rows if not r.get("error") and r["model"] == model and r["variant"] in VARIANTS]
    capped = sum(int(r["epochs_run"]) >= int(r["max_epochs"]) for r in runs if r.get("max_epochs") not in (None, ""))
    return capped, len(runs)


# ------------------------------------------------------------------------------ running
def train_once(run: Run, base_config: dict, checkpoint_dir: str, commit: str) -> dict:
    """Train ``run`` to its best epoch, test it; its row (``error`` set if it failed)."""
    import torch

    from recbole_iacn.pipeline import prepare, run as train

    device = "cuda" if base_config.get("use_gpu") else "cpu"
    row = {**asdict(run), "cpu": common.cpu_model(), "device": common.device_name(device), "commit": commit,
           "threads": torch.get_num_threads()}
    started = time.perf_counter()
    curve = []  # (epoch, valid score, wall seconds, CPU seconds since training began)
    try:
        config = {**base_config, **run.overrides(), "checkpoint_dir": checkpoint_dir}
        prepared = prepare(run.model, run.dataset, config_dict=config)
        fit_started, cpu_started = time.perf_counter(), time.process_time()
        result = train(run.model, run.dataset, prepared=prepared, saved=True,
                       epoch_callback=lambda trainer, epoch, score, _: curve.append(
                           (epoch, float(score), time.perf_counter() - fit_started, time.process_time() - cpu_started)))
    except Exception as exc:  # one failed run must not lose the others: recorded, and run again next time
        row.update(error=f"{type(exc).__name__}: {exc}".replace("\n", " "), seconds=round(time.perf_counter() - started, 2))
        return row
    finally:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    best = max(curve, key=lambda point: point[1]) if curve else None  # the first best, as early stopping keeps it
    plain = result["config"]
    row.update(
        test_auc=result["test_result"].get("auc"), test_logloss=result["test_result"].get("logloss"),
        valid_auc=result["best_valid_result"].get("auc"), best_epoch=best[0] if best else "",
        epochs_run=len(curve), seconds_to_best=round(best[2], 2) if best else "",
        cpu_seconds_to_best=round(best[3], 2) if best else "", train_seconds=round(curve[-1][2], 2) if curve else "",
        seconds=round(time.perf_counter() - started, 2), max_epochs=plain.get("epochs"),
        stopping_step=plain.get("stopping_step"), embedding_size=plain.get("embedding_size"),
        iacn_fields=plain.get("iacn_fields") if run.variant != OURS else "", learning_rate=plain.get("learning_rate"),
        delta_used=plain.get("iacn_delta") if run.variant == "iacn" else "",
        lambda_used=plain.get("iacn_lambda") if run.variant == "iacn" else "", error="")
    return row


def run_all(runs: Sequence[Run], base_config: dict, path: Path, header: Sequence[str], log=print) -> list[dict]:
    """Every run not already finished in ``path``, in order, each appended to it when it ends."""
    done = done_keys(read_rows(path))
    todo = [r for r in runs if r.key() not in done]
    if len(todo) < len(runs):
        log(f"{len(runs) - len(todo)} of {len(runs)} runs already in {path} (kept); {len(todo)} to run")
    commit = common.git_commit()  # read once: a commit made while the screen runs is not credited with its rows
    scratch = tempfile.mkdtemp(prefix="recbole-screen-")
    try:
        for i, run in enumerate(todo, 1):
            row = train_once(run, base_config, os.path.join(scratch, str(i)), commit)
            append_row(path, row, header)
            status = row["error"] or f"test AUC {row['test_auc']:.4f}, best epoch {row['best_epoch']} of {row['epochs_run']}"
            log(f"[{i}/{len(todo)}] {run.dataset} {run.model} ({run.variant}) seed={run.seed}: {status} ({row['seconds']} s)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return read_rows(path)


# ------------------------------------------------------------------------------ statistics
def fmt(value: float, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.{DECIMALS}f}" if signed else f"{value:.{DECIMALS}f}"




def summary(rows: Sequence[dict], models: Sequence[str], ours: Sequence[str], alpha: float) -> str:
    """The screen's Markdown: per model, each variant's test AUC (mean ± SD, n) and the paired comparisons, Holm
    over the models; which models IaCN helps beyond width; RecBole's Wide&Deep against ours."""
    from recbole_iacn.registry import get_spec

    # each comparison a − b: stats.paired_test(base=b, iacn=a), its p values Holm-corrected over the models
    tests = {c: {m: paired_test(auc_by_seed(rows, m, c[1]), auc_by_seed(rows, m, c[0])) for m in models}
             for c in COMPARISONS}
    p_holm = {c: dict(zip(models, holm([tests[c][m].p for m in models]))) for c in COMPARISONS}
    caps = {m: at_cap(rows, m) for m in models}
    lines = ["| model | itself | wide (plain table) | + IaCN | IaCN − wide (Holm p) | IaCN − itself (Holm p) | "
             "wide − itself (Holm p) | runs at the epoch cap |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in models:
        cells = []
        for v in VARIANTS:
            values = list(auc_by_seed(rows, m, v).values())
            mean, sd = mean_sd(values)
            spread = "" if math.isnan(sd) else f" ± {fmt(sd)}"
            cells.append(f"{fmt(mean)}{spread} (n={len(values)})" if values else "n/a")
        for c in COMPARISONS:
            t = tests[c][m]
            spread = "" if math.isnan(t.diff_sd) else f" ± {fmt(t.diff_sd)}"
            cells.append(f"{fmt(t.diff_mean, True)}{spread} (p={fmt_p(t.p)}, Holm {fmt_p(p_holm[c][m])}, n={t.n})")
        cells.append(f"{caps[m][0]} of {caps[m][1]}")
        lines.append(f"| {get_spec(m).host} | " + " | ".join(cells) + " |")
    helped = [m for m in models if tests[("iacn", "wide")][m].diff_mean > 0 and p_holm[("iacn", "wide")][m] < alpha]
    family = sum(not math.isnan(t.p) for t in tests[("iacn", "wide")].values())
    verdict = (f"IaCN helps beyond width (IaCN above the width control, Holm-corrected p < {alpha} over the {family} "
               f"models tested): {', '.join(get_spec(m).host for m in helped) if helped else 'none'}.")
    unconverged = [f"{get_spec(m).host} ({caps[m][0]} of {caps[m][1]} runs)" for m in models if caps[m][0]]
    if unconverged:
        verdict += (" Not at convergence: " + ", ".join(unconverged) + " reached the epoch cap, their validation AUC "
                    "still rising (a higher --epochs would tell more); read their rows as speed as much as quality.")
    text = "\n".join(lines) + "\n\n" + verdict + "\n"
    for host in ours:
        recbole_name = f"recbole.{host}_IaCN"
        if recbole_name in models:
            t = paired_test(auc_by_seed(rows, recbole_name, "itself"), auc_by_seed(rows, host, OURS))
            values = list(auc_by_seed(rows, host, OURS).values())
            text += (f"\nOur {get_spec(host).label} on the same rows: {fmt(statistics.fmean(values)) if values else 'n/a'} "
                     f"(n={len(values)}); ours − RecBole's {fmt(t.diff_mean, True)} ± {fmt(t.diff_sd)} (p={fmt_p(t.p)}, n={t.n}).\n")
    return text


# ------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        """The description as written, each option with its default."""

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=Formatter)
    p.add_argument("--dataset", default=DEFAULT_DATASET, help="a CTR dataset name (built under --data_path)")
    p.add_argument("--models", nargs="*", default=None, help="registered <Name>_IaCN models; none given: every one")
    p.add_argument("--ours", nargs="*", default=["WideDeep"], help="our hosts trained beside (variant 'ours')")
    p.add_argument("--extend-to", type=common.positive_int, default=DEFAULT_EXTEND_TO, help="seeds of a model with a large difference")
    p.add_argument("--extend-above", type=float, default=DEFAULT_EXTEND_ABOVE,
                   help="a mean paired difference above this (absolute) extends the model's seeds")
    p.add_argument("--alpha", type=common.share, default=0.05, help="significance level of the Holm-corrected tests")
    p.add_argument("--epochs", type=common.positive_int, default=DEFAULT_MAX_EPOCHS, help="most epochs of a run")
    p.add_argument("--stopping-step", type=common.positive_int, default=DEFAULT_STOPPING_STEP,
                   help="stop after this many epochs without a better validation AUC")
    p.add_argument("--report-only", action="store_true", help="write screen.md from the rows in runs.csv; train nothing")
    common.add_common_arguments(p, "recbole-screen", seeds=DEFAULT_SEEDS, threads=1)
    return p


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    from recbole_iacn.registry import attached_names, get_spec

    models = list(args.models) if args.models else attached_names()
    for m in models:
        if get_spec(m).kind != "recbole":
            raise SystemExit(f"--models takes RecBole's models with IaCN ({', '.join(attached_names())}), not {m}.")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    device = common.resolve_device(args.device)
    common.ensure_dataset(args.dataset, args.data_path)
    out = Path(args.out) if args.out else common.default_out_dir("recbole-screen") / "recbole-screen"
    path = out / "runs.csv"
    command, info = common.command_line(), common.machine_info(device)
    header = common.header_lines(command, info)
    base = {**common.QUIET, **common.device_config(device), "data_path": str(args.data_path), "epochs": args.epochs,
            "stopping_step": args.stopping_step, **common.parse_overrides(args.config_dict)}
    seeds = common.seed_list(args)
    ours = [h for h in args.ours if f"recbole.{h}_IaCN" in models]  # beside RecBole's own, when it is screened
    with common.exclusive(out):  # a second screen into the same folder stops at once, before it trains anything
        return _screen(args, models, ours, seeds, base, out, path, header, command, info)


def _screen(args, models, ours, seeds, base, out: Path, path: Path, header, command: str, info: dict) -> dict:
    """Train what ``runs.csv`` lacks (then the extended seeds), or nothing with ``--report-only``; write screen.md."""
    if args.report_only:
        rows = read_rows(path)
        extend = []
    else:
        rows = run_all(plan(models, args.dataset, seeds, ours), base, path, header)
        extend = to_extend(rows, models, args.extend_above) if args.extend_to > len(seeds) else []
    if extend:
        more = [args.first_seed + i for i in range(len(seeds), args.extend_to)]
        print(f"seeds {more} for {', '.join(extend)} (a mean difference above {args.extend_above})")
        rows = run_all(plan(extend, args.dataset, more, [h for h in ours if f"recbole.{h}_IaCN" in extend]), base,
                       path, header)
    text = common.markdown_header("IaCN on RecBole's context-aware models: the screen", command, info) + "\n"
    text += summary([r for r in rows if r["dataset"] == args.dataset], models, ours, args.alpha)
    common.write_text(out / "screen.md", text)
    print(text)
    return {"rows": rows, "markdown": out / "screen.md", "csv": path}


if __name__ == "__main__":
    common.run_main(main)
