"""The benchmark scripts, run as commands the way their users run them (``python benchmarks/<script>.py``):
smoke runs on tiny data (each a few seconds on 2 CPU cores), reports that ``reproduce.py --report-only``
writes from hand-made runs (statistics checked by hand), and the examples in the benchmark modules'
docstrings, run by pytest's doctest runner in a process of its own. Nothing here imports benchmarks/."""

from __future__ import annotations

import csv
import fcntl
import math
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ML1M_SAMPLE

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
TINY = {"embedding_size": 8, "iacn_embedding_size": 8, "train_batch_size": 512}
#: The benchmark modules whose docstrings carry examples (tests of their pure helpers).
EXAMPLES = ("stats.py", "reproduce_plan.py", "reproduce_runs.py", "reproduce_report.py", "performance_measure.py",
            "performance_report.py")


def bench(script: str, *args, cwd, expect: int = 0, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python benchmarks/<script>.py args`` in ``cwd`` (RecBole writes its log folder into the working
    directory); fails the test unless it exits ``expect``."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / f"{script}.py"), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def markdown_rows(text: str, after: str) -> tuple[list[str], dict]:
    """The first Markdown table after the first line that starts with ``after``: ``(header, {first cell: row})``."""
    lines = text[text.index(after):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip()[1:-1].split("|")])
    return table[0], {row[0]: row for row in table[2:]}


def cell(text: str, after: str, row: str, column: str) -> str:
    header, rows = markdown_rows(text, after)
    return rows[row][header.index(column)]


def fmt_p(p: float) -> str:
    """A p value as the reports write it."""
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def cpu_of(text: str) -> str:
    """The ``- cpu:`` line of a report's header: the machine that wrote it."""
    return re.search(r"^- cpu: (.*)$", text, re.M).group(1)


# ------------------------------------------------------------------------------ examples in the modules
@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> dict:
    """``{doctest id: "PASSED" | "FAILED" | ...}`` of the benchmark modules' docstring examples."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "--doctest-modules",
                           *(f"benchmarks/{name}" for name in EXAMPLES)], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    outcomes = dict((m.group(2), m.group(1)) for m in re.finditer(r"^(PASSED|FAILED|ERROR) (\S+)", done.stdout, re.M))
    assert outcomes, done.stdout[-3000:] + done.stderr[-3000:]
    return {"outcomes": outcomes, "output": done.stdout}


def passed(examples: dict, *functions: str) -> None:
    """The examples of each ``module.function`` (``stats.paired_test``) ran and passed."""
    for function in functions:
        module = function.split(".")[0]
        node = f"benchmarks/{module}.py::benchmarks.{function}"
        assert examples["outcomes"].get(node) == "PASSED", f"{node}: {examples['outcomes'].get(node)}\n" + \
            examples["output"][-4000:]


def test_examples_in_the_benchmark_modules_pass(examples):
    documented = ["stats.paired_test", "stats.holm", "stats.fmt_mean_sd", "stats.median_rows", "reproduce_plan.row_key",
                  "reproduce_plan.plan", "reproduce_runs.best_epoch", "reproduce_report.machines_sentence",
                  "reproduce_report.delta_markdown", "performance_measure.with_setting",
                  "performance_measure.split_model_spec", "performance_report.ratio_rows",
                  "performance_report.loader_rows", "performance_report.memory_rows"]
    passed(examples, *documented)
    assert len(examples["outcomes"]) == len(documented), examples["output"][-4000:]  # none failed or went unnoticed


# ------------------------------------------------------------------------------ reports from hand-made runs
def report_only(folder: Path, rows: list, *args) -> str:
    """``reproduce.py --report-only`` over ``rows`` (written as runs.csv): results.md. Every dataset named
    after ``--datasets`` (the last option) gets an empty raw file, all ``--report-only`` needs to find it."""
    out, data = folder / "out", folder / "data"
    for name in args[args.index("--datasets") + 1:]:
        (data / name).mkdir(parents=True, exist_ok=True)
        (data / name / f"{name}.inter").touch()
    out.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / "runs.csv", "w", encoding="utf-8", newline="") as f:
        f.write("# command: by hand\n")
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    written = (out / "runs.csv").read_bytes()
    bench("reproduce", "--report-only", "--device", "cpu", "--data_path", data, "--out", out, *args, cwd=folder)
    assert (out / "runs.csv").read_bytes() == written  # the rows' own header (command, commit) is kept
    return (out / "results.md").read_text(encoding="utf-8")


def run(table: str, dataset: str, host: str, variant: str, seed: int, auc, **extra) -> dict:
    return {"table": table, "dataset": dataset, "host": host, "variant": variant, "seed": seed, "max_len": "",
            "delta": "", "test_auc": auc, "error": "", "cpu": "Xeon", "device": "cpu", **extra}


MC_IACN = [0.80, 0.80, 0.80]
#: Table 1 by dataset, {host: {variant: test AUC by seed (a list: seeds 1, 2, ...)}}: each a case of the tests below.
TABLE1 = {
    # differences 0.02, 0.01, 0.03: mean 0.02, SD 0.01, t = 0.02 / (0.01 / sqrt 3) = 3.4641, df = 2,
    # two-sided p = 2 * (1 - F(t)), F(t) = 1/2 + t / (2 sqrt(t^2 + 2)) for df = 2 -> 0.07418
    "A": {"DIN": {"base": [0.70, 0.71, 0.72], "iacn": [0.72, 0.72, 0.75]}},
    "B": {"DIN": {"base": [0.70, 0.71, 0.72], "iacn": [0.72, 0.73, 0.75]}},
    "pairs": {"DIN": {"base": {1: 0.5, 2: 0.6, 9: 0.9}, "iacn": {1: 0.4, 2: 0.5}}},  # paired on seeds 1 and 2
    # one seed of DIN; DIEN's mean and SD round to 0.7860 ± 0.0013
    "one": {"DIN": {"base": [0.5], "iacn": [0.6]},
            "DIEN": {"base": [0.78601 - 0.00126 / math.sqrt(2), 0.78601 + 0.00126 / math.sqrt(2)]}},
    # three comparisons with a p value (below Bonferroni's 0.05 / 3, between it and 0.05, above 0.05), DIEN's without
    "mc": {"DIN": {"iacn": MC_IACN, "base": [a - d for a, d in zip(MC_IACN, [0.100, 0.101, 0.099])],
                   "wide": [a - d for a, d in zip(MC_IACN, [0.02, 0.015, 0.025])],
                   "lambda0": [a - d for a, d in zip(MC_IACN, [0.02, -0.01, 0.03])]},
           "DIEN": {"base": [0.70, 0.70, 0.70], "iacn": [0.71, 0.71, 0.71]}},
}
#: The δ sweep: δ = 0.1, 0.5 and 1 on seeds 2020-2022 in three datasets: as they are (complete), with δ = 0.2 on
#: one seed only (partial), and with a seed 2023 that only δ = 0.1 finished (extra).
DELTA_AUC = {0.1: [0.80, 0.82, 0.81], 0.5: [0.79, 0.80, 0.82], 1.0: [0.78, 0.79, 0.80]}


def hand_made_runs() -> list:
    rows = []
    for dataset, hosts in TABLE1.items():
        for host, variants in hosts.items():
            for variant, aucs in variants.items():
                by_seed = aucs if isinstance(aucs, dict) else {1 + i: a for i, a in enumerate(aucs)}
                rows += [run("1", dataset, host, variant, seed, auc, best_epoch=2, cpu_seconds_to_best=10.0)
                         for seed, auc in by_seed.items()]
    rows += [run("delta", ds, "DIEN", "iacn", 2020 + i, a, delta=d)
             for ds in ("complete", "partial", "extra") for d, values in DELTA_AUC.items() for i, a in enumerate(values)]
    rows += [run("delta", "partial", "DIEN", "iacn", 2020, 0.9, delta=0.2),
             run("delta", "extra", "DIEN", "iacn", 2023, 0.5, delta=0.1)]
    return rows


DATASETS = [*TABLE1, "complete", "partial", "extra"]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> str:
    """One ``--table all`` report (Table 1, Table 2 and the δ sweep at δ = 0.1, 0.2, 0.5, 1) over every
    hand-made case, with overrides on the command line."""
    return report_only(tmp_path_factory.mktemp("report"), hand_made_runs(), "--table", "all", "--models", "DIN",
                       "DIEN", "--seeds", "3", "--first-seed", "1", "--deltas", "0.1", "0.2", "0.5", "1.0",
                       "--config_dict", "epochs=2", "learning_rate=1e-4", "mlp_hidden_size=[8, 4]",
                       "--datasets", *DATASETS)


TABLE_1, DIFFERENCES = "## Table 1", "### X + IaCN − each control"


def test_paired_test_hand_checked(examples, report):
    passed(examples, "stats.paired_test")
    assert cell(report, DIFFERENCES, "DIN + IaCN − DIN", "A") == "+0.0200 ± 0.0100 (t=3.46, p=0.074, n=3)"
    assert cell(report, TABLE_1, "DIN", "A") == "0.7100 ± 0.0100"
    assert cell(report, TABLE_1, "DIN + IaCN", "A") == "0.7300 ± 0.0173"  # SD sqrt(0.0003)


def test_paired_test_pairs_by_seed_and_handles_degenerate_cases(examples, report):
    passed(examples, "stats.paired_test", "stats.fmt_mean_sd")
    # identical differences on the 2 seeds both sides have: no variance, no test
    assert cell(report, DIFFERENCES, "DIN + IaCN − DIN", "pairs") == "-0.1000 ± 0.0000 (t=n/a, p=n/a, n=2)"
    assert cell(report, DIFFERENCES, "DIN + IaCN − DIN", "one") == "+0.1000 ± n/a (t=n/a, p=n/a, n=1)"
    assert cell(report, TABLE_1, "DIN", "one") == "0.5000"  # one seed: no SD
    assert cell(report, TABLE_1, "DIEN", "A") == "n/a"  # no run
    assert cell(report, TABLE_1, "DIEN", "one") == "0.7860 ± 0.0013"


def test_table1_markdown_layout(report):
    header, rows = markdown_rows(report, TABLE_1)
    assert header[:3] == ["model", "A", "B"]
    assert rows["DIN"][1:3] == ["0.7100 ± 0.0100"] * 2
    assert rows["DIN + IaCN"][1:3] == ["0.7300 ± 0.0173", "0.7333 ± 0.0153"]
    assert list(rows)[:4] == ["DIN", "DIN, E_orig of d + d_aux", "DIN + IaCN, λ = 0", "DIN + IaCN"]
    assert "PAPER's Table 1 AUC on AMAZON data" in report and "0.7970 ± 0.0010" in report


def test_plan_counts_runs(examples, report, hosts_report):
    passed(examples, "reproduce_plan.plan")
    # per dataset and seed: Table 1, 2 hosts x 4 variants; Table 2, DIEN x 3 lengths x 2 variants; δ, 4 values
    planned = len(DATASETS) * 3 * (2 * 4 + 3 * 2 + 4)
    assert f"**Incomplete: {len(hand_made_runs())} of the {planned} planned runs have finished.**" in report
    # hosts: RecBole's class only where it exists (DIN, not DAIN), so its 4 runs are the whole plan
    assert "Incomplete" not in hosts_report[0]


def test_overrides_and_ratios(examples, report, tmp_path):
    passed(examples, "performance_report.ratio_rows", "performance_report.memory_rows",
           "performance_measure.split_model_spec")
    # --config_dict values are read as YAML
    assert "overrides {'epochs': 2, 'learning_rate': 0.0001, 'mlp_hidden_size': [8, 4]}." in report
    refused = bench("reproduce", "--report-only", "--out", tmp_path / "out", "--config_dict", "epochs", cwd=tmp_path,
                    expect=2)
    assert "error: --config_dict takes key=value pairs (learning_rate=0.0001), got 'epochs'." in refused.stderr
    assert "Traceback" not in refused.stderr


def test_loader_ratios(examples):
    passed(examples, "performance_report.loader_rows", "performance_measure.with_setting")


@pytest.fixture(scope="module")
def hosts_report(tmp_path_factory) -> tuple[str, Path]:
    """(results.md, runs.csv as rewritten) of ``--table hosts`` over hand-made runs from several machines."""
    machines = [("Xeon", "cpu"), ("Xeon", "cpu"), ("EPYC", "cuda:0 NVIDIA H200"), ("", "")]
    rows = [run("hosts", "d", "DIN", variant, seed, 0.8, cpu_seconds_to_best=10.0, best_epoch=2, learning_rate=lr,
                cpu=cpu, device=device)
            for (variant, seed, lr), (cpu, device) in zip(
                [("base", 1, 0.003), ("base", 2, 0.003), ("recbole", 1, 0.001), ("recbole", 2, 0.003)], machines)]
    rows.append(run("hosts", "d", "DIN", "recbole", 3, "", cpu="EPYC", device="cpu", error="RuntimeError: x"))
    folder = tmp_path_factory.mktemp("hosts")
    text = report_only(folder, rows, "--table", "hosts", "--models", "DIN", "DAIN", "--seeds", "2", "--first-seed", "1",
                       "--datasets", "d")
    return text, folder / "out" / "runs.csv"


def test_reproduce_rereads_its_own_rows(examples):
    passed(examples, "reproduce_plan.row_key", "reproduce_runs.best_epoch")


def test_report_names_the_machine_of_every_run(examples, hosts_report, report):
    passed(examples, "reproduce_report.machines_sentence")
    text, runs = hosts_report
    # a failed run trained nothing; a row written before the column existed is not recorded
    assert "EPYC with cuda:0 NVIDIA H200 (1 run); Xeon (2 runs); not recorded (1 run)" in text
    assert "comparable only between runs on the same machine" in text
    assert f"Runs were trained on: Xeon ({len(hand_made_runs())} runs)" in report
    assert "more than one machine" not in report
    # the column survives a round trip through runs.csv
    assert list(pd.read_csv(runs, comment="#")["cpu"].fillna(""))[:4] == ["Xeon", "Xeon", "EPYC", ""]


def test_hosts_report_shows_each_sides_learning_rates(hosts_report):
    assert hosts_report[0].rstrip().endswith("| 0.003 | 0.001, 0.003 |")  # a side whose runs mixed settings says so


def test_table1_report_counts_its_comparisons(report):
    from scipy import stats

    mc = TABLE1["mc"]["DIN"]
    p = {v: stats.ttest_rel(mc["iacn"], mc[v]).pvalue for v in ("base", "wide", "lambda0")}
    assert p["base"] < 0.05 / 3 <= p["wide"] < 0.05 < p["lambda0"]
    line = next(line for line in report.splitlines() if line.startswith("- mc: ") and "Bonferroni" in line)
    assert line.startswith("- mc: 3 comparisons tested") and "p < 0.0167" in line  # DIEN's n/a ones are not counted
    assert f"Below it: DIN + IaCN − DIN ({fmt_p(p['base'])})." in line
    assert f"Below 0.05 only: DIN + IaCN − DIN, E_orig of d + d_aux ({fmt_p(p['wide'])})." in line
    assert "- one: no comparison has a p value yet." in report


def test_delta_report_tests_every_pair_and_the_sweep_as_a_whole(examples, report):
    from scipy import stats

    passed(examples, "reproduce_report.delta_markdown")  # two δ values, no δ = 1: no control column, no test
    friedman = stats.friedmanchisquare(*DELTA_AUC.values())
    complete = report[report.index("### complete: does δ matter?"):]
    assert f"blocks = seeds [2020, 2021, 2022]: χ² = {friedman.statistic:.2f}, p = {fmt_p(friedman.pvalue)}.\n" in complete
    # a δ run on fewer seeds than the others is left out of the Friedman test, and named
    partial = report[report.index("### partial: does δ matter?"):]
    assert f"p = {fmt_p(friedman.pvalue)}. Left out, not run on every seed: δ = 0.2." in partial
    # a seed only δ = 0.1 finished: no δ set is complete
    extra = report[report.index("### extra: does δ matter?"):]
    assert "Friedman test: n/a" in extra and "Left out, not run on every seed: δ = 0.5, 1." in extra

    def paired(a, b):  # row − column, as the report writes it
        return f"{statistics.fmean(DELTA_AUC[a]) - statistics.fmean(DELTA_AUC[b]):+.4f} " \
               f"(p {fmt_p(stats.ttest_rel(DELTA_AUC[a], DELTA_AUC[b]).pvalue)})"

    sweep = "## δ sweep"
    assert cell(report, sweep, "0.1", "extra") == "0.7325 ± 0.1552"  # the mean has seed 2023; the pair does not
    assert cell(report, sweep, "0.1", "extra: − δ = 1") == paired(0.1, 1.0)
    assert cell(report, sweep, "0.5", "extra") == "0.8033 ± 0.0153"
    assert cell(report, sweep, "0.5", "extra: − δ = 1") == paired(0.5, 1.0)
    pairs = "Every pair, row − column"
    assert markdown_rows(extra, pairs)[1]["0.1"] == ["0.1", "n/a", paired(0.1, 0.5), paired(0.1, 1.0)]
    assert markdown_rows(extra, pairs)[1]["0.5"] == ["0.5", "", "", paired(0.5, 1.0)]
    assert "6 comparisons: Bonferroni needs p < 0.0083" in extra  # 4 δ values: 6 pairs


def test_reproduce_refuses_a_second_run_into_the_same_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "w", encoding="utf-8") as lock:  # a first run holds the folder
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = bench("reproduce", "--report-only", "--datasets", "ml-100k", "--device", "cpu", "--out", out,
                        cwd=tmp_path, expect=1)
    assert f"Another benchmark is writing to {out}" in refused.stderr and not (out / "results.md").exists()


# ------------------------------------------------------------------------------ smoke runs
@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """A data_path holding a tiny SYNTHETIC dataset ('tiny': 1,200 users, DIEN protocol)."""
    from recbole_iacn.data import build_synthetic

    root = tmp_path_factory.mktemp("bench-data")
    build_synthetic(root / "tiny", "tiny", scale=0.002)
    return root


TRAINED = re.compile(r"^\[\d+/\d+\] ", re.M)  # the line reproduce.py prints after each run it trains


def test_reproduce_smoke_trains_to_convergence_and_resumes(tiny_root, tmp_path):
    out = tmp_path / "out"
    args = ["--models", "DIN", "--datasets", "tiny", "--seeds", "2", "--epochs", "3", "--stopping-step", "1",
            "--data_path", tiny_root, "--out", out, "--device", "cpu",
            "--config_dict", *[f"{k}={v}" for k, v in TINY.items()]]
    bench("reproduce", *args, cwd=tmp_path)
    runs = pd.read_csv(out / "runs.csv", comment="#")
    assert len(runs) == 8 and set(runs["variant"]) == {"base", "wide", "lambda0", "iacn"}
    assert list(runs["seed"]) == [2020] * 4 + [2021] * 4  # seed by seed
    assert runs["error"].isna().all() and runs["test_auc"].between(0, 1).all()
    assert (runs["best_epoch"] < runs["epochs_run"]).all() and (runs["epochs_run"] <= 3).all()
    assert (runs["seconds_to_best"] <= runs["train_seconds"]).all()
    assert (runs["cpu_seconds_to_best"] <= runs["cpu_train_seconds"]).all()
    width = TINY["embedding_size"] + TINY["iacn_embedding_size"]
    assert set(runs.loc[runs["variant"] == "wide", "item_embedding_size"]) == {width}
    assert set(runs.loc[runs["variant"] == "lambda0", "lambda_used"]) == {0.0}
    text = (out / "results.md").read_text(encoding="utf-8")
    assert text.splitlines()[2].startswith("- command: ") and "- device: cpu" in text
    assert "| DIN + IaCN − DIN, E_orig of d + d_aux |" in text and "n=2" in text
    # every row names the machine that trained it, not only the header of the last report
    cpu = cpu_of(text)
    assert set(runs["cpu"]) == {cpu} and set(runs["device"]) == {"cpu"}
    assert f"Runs were trained on: {cpu} (8 runs)" in text and "more than one machine" not in text
    assert open(out / "runs.csv", encoding="utf-8").readline().startswith("# command: ")

    # the same command again runs nothing; a run lost from the file (a stop) is the only one redone
    again = bench("reproduce", *args, cwd=tmp_path)
    assert "8 of 8 runs already finished (kept); 0 to run" in again.stdout and not TRAINED.search(again.stdout)
    assert len(pd.read_csv(out / "runs.csv", comment="#")) == 8
    lines = open(out / "runs.csv", encoding="utf-8").read().splitlines(keepends=True)
    (out / "runs.csv").write_text("".join(lines[:-1]), encoding="utf-8")  # the last run is missing
    resumed = bench("reproduce", *args, cwd=tmp_path)
    assert "7 of 8 runs already finished (kept); 1 to run" in resumed.stdout
    assert TRAINED.findall(resumed.stdout) == ["[1/1] "]
    assert "[1/1] table 1 tiny DIN_IaCN (iacn) seed=2021: test AUC " in resumed.stdout
    again = pd.read_csv(out / "runs.csv", comment="#")
    assert len(again) == 8 and not list(out.glob(".*partial"))


PERF_TINY = ["--dataset", "tiny", "--warmup", "1", "--batches", "2", "--eval-batches", "1", "--batch-size", "256",
             "--embedding-size", "8", "--threads", "1", "--device", "cpu"]


def target_ratios(text: str) -> dict:
    """performance.md's target ratios: ``{ratio: row}``, each row ``[ratio, value, in CPU time, target, met, AUC]``."""
    return markdown_rows(text, "## Target ratios")[1]


def test_performance_smoke(tiny_root, tmp_path):
    scratch = tmp_path / "scratch"  # the parent and its workers make their temporary folders here
    scratch.mkdir()
    out = tmp_path / "perf"
    models = ["DIN", "DIN_IaCN:iacn_lambda=0", "DIN_IaCN", "recbole.DIN@ctr", "recbole.DIEN@ctr"]
    bench("performance", "--models", *models, "--data_path", tiny_root, "--out", out, "--auc-epochs", "0",
          "--profile-batches", "1", *PERF_TINY, cwd=tmp_path, env={**os.environ, "TMPDIR": str(scratch)})
    table = pd.read_csv(out / "performance.csv", comment="#")
    assert list(table["model"]) == models
    assert table["error"].isna().all()
    assert (table["train_samples_per_s"] > 0).all() and (table["peak_rss_mb"] > 0).all()
    text = (out / "performance.md").read_text(encoding="utf-8")
    assert "| DIN_IaCN epoch time / DIN epoch time |" in text and "of which the capsule network" in text
    assert "- cpu: " in text and "- device: cpu" in text
    assert "## Profiles" in text and "| DIN_IaCN |" in text and "aten::" in text
    assert not list(scratch.glob("iacn-perf-*")), "performance.py left temporary folders behind"
    # the ratios are those of the measured figures, and each target is judged by its rule
    sps = dict(zip(table["model"], table["train_samples_per_s"]))
    cpu_sps = dict(zip(table["model"], table["train_samples_per_cpu_s"]))
    ratios = target_ratios(text)
    iacn = sps["DIN"] / sps["DIN_IaCN"]
    row = ratios["DIN_IaCN epoch time / DIN epoch time"]
    in_cpu = cpu_sps["DIN"] / cpu_sps["DIN_IaCN"]
    assert row[1:5] == [f"{iacn:,.2f}", f"{in_cpu:,.2f}", "<= 1.3", "yes" if iacn <= 1.3 else "NO"]
    widening = ratios["... of which the wider item embedding (DIN_IaCN:iacn_lambda=0 / DIN)"]
    capsules = ratios["... of which the capsule network's loss (DIN_IaCN / DIN_IaCN:iacn_lambda=0)"]
    assert widening[1] == f"{sps['DIN'] / sps['DIN_IaCN:iacn_lambda=0']:,.2f}" and widening[3:5] == ["(breakdown)", ""]
    assert capsules[1] == f"{sps['DIN_IaCN:iacn_lambda=0'] / sps['DIN_IaCN']:,.2f}"
    same = ratios["DIN training samples/s, ours / RecBole's on the same CTR data, at equal or better test AUC"]
    speed = sps["DIN"] / sps["recbole.DIN@ctr"]
    assert same[1] == f"{speed:,.2f}" and same[4] == f"speed {'yes' if speed >= 2 else 'NO'}, AUC not measured"
    assert not any(r.startswith("DIEN") for r in ratios)  # no DIEN row of ours to compare RecBole's with


def test_performance_medians_over_rounds(examples):
    passed(examples, "stats.median_rows")


@pytest.fixture(scope="module")
def rounds(tiny_root, tmp_path_factory) -> Path:
    """The output folder of one performance.py run that measures DIN in 2 rounds (--repeats 2) and trains our DIN
    and RecBole's on the same rows to convergence (--convergence-seeds 1)."""
    folder = tmp_path_factory.mktemp("rounds")
    bench("performance", "--models", "DIN", "--repeats", "2", "--data_path", tiny_root, "--out", folder / "perf",
          "--auc-epochs", "0", *PERF_TINY, "--convergence-seeds", "1", "--convergence-models", "DIN",
          "--convergence-stopping-step", "1", "--config_dict", "epochs=2", cwd=folder)
    return folder / "perf"


def test_performance_repeats_report_the_median(rounds, tmp_path):
    table = pd.read_csv(rounds / "performance.csv", comment="#", dtype={"round": str})
    assert list(table["round"]) == ["1", "2", "median"] and table["error"].isna().all()
    measured, median = table[table["round"] != "median"], table[table["round"] == "median"].iloc[0]
    assert median["train_samples_per_s"] == pytest.approx(statistics.median(measured["train_samples_per_s"]))
    text = (rounds / "performance.md").read_text("utf-8")
    assert f"| {float(median['train_samples_per_s']):,.1f} |" in text
    assert "median of 2 rounds" in text
    refused = bench("performance", "--models", "DIN", "--repeats", "0", cwd=tmp_path, expect=2)
    assert "--repeats must be at least 1." in refused.stderr


def test_performance_interleaves_the_data_loaders(tiny_root, tmp_path):
    out = tmp_path / "perf"
    bench("performance", "--models", "DIN", "--interleave-loaders", "--block", "1", "--data_path", tiny_root,
          "--out", out, "--auc-epochs", "1", *PERF_TINY, cwd=tmp_path)
    table = pd.read_csv(out / "performance.csv", comment="#")
    assert list(table["model"]) == ["DIN:data_loader=recbole", "DIN:data_loader=tensor"]
    assert table["error"].isna().all() and (table["train_samples_per_s"] > 0).all()
    assert table["test_auc"].between(0, 1).all()
    row = target_ratios((out / "performance.md").read_text("utf-8"))[
        "DIN training samples/s, tensor loader / RecBole's loader"]
    sps = dict(zip(table["model"], table["train_samples_per_s"]))
    speedup = sps["DIN:data_loader=tensor"] / sps["DIN:data_loader=recbole"]
    assert row[1] == f"{speedup:,.2f}" and row[3:5] == [">= 1.2", "yes" if speedup >= 1.2 else "NO"]


def test_kernels_smoke(tmp_path):
    bench("kernels", "--repeats", "1", "--calls", "2", "--threads", "1", "--out", tmp_path, cwd=tmp_path)
    rows = pd.read_csv(tmp_path / "kernels.csv", comment="#")
    assert len(rows) == 6 and ((rows["plain_us"] > 0) & (rows["ours_us"] > 0) & (rows["ratio"] > 0)).all()
    text = (tmp_path / "kernels.md").read_text(encoding="utf-8")
    assert "- command: " in text and "| embedding fwd+bwd, capsule lookup |" in text


def test_iacn_loss_smoke(data_root, tmp_path):
    """Both ways of the IaCN loss timed on ml-100k, checked equal (float64), the host beside the step."""
    bench("iacn_loss", "--data_path", data_root, "--variants", "default", "in_batch", "--batches", "1",
          "--repeats", "2", "--calls", "1", "--out", tmp_path, cwd=tmp_path)
    rows = pd.read_csv(tmp_path / "results.csv", comment="#")
    assert list(rows["variant"]) == ["default", "in_batch", "default"]
    assert ((rows["today_ms"] > 0) & (rows["fused_ms"] > 0) & (rows["rounds"] == 2)).all()
    assert ((rows["grad_rel_diff"] < 1e-9) & (rows["loss_diff"] < 1e-12) & (rows["parameters"] >= 8)).all()
    assert rows["case"].iloc[-1] == "step (WideDeep_IaCN)" and rows["host_ms"].iloc[-1] > 0
    text = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "- command: " in text and "| loss | in_batch |" in text


@pytest.mark.skipif(not (ML1M_SAMPLE / "ratings.dat").is_file(), reason="../shared/data/ml-1m-sample is not beside the checkout")
def test_dain_ranking_smoke(tmp_path):
    """BPR and DAIN on one leave-one-out split: same test item for every user, metrics in range."""
    out = tmp_path / "out"
    argv = ["--baselines", "BPR", "--dain-models", "DAIN", "--seeds", "1", "--epochs", "2", "--stopping-step", "1",
            "--threads", "1", "--device", "cpu", "--data_path", tmp_path / "data",
            "--out", out, "--config_dict", "embedding_size=8", "mlp_hidden_size=[8]"]  # DAIN scores every item
    bench("dain_ranking", *argv, cwd=tmp_path)
    table = pd.read_csv(out / "dain_ranking.csv", comment="#")
    text = (out / "dain_ranking.md").read_text(encoding="utf-8")
    cpu = cpu_of(text)
    assert list(table["model"]) == ["BPR", "DAIN"] and table["error"].isna().all()
    assert set(table["cpu"]) == {cpu} and set(table["device"]) == {"cpu"}
    assert (table["best_epoch"] < table["epochs_run"]).all() and (table["epochs_run"] <= 2).all()
    for key in ("ndcg@10", "hit@10", "map@10"):
        assert table[key].between(0, 1).all()
    assert "users whose DAIN test item differs from RecBole's: 0;" in text
    assert f"Runs were trained on: {cpu} (2 runs) (column `cpu` of dain_ranking.csv" in text
    bench("dain_ranking", *argv, cwd=tmp_path)  # finished runs are kept, not redone
    again = pd.read_csv(out / "dain_ranking.csv", comment="#")
    assert again["seconds"].tolist() == table["seconds"].tolist()
    assert "users whose DAIN test item differs from RecBole's: 0;" in (out / "dain_ranking.md").read_text("utf-8")


def test_performance_reports_convergence_beside_throughput(rounds):
    """--convergence-seeds: our DIN and RecBole's on the same rows, early-stopped, in the same report."""
    runs = pd.read_csv(rounds / "convergence.csv", comment="#")
    assert list(runs["model"]) == ["DIN", "recbole.DIN@ctr"] and runs["error"].isna().all()
    assert (runs["cpu_seconds_to_best"] > 0).all() and (runs["epochs_run"] <= 2).all()
    text = (rounds / "performance.md").read_text(encoding="utf-8")
    assert "## Our hosts against RecBole's on the same CTR rows" in text and "| tiny | DIN |" in text
