"""Running ``reproduce.py``'s plan and resuming it: one run trained to its best epoch, the planned runs in
order (skipping those already in ``runs.csv``), and ``runs.csv`` itself, read back and rewritten whole after
every run (a temporary file renamed into place), under a lock on the output folder.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional, Sequence

from benchmarks import common
from benchmarks.reproduce_plan import IACN_SUFFIX, RECBOLE_VARIANT, RunSpec, row_key


# ------------------------------------------------------------------------------ one run
def wide_item_size(host: str, dataset: str, base_config: dict) -> int:
    """``d + d_aux``: the item-vector width of ``host_IaCN`` under the same settings."""
    from recbole_iacn.pipeline import make_config

    config, _, _ = make_config(host + IACN_SUFFIX, dataset, config_dict=base_config)
    d = int(config["item_embedding_size"] or config["embedding_size"])
    return d + int(config["iacn_embedding_size"] or config["embedding_size"])  # h null: as wide as embedding_size


def train_once(spec: RunSpec, base_config: dict, checkpoint_dir: str, commit: Optional[str] = None) -> dict:
    """Train one run to its best epoch (early stopping on the validation AUC), test that epoch; returns
    its metrics row (``error`` set if it failed). ``commit``: the code's commit, as read when the benchmark
    started (a commit made while a long run goes on must not be credited with rows trained by the older
    code); ``None`` reads it now."""
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
        commit=commit or common.git_commit(),
        error="",
    )
    return row


def best_epoch(curve: Sequence[tuple]) -> Optional[tuple]:
    """The first point ``(epoch, score, ...)`` with the highest validation score, as RecBole's early
    stopping keeps it.

    >>> best_epoch([(0, 0.7, 1.0), (1, 0.8, 2.0), (2, 0.8, 3.0)])
    (1, 0.8, 2.0)
    """
    best = None
    for point in curve:
        if best is None or point[1] > best[1]:
            best = point
    return best


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# ------------------------------------------------------------------------------ the plan, resumed
def run_all(runs: Sequence[RunSpec], base_config: dict, on_row: Callable[[list], None] | None = None,
            log=print, done: Sequence[dict] = (), commit: Optional[str] = None) -> list[dict]:
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
            row = train_once(spec, base_config, os.path.join(scratch, str(i)), commit)
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


# ------------------------------------------------------------------------------ runs.csv
def read_rows(path: Path) -> list[dict]:
    """The rows of an earlier ``runs.csv`` (numbers parsed back), or none; a damaged row is an error naming its
    line (:func:`benchmarks.common.read_runs_csv`)."""
    return common.read_runs_csv(path, parse=lambda row: {key: _parse_cell(key, value) for key, value in row.items()})


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
    """Write ``runs.csv`` (:func:`benchmarks.common.write_csv`: a stop never leaves half a file)."""
    return common.write_csv(path, list(rows), header)


