"""Statistics over seeds, and how each figure is written: mean ± sample SD, the paired t-test of two models
on the seeds both finished, Friedman's test over several settings, a Bonferroni split or Holm's correction of
many p values, and the medians of a benchmark's figures over repeated rounds.

Numbers only come in and out of the tests here; the tables that show them are built by each benchmark's
report module (``reproduce_report.py``, ``performance_report.py``, ``dain_ranking.py``, ``planted_interests.py``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Optional, Sequence

DECIMALS = 4


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


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample SD (ddof = 1; NaN for fewer than 2 values, NaN mean for none)."""
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return statistics.fmean(values), sd


def paired_test(base: dict, iacn: dict) -> Comparison:
    """Compare ``{seed: auc}`` maps: mean ± SD of each side and of the paired differences
    (IaCN − base), and the paired t-test over the seeds both sides have (two-sided).

    By hand: differences 0.02, 0.01, 0.03 have mean 0.02 and SD 0.01, so t = 0.02 / (0.01 / √3) = 3.4641 with
    df = 2, and the two-sided p = 2 (1 − F(t)), F(t) = 1/2 + t / (2 √(t² + 2)) for df = 2, is 0.07418:

    >>> c = paired_test({1: 0.70, 2: 0.71, 3: 0.72}, {1: 0.72, 2: 0.72, 3: 0.75})
    >>> c.n, round(c.diff_mean, 4), round(c.diff_sd, 4), round(c.t, 4), round(c.p, 5)
    (3, 0.02, 0.01, 3.4641, 0.07418)
    >>> [round(v, 4) for v in (c.base_mean, c.base_sd, c.iacn_mean, c.iacn_sd)]  # iacn_sd = √0.0003
    [0.71, 0.01, 0.73, 0.0173]
    >>> fmt_comparison(c)
    '+0.0200 ± 0.0100 (t=3.46, p=0.074, n=3)'

    Seeds pair up (seed 9 has no partner); identical differences leave nothing to test; one seed has no SD:

    >>> c = paired_test({1: 0.5, 2: 0.6, 9: 0.9}, {1: 0.4, 2: 0.5})
    >>> c.n, round(c.diff_mean, 4), c.t, c.p
    (2, -0.1, nan, nan)
    >>> one = paired_test({1: 0.5}, {1: 0.6})
    >>> one.n, one.p, one.base_sd, fmt_mean_sd(one.base_mean, one.base_sd)
    (1, nan, nan, '0.5000')
    """
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


@dataclass
class Friedman:
    """Friedman's test of "no setting differs" over the seeds (blocks) every setting in ``complete`` finished."""

    seeds: list
    complete: list  # the settings run on every one of ``seeds``
    left_out: list  # the settings run on some seeds, but not all of them
    statistic: Optional[float] = None  # None: fewer than 3 complete settings or 2 seeds, no test
    p: Optional[float] = None


def friedman(settings: Sequence[tuple[object, dict]]) -> Friedman:
    """Friedman's test (``scipy.stats.friedmanchisquare``; seeds as blocks, settings as treatments) over
    ``[(setting, {seed: value}), ...]``: one test of "no setting differs", instead of the smallest of many
    pairwise p values. It needs every setting on every seed, so it takes the settings that finished every seed
    any setting finished."""
    from scipy import stats

    seeds = sorted(set().union(*(values for _, values in settings))) if settings else []
    complete = [d for d, values in settings if set(values) >= set(seeds)]
    left_out = [d for d, values in settings if d not in complete and values]
    result = Friedman(seeds, complete, left_out)
    if len(complete) >= 3 and len(seeds) >= 2:
        by_setting = dict(settings)
        test = stats.friedmanchisquare(*[[by_setting[d][s] for s in seeds] for d in complete])
        result.statistic, result.p = float(test.statistic), float(test.pvalue)
    return result


def bonferroni(tested: Sequence[tuple[str, Comparison]], alpha: float = 0.05):
    """``(count, threshold, below it, below alpha only)`` over the comparisons that have a p value: the
    threshold is ``alpha / count``; ``None`` when none has one."""
    done = [(label, c) for label, c in tested if not math.isnan(c.p)]
    if not done:
        return None
    threshold = alpha / len(done)
    strong = [(label, c) for label, c in done if c.p < threshold]
    weak = [(label, c) for label, c in done if threshold <= c.p < alpha]
    return len(done), threshold, strong, weak


def holm(ps: Sequence[float]) -> list[float]:
    """Holm's step-down correction of a family of p values, in their order; NaN (untested) stays NaN and does
    not count in the family. The k-th smallest of m is multiplied by m − k + 1, kept monotone, capped at 1.

    >>> [round(p, 6) for p in holm([0.01, 0.04, 0.03, math.nan])]  # 0.01·3, max(0.04·1, 0.06), max(0.03·2, 0.03)
    [0.03, 0.06, 0.06, nan]
    >>> holm([0.5, 0.6])
    [1.0, 1.0]
    """
    ranked = sorted((i for i, p in enumerate(ps) if not math.isnan(p)), key=lambda i: ps[i])
    corrected, running = [math.nan] * len(ps), 0.0
    for k, i in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - k) * ps[i]))
        corrected[i] = running
    return corrected


def median_rows(rounds: Sequence[dict]) -> dict:
    """``{model: row}`` whose numbers are the medians over the rounds that measured the model
    (``statistics.median``; a model that failed in any round keeps that round's row, with its error).

    >>> rounds = [{"A": {"train_samples_per_s": 10.0, "parameters": 5, "error": "", "flag": True},
    ...            "B": {"train_samples_per_s": 4.0, "error": ""}},
    ...           {"A": {"train_samples_per_s": 30.0, "parameters": 5, "error": "", "flag": False},
    ...            "B": {"train_samples_per_s": math.nan, "error": "out of memory"}},
    ...           {"A": {"train_samples_per_s": 11.0, "parameters": 5, "error": "", "flag": True}}]
    >>> merged = median_rows(rounds)
    >>> list(merged), merged["A"]  # flags are not numbers: the first round's is kept
    (['A', 'B'], {'train_samples_per_s': 11.0, 'parameters': 5, 'error': '', 'flag': True, 'rounds': 3})
    >>> merged["B"]["error"]  # a failure in any round is reported, not hidden by a median
    'out of memory'
    """
    merged = {}
    for model in dict.fromkeys(m for measured in rounds for m in measured):
        rows = [measured[model] for measured in rounds if model in measured]
        failed = [r for r in rows if r.get("error")]
        if failed:
            merged[model] = failed[0]
            continue
        row = dict(rows[0])
        for key, value in row.items():
            values = [r.get(key) for r in rows]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                row[key] = statistics.median(values)
        row["rounds"] = len(rows)
        merged[model] = row
    return merged



# ------------------------------------------------------------------------------ how a figure is written
def fmt_mean_sd(mean: float, sd: float, decimals: int = DECIMALS) -> str:
    """``0.7860 ± 0.0013``; ``n/a`` without a value; the SD is left out when undefined (n = 1).

    >>> fmt_mean_sd(0.78601, 0.00126), fmt_mean_sd(0.5, math.nan), fmt_mean_sd(math.nan, math.nan)
    ('0.7860 ± 0.0013', '0.5000', 'n/a')
    """
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


def fmt_short(c: Comparison) -> str:
    """``+0.0015 (p 0.039)``: a paired difference where a table has many."""
    return "n/a" if c.n == 0 else f"{fmt_signed(c.diff_mean)} (p {fmt_p(c.p)})"