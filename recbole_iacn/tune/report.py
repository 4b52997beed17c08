"""A study's results from Ray's ``ResultGrid``: the trial table (CSV, Markdown), the best parameters (YAML), plots."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd
import yaml

from recbole_iacn.checkpoint import atomic_write
from recbole_iacn.tune.space import VALUE_LISTS, plain
from recbole_iacn.tune.trial import BEST_PREFIX, EPOCH_KEY, FINAL_KEY, MODEL_FILE, TEST_PREFIX, VALID_PREFIX

logger = logging.getLogger("recbole_iacn.tune")

FILES = {"csv": "results.csv", "markdown": "results.md", "best_config": "best_config.yaml",
         "delta_plot": "metric_vs_delta.png", "heatmap": "delta_lambda_heatmap.png"}
DELTA_KEY, LAMBDA_KEY = "iacn_delta", "iacn_lambda"
STATUS_FINISHED, STATUS_STOPPED, STATUS_ERROR, STATUS_NOT_RUN = "finished", "stopped early", "error", "not run"


@dataclass
class StudyReport:
    """Rows of the trial table and the files written."""

    rows: List[dict]
    columns: List[str]
    best: Optional[dict]
    files: Dict[str, str]


def tidy(value):
    """Plain Python value; floats keep 10 significant digits (0.30000000000000004 -> 0.3), NaN becomes None."""
    value = plain(value)
    if isinstance(value, float):
        return float(f"{value:.10g}") if math.isfinite(value) else None
    return [tidy(v) for v in value] if isinstance(value, list) else value


def trial_table(results, tuned: List[str]) -> List[dict]:
    """One row per trial: ``ResultGrid.get_dataframe()`` (each trial's last report) with the config,
    status, checkpoint and error of Ray's ``Result`` objects; best-so-far metrics become ``valid_*``."""
    last = {r["trial_id"]: r for r in results.get_dataframe().to_dict("records")}
    rows = []
    for index, result in enumerate(results):
        # a trial still PENDING when the study was interrupted has no config (and may have no folder) yet
        config = getattr(result, "config", None) or {}
        path = getattr(result, "path", None)
        trial_id = Path(path).name.removeprefix("trial_") if path else str((result.metrics or {}).get("trial_id", index))
        report = {k: tidy(v) for k, v in last.get(trial_id, {}).items()}
        status = (STATUS_ERROR if result.error else STATUS_FINISHED if report.get(FINAL_KEY) is True
                  else STATUS_STOPPED if report.get(EPOCH_KEY) else STATUS_NOT_RUN)
        error = (str(result.error).strip().splitlines() or [type(result.error).__name__])[-1] if result.error else ""
        rows.append({
            "trial_id": trial_id, "status": status, **{k: tidy(config.get(k)) for k in tuned},
            "epochs": report.get(EPOCH_KEY),
            **{VALID_PREFIX + k.removeprefix(BEST_PREFIX): v for k, v in report.items() if k.startswith(BEST_PREFIX)},
            **{k: v for k, v in report.items() if k.startswith(TEST_PREFIX)},
            "checkpoint": str(Path(result.checkpoint.path) / MODEL_FILE) if result.checkpoint else "",
            "error": error[:300],
        })
    return sorted(rows, key=lambda r: r["trial_id"])


def markdown_table(rows: List[dict], columns: List[str]) -> str:
    """The table in Markdown; floats with 4 significant digits."""

    def cell(value):
        return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value).replace("|", "\\|")

    lines = [columns, ["---"] * len(columns), *([cell(r.get(c)) for c in columns] for r in rows)]
    return "".join(f"| {' | '.join(line)} |\n" for line in lines)


def write_best_config(best: dict, fixed: dict, tuned: List[str], metric: str, study: dict, path: Path) -> str:
    """The best trial's parameters (fixed and tuned) as a YAML file for ``--config_files``."""
    test_metric = TEST_PREFIX + metric.removeprefix(VALID_PREFIX)
    score = f"{metric} = {best[metric]}"
    if best.get(test_metric) is not None:
        score += f", {test_metric} = {best[test_metric]}"
    header = (f"# Best parameters of the Ray Tune study {study['name']!r} ({study['model']} on {study['dataset']}).\n"
              f"# Trial {best['trial_id']}: {score}.\n# Use: python run_recbole_iacn.py --model={study['model']} "
              f"--dataset={study['dataset']} --config_files={path}\n")
    values = {**{k: tidy(v) for k, v in fixed.items()}, **{k: best[k] for k in tuned}}
    with atomic_write(path) as staging:
        Path(staging).write_text(header + yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return str(path)


def write_plots(rows: List[dict], kinds: Dict[str, str], metric: str, study_dir: Path) -> Dict[str, str]:
    """Metric against δ (valid and test; one line per λ of a grid or choice), and a δ × λ heatmap when λ is
    tuned too; skipped without matplotlib. Sampled values are drawn as points (heatmap: a scatter)."""
    frame = pd.DataFrame([r for r in rows if isinstance(r.get(metric), float) and r.get(DELTA_KEY) is not None])
    if frame.empty:
        logger.info(f"No plot: the study does not tune {DELTA_KEY}, or no trial reported a validation metric.")
        return {}
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
    except ImportError:
        logger.warning("Plots skipped: matplotlib is not installed (pip install 'recbole-iacn[plots]').")
        return {}
    discrete = {k: kinds.get(k) in VALUE_LISTS for k in (DELTA_KEY, LAMBDA_KEY)}
    name = metric.removeprefix(VALID_PREFIX)
    figures = {"delta_plot": Figure(figsize=(6, 4), layout="tight")}
    ax = figures["delta_plot"].subplots()
    for lam, group in frame.groupby(LAMBDA_KEY) if discrete[LAMBDA_KEY] else [(None, frame)]:
        for key, style, label in ((metric, "o-", "valid"), (TEST_PREFIX + name, "s--", "test")):
            if key in group and group[key].notna().any():
                means = group.groupby(DELTA_KEY)[key].mean()
                ax.plot(means.index, means.values, style if discrete[DELTA_KEY] else style[0],
                        label=label if lam is None else f"{label} λ={lam}")
    ax.set(xlabel="δ (iacn_delta)", ylabel=name, title=f"{name} against δ (mean over repeats)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    if LAMBDA_KEY in kinds:
        figures["heatmap"] = Figure(figsize=(6, 4.5), layout="tight")
        ax = figures["heatmap"].subplots()
        if all(discrete.values()):
            grid = frame.pivot_table(index=LAMBDA_KEY, columns=DELTA_KEY, values=metric, aggfunc="mean")
            image = ax.imshow(grid.values, origin="lower", aspect="auto", cmap="viridis")
            ax.set_xticks(range(len(grid.columns)), [f"{d:g}" for d in grid.columns])
            ax.set_yticks(range(len(grid.index)), [f"{lam:g}" for lam in grid.index])
            for (i, j), value in pd.DataFrame(grid.values).stack().items():
                ax.text(j, i, f"{value:.4f}", ha="center", va="center", fontsize="x-small", color="white")
        else:
            image = ax.scatter(frame[DELTA_KEY], frame[LAMBDA_KEY], c=frame[metric], cmap="viridis")
        ax.figure.colorbar(image, ax=ax, label=f"valid {name}")
        ax.set(xlabel="δ (iacn_delta)", ylabel="λ (iacn_lambda)", title=f"valid {name}: δ × λ")
    for kind, fig in figures.items():
        with atomic_write(study_dir / FILES[kind]) as staging:
            fig.savefig(staging, dpi=120, format=Path(FILES[kind]).suffix[1:])
    return {kind: str(study_dir / FILES[kind]) for kind in figures}


def write_report(results, kinds: Dict[str, str], fixed: dict, metric: str, mode: str, study: dict,
                 study_dir: Path) -> StudyReport:
    """Write the table, the best config and the plots of a finished (or stopped) study.

    ``results``: Ray's ``ResultGrid``; ``kinds``: tuned parameter -> Ray Tune function; ``fixed``: the
    space's fixed values; ``metric``: ``valid_<metric>``."""
    rows = trial_table(results, list(kinds))
    metrics = sorted({k for r in rows for k in r if k.startswith((VALID_PREFIX, TEST_PREFIX))},
                     key=lambda k: (k.startswith(TEST_PREFIX), k))
    columns = ["trial_id", "status", *kinds, "epochs", *metrics, "checkpoint", "error"]
    files = {kind: str(study_dir / FILES[kind]) for kind in ("csv", "markdown")}
    with atomic_write(files["csv"]) as staging:
        pd.DataFrame(rows, columns=columns).to_csv(staging, index=False)
    with atomic_write(files["markdown"]) as staging:
        Path(staging).write_text(markdown_table(rows, columns), encoding="utf-8")
    try:  # ResultGrid's best trial, on the best-so-far metric of each trial's last report (scope="last")
        best_id = results.get_best_result(BEST_PREFIX + metric.removeprefix(VALID_PREFIX), mode).metrics["trial_id"]
    except (RuntimeError, ValueError, KeyError):
        best_id = None
    best = next((r for r in rows if r["trial_id"] == best_id and isinstance(r.get(metric), float)), None)
    if best is not None:
        path = study_dir / FILES["best_config"]
        files["best_config"] = write_best_config(best, fixed, list(kinds), metric, study, path)
    return StudyReport(rows, columns, best, {**files, **write_plots(rows, kinds, metric, study_dir)})
