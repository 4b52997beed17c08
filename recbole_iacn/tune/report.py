"""A study's results from Ray's ``ResultGrid``: the trial table (CSV, Markdown), the best parameters (YAML), plots."""

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

FILES = {"csv": "results.csv", "markdown": "results.md", "best_config": "best_config.yaml",
         "delta_plot": "metric_vs_delta.png", "heatmap": "delta_lambda_heatmap.png"}
DELTA_KEY, LAMBDA_KEY = "iacn_delta", "iacn_lambda"
DISCRETE_KINDS = ("grid_search", "choice")  # δ, λ drawn as lines / heatmap cells; otherwise as points
FLOAT_DIGITS = 10  # significant digits kept for sampled values (0.30000000000000004 -> 0.3)
TABLE_DIGITS = 4
STATUS_FINISHED, STATUS_STOPPED, STATUS_ERROR, STATUS_NOT_RUN = "finished", "stopped early", "error", "not run"


@dataclass
class StudyReport:
    """Rows of the trial table and the files written."""

    rows: List[dict]
    columns: List[str]
    best: Optional[dict]
    files: Dict[str, str]


def tidy(value):
    """Plain Python value; floats rounded to FLOAT_DIGITS significant digits, NaN to None."""
    value = plain(value)
    if isinstance(value, float):
        return float(f"{value:.{FLOAT_DIGITS}g}") if math.isfinite(value) else None
    return [tidy(v) for v in value] if isinstance(value, list) else value


def trial_table(results, tuned: List[str]) -> List[dict]:
    """One row per trial: ``ResultGrid.get_dataframe()`` (each trial's last report and config) with the
    status, checkpoint and error of Ray's ``Result`` objects; best-so-far metrics become ``valid_*``."""
    last = {r.get("trial_id"): r for r in results.get_dataframe().to_dict("records")}
    rows = []
    for result in results:
        trial_id = Path(result.path).name.removeprefix("trial_")
        report = last.get(trial_id, {})
        status = (STATUS_ERROR if result.error else STATUS_FINISHED if tidy(report.get(FINAL_KEY)) is True
                  else STATUS_STOPPED if tidy(report.get(EPOCH_KEY)) else STATUS_NOT_RUN)
        row = {"trial_id": trial_id, "status": status}
        row.update({k: tidy((result.config or {}).get(k)) for k in tuned})
        row["epochs"] = tidy(report.get(EPOCH_KEY))
        row.update({VALID_PREFIX + k[len(BEST_PREFIX):]: tidy(v) for k, v in report.items() if k.startswith(BEST_PREFIX)})
        row.update({k: tidy(v) for k, v in report.items() if k.startswith(TEST_PREFIX)})
        row["checkpoint"] = str(Path(result.checkpoint.path) / MODEL_FILE) if result.checkpoint else ""
        row["error"] = (str(result.error).strip().splitlines() or [type(result.error).__name__])[-1][:300] if result.error else ""
        rows.append(row)
    return sorted(rows, key=lambda r: r["trial_id"])


def best_row(results, rows: List[dict], metric: str, mode: str) -> Optional[dict]:
    """The row of ``ResultGrid.get_best_result`` on the best-so-far metric of each trial's last report."""
    try:
        best = results.get_best_result(BEST_PREFIX + metric[len(VALID_PREFIX):], mode, scope="last")
    except (RuntimeError, ValueError, KeyError):
        return None
    row = next((r for r in rows if r["trial_id"] == Path(best.path).name.removeprefix("trial_")), None)
    return row if row is not None and isinstance(row.get(metric), float) else None


def markdown_table(rows: List[dict], columns: List[str]) -> str:
    def cell(value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return f"{value:.{TABLE_DIGITS}g}" if isinstance(value, float) else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]) + "\n"


def write_best_config(best: dict, fixed: dict, tuned: List[str], metric: str, study: dict, path: Path) -> str:
    """The best trial's parameters (fixed and tuned) as a YAML file for ``--config_files``."""
    values = {**{k: tidy(v) for k, v in fixed.items()}, **{k: best[k] for k in tuned}}
    test_metric = metric.replace(VALID_PREFIX, TEST_PREFIX, 1)
    score = f"{metric} = {best[metric]}" + (f", {test_metric} = {best[test_metric]}" if best.get(test_metric) is not None else "")
    header = (f"# Best parameters of the Ray Tune study {study['name']!r} ({study['model']} on {study['dataset']}).\n"
              f"# Trial {best['trial_id']}: {score}.\n# Use: python run_recbole_iacn.py --model={study['model']} "
              f"--dataset={study['dataset']} --config_files={path}\n")
    path.write_text(header + yaml.safe_dump(values, sort_keys=False, default_flow_style=False), encoding="utf-8")
    return str(path)


def write_plots(rows: List[dict], kinds: Dict[str, str], metric: str, study_dir: Path) -> Dict[str, str]:
    """Metric against δ (one line per λ of a grid), and a δ × λ heatmap when both vary; skipped without
    matplotlib. grid_search/choice values are drawn as lines and heatmap cells, sampled ones as points."""
    import pandas as pd

    frame = pd.DataFrame([r for r in rows if isinstance(r.get(metric), float) and r.get(DELTA_KEY) is not None])
    if DELTA_KEY not in kinds or frame.empty:
        logger.info(f"No plot: the study does not tune {DELTA_KEY}, or no trial reported a validation metric.")
        return {}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("Plots skipped: matplotlib is not installed (pip install 'recbole-iacn[plots]').")
        return {}
    discrete = {k: kinds.get(k) in DISCRETE_KINDS for k in (DELTA_KEY, LAMBDA_KEY)}
    name, test_metric = metric.replace(VALID_PREFIX, "", 1), metric.replace(VALID_PREFIX, TEST_PREFIX, 1)
    by_lambda = LAMBDA_KEY in kinds and discrete[LAMBDA_KEY]
    fig, ax = plt.subplots(figsize=(6, 4))
    for lam, group in frame.groupby(LAMBDA_KEY) if by_lambda else [(None, frame)]:
        for key, style, label in ((metric, "o-", "valid"), (test_metric, "s--", "test")):
            if key in group and group[key].notna().any():
                means = group.groupby(DELTA_KEY)[key].mean()
                ax.plot(means.index, means.values, style if discrete[DELTA_KEY] else style[0],
                        label=f"{label} λ={lam}" if lam is not None else label)
    ax.set(xlabel="δ (iacn_delta)", ylabel=name, title=f"{name} against δ (mean over repeats)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    files = {"delta_plot": _save(plt, fig, study_dir / FILES["delta_plot"])}
    if LAMBDA_KEY in kinds:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        if all(discrete.values()):
            grid = frame.pivot_table(index=LAMBDA_KEY, columns=DELTA_KEY, values=metric, aggfunc="mean")
            image = ax.imshow(grid.values, origin="lower", aspect="auto", cmap="viridis")
            ax.set_xticks(range(len(grid.columns)), [f"{d:g}" for d in grid.columns])
            ax.set_yticks(range(len(grid.index)), [f"{lam:g}" for lam in grid.index])
            for (i, j), value in pd.DataFrame(grid.values).stack().items():
                ax.text(j, i, f"{value:.{TABLE_DIGITS}f}", ha="center", va="center", fontsize="x-small", color="white")
        else:
            image = ax.scatter(frame[DELTA_KEY], frame[LAMBDA_KEY], c=frame[metric], cmap="viridis")
        fig.colorbar(image, ax=ax, label=f"valid {name}")
        ax.set(xlabel="δ (iacn_delta)", ylabel="λ (iacn_lambda)", title=f"valid {name}: δ × λ")
        files["heatmap"] = _save(plt, fig, study_dir / FILES["heatmap"])
    return files


def _save(plt, fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def write_report(results, kinds: Dict[str, str], fixed: dict, metric: str, mode: str, study: dict,
                 study_dir: Path) -> StudyReport:
    """Write the table, the best config and the plots of a finished (or stopped) study.

    ``results``: Ray's ``ResultGrid``; ``kinds``: tuned parameter -> Ray Tune function; ``fixed``: the
    space's fixed values; ``metric``: ``valid_<metric>``."""
    import pandas as pd

    tuned = list(kinds)
    rows = trial_table(results, tuned)
    metric_columns = sorted({k for r in rows for k in r if k.startswith((VALID_PREFIX, TEST_PREFIX))},
                            key=lambda k: (not k.startswith(VALID_PREFIX), k))
    columns = ["trial_id", "status", *tuned, "epochs", *metric_columns, "checkpoint", "error"]
    files = {"csv": str(study_dir / FILES["csv"]), "markdown": str(study_dir / FILES["markdown"])}
    pd.DataFrame(rows, columns=columns).to_csv(files["csv"], index=False)
    Path(files["markdown"]).write_text(markdown_table(rows, columns), encoding="utf-8")
    best = best_row(results, rows, metric, mode)
    if best is not None:
        files["best_config"] = write_best_config(best, fixed, tuned, metric, study, study_dir / FILES["best_config"])
    files.update(write_plots(rows, kinds, metric, study_dir))
    return StudyReport(rows=rows, columns=columns, best=best, files=files)
