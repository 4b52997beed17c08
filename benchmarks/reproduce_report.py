"""``reproduce.py``'s tables in Markdown: Table 1 (each control against X + IaCN), our hosts against RecBole's,
Table 2 by behaviour length and the δ sweep, each with its paired tests and the paper's figures beside (for
reference only: different data), and which machines trained the rows.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from benchmarks import common
from benchmarks.reproduce_plan import HOST_LABELS, RECBOLE_VARIANT, VARIANTS
from benchmarks.stats import (Comparison, bonferroni, fmt_comparison, fmt_mean_sd, fmt_p, fmt_short, friedman, mean_sd,
                              paired_test)

VARIANT_LABELS = {"base": "{h}", "wide": "{h}, E_orig of d + d_aux", "lambda0": "{h} + IaCN, λ = 0",
                  "iacn": "{h} + IaCN", RECBOLE_VARIANT: "RecBole's {h} (same rows)"}
HOSTS_TARGET_AUC_GAP = 0.002  # ours ≥ RecBole's − this
HOSTS_TARGET_TIME_RATIO = 0.5  # ours' time to best epoch ≤ this × RecBole's

#: The paper's reported AUC (docs/method.md, "Paper settings"): Amazon Books / Electronics, DIEN protocol.
PAPER_TABLE1 = {
    "WideDeep": (("0.7860 ± 0.0013", "0.7461 ± 0.0015"), ("0.7928 ± 0.0009", "0.7502 ± 0.0010")),
    "DIN": (("0.7970 ± 0.0010", "0.7569 ± 0.0009"), ("0.8002 ± 0.0009", "0.7606 ± 0.0013")),
    "DIEN": (("0.8534 ± 0.0018", "0.7706 ± 0.0021"), ("0.8633 ± 0.0019", "0.7723 ± 0.0002")),
}
PAPER_TABLE2 = {10: ("0.854", "0.857"), 20: ("0.853", "0.863"), 50: ("0.850", "0.861")}  # Books
PAPER_DELTA = {0.1: 0.862, 0.2: 0.864, 0.3: 0.864, 0.4: 0.864, 0.5: 0.861, 0.6: 0.861,
               0.7: 0.862, 0.8: 0.862, 0.9: 0.862, 1.0: 0.860}  # DIEN + IaCN, Books


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
    split = bonferroni(tested)
    if split is None:
        return f"{dataset}: no comparison has a p value yet."
    count, threshold, strong, weak = split
    strong, weak = ([f"{label} ({fmt_p(c.p)})" for label, c in side] for side in (strong, weak))
    return (f"{dataset}: {count} comparisons tested; with a Bonferroni correction p < {threshold:.4f} is needed "
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
    difference" over the seeds every δ finished, and every pair of δ values (paired t-tests).

    With two δ values and no δ = 1 there is no control column and no Friedman test:

    >>> rows = [{"table": "delta", "dataset": "d", "host": "DIEN", "seed": 2020 + i, "delta": d, "test_auc": a,
    ...          "error": ""} for d, aucs in {0.1: [0.80, 0.82, 0.81], 0.5: [0.79, 0.80, 0.82]}.items()
    ...         for i, a in enumerate(aucs)]
    >>> text = delta_markdown(rows, "DIEN", ["d"], [0.1, 0.5])
    >>> "Friedman test: n/a" in text, "− δ = 1" in text
    (True, False)
    """
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


def friedman_line(by_seed: dict, dataset: str, deltas: Sequence[float]) -> str:
    """Friedman's test of "no δ differs" over the seeds (:func:`benchmarks.stats.friedman`), naming the δ values
    it left out because they did not finish every seed."""
    result = friedman([(d, by_seed[dataset, d]) for d in deltas])
    left_out = [f"{d:g}" for d in result.left_out]
    note = f" Left out, not run on every seed: δ = {', '.join(left_out)}." if left_out else ""
    if result.statistic is None:
        return (f"Friedman test: n/a (it needs at least 3 δ values run on the same 2 or more seeds; "
                f"{len(result.complete)} δ values have every one of seeds {result.seeds}).{note}")
    return (f"Friedman test over {len(result.complete)} δ values, blocks = seeds {result.seeds}: "
            f"χ² = {result.statistic:.2f}, p = {fmt_p(result.p)}.{note}")


def machines_sentence(rows: Sequence[dict], csv_name: str = "runs.csv") -> str:
    """Which machines the rows were trained on, with run counts (column ``cpu``; rows written before that
    column existed count as not recorded), and a warning when times compare runs from different machines.

    >>> one = machines_sentence([{"cpu": "Xeon", "device": "cpu", "error": ""}] * 2)
    >>> "Xeon (2 runs)" in one, "more than one machine" in one, machines_sentence([])
    (True, False, '')
    """
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
