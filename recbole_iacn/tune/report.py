"""A study's results: the trial table (CSV, Markdown), the best parameters (YAML) and plots (PNG)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from recbole_iacn.tune.space import plain
from recbole_iacn.tune.trial import BEST_PREFIX, EPOCH_KEY, FINAL_KEY, MODEL_FILE, TEST_PREFIX, VALID_PREFIX

logger = logging.getLogger("recbole_iacn.tune")

TABLE_CSV = "results.csv"
TABLE_MD = "results.md"
BEST_CONFIG = "best_config.yaml"
DELTA_PLOT = "metric_vs_delta.png"
HEATMAP_PLOT = "delta_lambda_heatmap.png"
DELTA_KEY = "iacn_delta"
LAMBDA_KEY = "iacn_lambda"
DISCRETE_KINDS = ("grid", "choice")  # δ, λ drawn as lines / heatmap cells; otherwise as points
FLOAT_DIGITS = 10  # significant digits kept for sampled values (0.30000000000000004 -> 0.3)
TABLE_DIGITS = 4
PLOT_DPI = 120

STATUS_FINISHED = "finished"
STATUS_STOPPED = "stopped early"
STATUS_ERROR = "error"
STATUS_NOT_RUN = "not run"


@dataclass
class StudyReport:
    """Rows of the trial table and the files written."""

    rows: List[dict]
    columns: List[str]
    best: Optional[dict]
    files: Dict[str, str]


def tidy(value):
    """Plain Python value, with floats rounded to FLOAT_DIGITS significant digits."""
    value = plain(value)
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{FLOAT_DIGITS}g}")
    if isinstance(value, list):
        return [tidy(v) for v in value]
    return value


def trial_row(result, tuned: List[str]) -> dict:
    """One table row from a Ray Tune ``Result``."""
    metrics = result.metrics or {}
    row = {"trial_id": metrics.get("trial_id") or Path(result.path).name.split("_")[-1]}
    row["status"] = _status(result, metrics)
    row.update({k: tidy((result.config or {}).get(k)) for k in tuned})
    row["epochs"] = metrics.get(EPOCH_KEY)
    for key, value in metrics.items():
        if key.startswith(BEST_PREFIX):
            row[VALID_PREFIX + key[len(BEST_PREFIX):]] = tidy(value)
    for key, value in metrics.items():
        if key.startswith(TEST_PREFIX):
            row[key] = tidy(value)
    row["checkpoint"] = str(Path(result.checkpoint.path) / MODEL_FILE) if result.checkpoint else ""
    row["error"] = _first_line(result.error) if result.error else ""
    return row


def _status(result, metrics) -> str:
    if result.error:
        return STATUS_ERROR
    if metrics.get(FINAL_KEY):
        return STATUS_FINISHED
    return STATUS_STOPPED if metrics.get(EPOCH_KEY) else STATUS_NOT_RUN


def _first_line(error) -> str:
    text = str(error).strip().splitlines()
    return text[-1][:300] if text else type(error).__name__


def table_columns(rows: List[dict], tuned: List[str]) -> List[str]:
    """Fixed columns first, then tuned parameters, then valid and test metrics."""
    metric_cols = sorted({k for r in rows for k in r if k.startswith((VALID_PREFIX, TEST_PREFIX))},
                         key=lambda k: (not k.startswith(VALID_PREFIX), k))
    return ["trial_id", "status", *tuned, "epochs", *metric_cols, "checkpoint", "error"]


def pick_best(rows: List[dict], metric: str, mode: str) -> Optional[dict]:
    """The row with the best ``valid_<metric>`` (``mode`` max or min), or None."""
    scored = [r for r in rows if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda r: r[metric])


def write_table(rows: List[dict], columns: List[str], study_dir: Path) -> Dict[str, str]:
    """``results.csv`` and ``results.md``."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=columns)
    csv_path = study_dir / TABLE_CSV
    frame.to_csv(csv_path, index=False)
    md_path = study_dir / TABLE_MD
    md_path.write_text(markdown_table(rows, columns), encoding="utf-8")
    return {"csv": str(csv_path), "markdown": str(md_path)}


def markdown_table(rows: List[dict], columns: List[str]) -> str:
    """A GitHub Markdown table (no extra dependency)."""
    def cell(value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, float):
            return f"{value:.{TABLE_DIGITS}g}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_best_config(best: dict, fixed: dict, tuned: List[str], metric: str, study: dict, path: Path) -> str:
    """The best trial's parameters (fixed and tuned) as a YAML file for ``--config_files``."""
    values = {**{k: tidy(v) for k, v in fixed.items()}, **{k: best[k] for k in tuned}}
    test_metric = metric.replace(VALID_PREFIX, TEST_PREFIX, 1)
    score = f"{metric} = {best[metric]}"
    if best.get(test_metric) is not None:
        score += f", {test_metric} = {best[test_metric]}"
    header = [
        f"# Best parameters of the Ray Tune study {study['name']!r} ({study['model']} on {study['dataset']}).",
        f"# Trial {best['trial_id']}: {score}.",
        f"# Use: python run_recbole_iacn.py --model={study['model']} --dataset={study['dataset']} "
        f"--config_files={path}",
    ]
    text = "\n".join(header) + "\n" + yaml.safe_dump(values, sort_keys=False, default_flow_style=False)
    path.write_text(text, encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------------------ plots
def write_plots(rows: List[dict], kinds: Dict[str, str], metric: str, study_dir: Path) -> Dict[str, str]:
    """Metric against δ, and a δ × λ heatmap when both vary; skipped (logged) without matplotlib.

    ``kinds`` maps each tuned parameter to its distribution: grid/choice values are drawn as lines and
    heatmap cells, sampled ones as points."""
    if DELTA_KEY not in kinds:
        logger.info(f"No plot: the study does not tune {DELTA_KEY}.")
        return {}
    points = [r for r in rows if isinstance(r.get(metric), (int, float)) and r.get(DELTA_KEY) is not None]
    if not points:
        logger.info("No plot: no trial reported a validation metric.")
        return {}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("Plots skipped: matplotlib is not installed (pip install 'recbole-iacn[plots]').")
        return {}
    discrete = {k: kinds.get(k) in DISCRETE_KINDS for k in (DELTA_KEY, LAMBDA_KEY)}
    files = {"delta_plot": _plot_delta(plt, points, metric, LAMBDA_KEY in kinds, discrete, study_dir / DELTA_PLOT)}
    if LAMBDA_KEY in kinds:
        files["heatmap"] = _plot_heatmap(plt, points, metric, all(discrete.values()), study_dir / HEATMAP_PLOT)
    return files


def _mean_by(points: List[dict], keys, value_key) -> Dict[tuple, float]:
    groups: Dict[tuple, List[float]] = {}
    for p in points:
        if isinstance(p.get(value_key), (int, float)):
            groups.setdefault(tuple(p[k] for k in keys), []).append(p[value_key])
    return {k: sum(v) / len(v) for k, v in groups.items()}


def _plot_delta(plt, points, metric, by_lambda: bool, discrete: Dict[str, bool], path: Path) -> str:
    test_metric = metric.replace(VALID_PREFIX, TEST_PREFIX, 1)
    split = by_lambda and discrete[LAMBDA_KEY]
    lambdas = sorted({p[LAMBDA_KEY] for p in points}) if split else [None]
    fig, ax = plt.subplots(figsize=(6, 4))
    for lam in lambdas:
        group = [p for p in points if lam is None or p[LAMBDA_KEY] == lam]
        label = f"λ={lam}" if lam is not None else ""
        for key, style, name in ((metric, "o-", "valid"), (test_metric, "s--", "test")):
            means = _mean_by(group, [DELTA_KEY], key)
            if means:
                xs = sorted(means)
                ax.plot([x[0] for x in xs], [means[x] for x in xs], style if discrete[DELTA_KEY] else style[0],
                        label=f"{name} {label}".strip())
    ax.set_xlabel("δ (iacn_delta)")
    ax.set_ylabel(metric.replace(VALID_PREFIX, "", 1))
    ax.set_title(f"{metric.replace(VALID_PREFIX, '', 1)} against δ (mean over repeats)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)
    return str(path)


def _plot_heatmap(plt, points, metric, discrete: bool, path: Path) -> str:
    deltas = sorted({p[DELTA_KEY] for p in points})
    lambdas = sorted({p[LAMBDA_KEY] for p in points})
    fig, ax = plt.subplots(figsize=(6, 4.5))
    name = metric.replace(VALID_PREFIX, "valid ", 1)
    if discrete:
        means = _mean_by(points, [LAMBDA_KEY, DELTA_KEY], metric)
        grid = [[means.get((lam, d), float("nan")) for d in deltas] for lam in lambdas]
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(deltas)), [f"{d:g}" for d in deltas])
        ax.set_yticks(range(len(lambdas)), [f"{lam:g}" for lam in lambdas])
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if not math.isnan(value):
                    ax.text(j, i, f"{value:.{TABLE_DIGITS}f}", ha="center", va="center", fontsize="x-small",
                            color="white")
    else:
        image = ax.scatter([p[DELTA_KEY] for p in points], [p[LAMBDA_KEY] for p in points],
                           c=[p[metric] for p in points], cmap="viridis")
    fig.colorbar(image, ax=ax, label=name)
    ax.set_xlabel("δ (iacn_delta)")
    ax.set_ylabel("λ (iacn_lambda)")
    ax.set_title(f"{name}: δ × λ")
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)
    return str(path)


# ------------------------------------------------------------------------------ all
def write_report(results, kinds: Dict[str, str], fixed: dict, metric: str, mode: str, study: dict,
                 study_dir: Path) -> StudyReport:
    """Write the table, the best config and the plots of a finished (or stopped) study.

    ``kinds``: tuned parameter -> distribution name; ``fixed``: the space's fixed values."""
    tuned = list(kinds)
    rows = sorted((trial_row(r, tuned) for r in results), key=lambda r: r["trial_id"])
    columns = table_columns(rows, tuned)
    files = write_table(rows, columns, study_dir)
    best = pick_best(rows, metric, mode)
    if best is not None:
        files["best_config"] = write_best_config(best, fixed, tuned, metric, study, study_dir / BEST_CONFIG)
    files.update(write_plots(rows, kinds, metric, study_dir))
    return StudyReport(rows=rows, columns=columns, best=best, files=files)
