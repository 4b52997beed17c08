"""``reproduce.py``'s plots: Table 1's bars, Table 2's AUC by behaviour length and the δ sweep, as PNG (mean ±
SD over seeds, with the command and machine in a footer); nothing when matplotlib is missing."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from benchmarks.reproduce_plan import HOST_LABELS, VARIANTS
from benchmarks.reproduce_report import auc_by_seed, variant_label
from benchmarks.stats import mean_sd


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
