"""Smoke tests of the benchmark scripts (each a few seconds on 2 CPU cores) and hand-checked
statistics/formatting."""

from __future__ import annotations

import math
import statistics
import tempfile
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # benchmarks/ is a top-level folder of the checkout, not installed
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import common, dain_ranking, iacn_loss, kernels, performance, reproduce  # noqa: E402
from tests.conftest import ML1M_SAMPLE  # noqa: E402

TINY = {"embedding_size": 8, "iacn_embedding_size": 8, "train_batch_size": 512}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """A data_path holding a tiny SYNTHETIC dataset ('tiny': 1,200 users, DIEN protocol)."""
    from recbole_iacn.data import build_synthetic

    root = tmp_path_factory.mktemp("bench-data")
    build_synthetic(root / "tiny", "tiny", scale=0.002)
    return root


# ------------------------------------------------------------------------------ statistics
def test_paired_test_hand_checked():
    # differences 0.02, 0.01, 0.03: mean 0.02, SD 0.01, t = 0.02 / (0.01 / sqrt 3) = 3.4641, df = 2,
    # two-sided p = 2 * (1 - F(t)), F(t) = 1/2 + t / (2 sqrt(t^2 + 2)) for df = 2 -> 0.07418
    c = reproduce.paired_test({1: 0.70, 2: 0.71, 3: 0.72}, {1: 0.72, 2: 0.72, 3: 0.75})
    assert c.n == 3
    assert c.base_mean == pytest.approx(0.71) and c.base_sd == pytest.approx(0.01)
    assert c.iacn_mean == pytest.approx(0.73) and c.iacn_sd == pytest.approx(math.sqrt(0.0003))
    assert c.diff_mean == pytest.approx(0.02) and c.diff_sd == pytest.approx(0.01)
    assert c.t == pytest.approx(3.4641, abs=1e-4)
    assert c.p == pytest.approx(0.07418, abs=1e-4)
    assert reproduce.fmt_comparison(c) == "+0.0200 ± 0.0100 (t=3.46, p=0.074, n=3)"


def test_paired_test_pairs_by_seed_and_handles_degenerate_cases():
    c = reproduce.paired_test({1: 0.5, 2: 0.6, 9: 0.9}, {1: 0.4, 2: 0.5})
    assert c.n == 2 and c.diff_mean == pytest.approx(-0.1)
    assert math.isnan(c.t)  # identical differences: no variance, no test
    one = reproduce.paired_test({1: 0.5}, {1: 0.6})
    assert one.n == 1 and math.isnan(one.p) and math.isnan(one.base_sd)
    assert reproduce.fmt_mean_sd(one.base_mean, one.base_sd) == "0.5000"
    assert reproduce.fmt_mean_sd(math.nan, math.nan) == "n/a"
    assert reproduce.fmt_mean_sd(0.78601, 0.00126) == "0.7860 ± 0.0013"


def test_table1_markdown_layout():
    rows = [{"table": "1", "dataset": d, "host": "DIN", "variant": v, "seed": s, "test_auc": a, "error": ""}
            for d in ("A", "B") for v, base in (("base", 0.70), ("iacn", 0.72)) for s, a in
            ((1, base), (2, base + 0.01), (3, base + 0.02 + (0.01 if v == "iacn" else 0)))]
    text = reproduce.table1_markdown(rows, ["DIN"], ["A", "B"])
    assert "| model | A | B |" in text
    assert "| DIN | 0.7100 ± 0.0100 | 0.7100 ± 0.0100 |" in text
    assert "| DIN + IaCN | 0.7333 ± 0.0153 | 0.7333 ± 0.0153 |" in text
    assert "PAPER's Table 1 AUC on AMAZON data" in text and "0.7970 ± 0.0010" in text


def test_plan_counts_runs():
    runs = reproduce.plan(("1", "2", "delta"), ["DIN", "DIEN"], ["d"], [1, 2], lengths=[10, 20],
                          length_hosts=["DIEN"], deltas=[0.1, 0.5], delta_host="DIEN")
    assert sum(r.table == "1" for r in runs) == 2 * 4 * 2  # hosts x variants x seeds
    assert [r.seed for r in runs][:8] == [1] * 8  # seed by seed: a cut-short table holds complete pairs
    assert {r.model for r in runs if r.table == "1" and r.host == "DIN"} == {"DIN", "DIN_IaCN"}
    assert [r for r in runs if r.variant == "lambda0"][0].overrides()["iacn_lambda"] == 0.0
    assert sum(r.table == "2" for r in runs) == 2 * 2 * 2
    assert sum(r.table == "delta" for r in runs) == 2 * 2
    assert {r.model for r in runs if r.table == "delta"} == {"DIEN_IaCN"}
    assert runs[-1].overrides() == {"seed": 2, "iacn_delta": 0.5}
    hosts = reproduce.plan(("hosts",), ["DIN", "DAIN"], ["d"], [1])
    assert [r.model for r in hosts] == ["DIN", "recbole.DIN@ctr"]  # RecBole's class only where it exists


def test_overrides_and_ratios():
    assert common.parse_overrides(["epochs=2", "learning_rate=1e-4", "mlp_hidden_size=[8, 4]"]) == {
        "epochs": 2, "learning_rate": 1e-4, "mlp_hidden_size": [8, 4]}
    with pytest.raises(ValueError):
        common.parse_overrides(["epochs"])
    results = {"DIN": {"train_samples_per_s": 1000.0}, "DIN_IaCN": {"train_samples_per_s": 800.0},
               "recbole.DIN": {"train_samples_per_s": 400.0}}
    rows = {r["ratio"]: r for r in performance.ratio_rows(results)}
    assert rows["DIN_IaCN epoch time / DIN epoch time"]["value"] == pytest.approx(1.25)
    assert rows["DIN_IaCN epoch time / DIN epoch time"]["met"] == "yes"
    assert rows["DIN training samples/s, ours / RecBole's (RecBole's own data pipeline)"]["value"] == pytest.approx(2.5)
    same = "DIN training samples/s, ours / RecBole's on the same CTR data, at equal or better test AUC"
    for ours_auc, their_auc, theirs_sps, met in [(0.80, 0.79, 400.0, "yes"), (0.78, 0.79, 400.0, "NO (AUC)"),
                                                   (0.80, 0.79, 600.0, "NO (speed)"),
                                                   (math.nan, math.nan, 400.0, "speed yes, AUC not measured")]:
        results.update({"recbole.DIN@ctr": {"train_samples_per_s": theirs_sps, "test_auc": their_auc}})
        results["DIN"]["test_auc"] = ours_auc
        assert {r["ratio"]: r for r in performance.ratio_rows(results)}[same]["met"] == met
    del results["recbole.DIN@ctr"]
    assert performance.same_data_host("recbole.DIEN@ctr") == "DIEN" and performance.same_data_host("recbole.DIN") is None
    results["DIN_IaCN:iacn_lambda=0"] = {"train_samples_per_s": 900.0}
    rows = {r["ratio"]: r for r in performance.ratio_rows(results)}
    widening, capsules = [r for r in rows.values() if r["target"] == "(breakdown)"]
    assert widening["value"] == pytest.approx(1000 / 900) and capsules["value"] == pytest.approx(900 / 800)
    assert widening["value"] * capsules["value"] == pytest.approx(rows["DIN_IaCN epoch time / DIN epoch time"]["value"])
    assert performance.split_model_spec("DIN_IaCN:iacn_lambda=0,iacn_delta=1") == (
        "DIN_IaCN", {"iacn_lambda": 0, "iacn_delta": 1})
    assert performance.split_model_spec("recbole.DIN") == ("recbole.DIN", {})
    mem = performance.memory_rows({"A": {"peak_rss_mb": 9 * 1024.0}, "B": {"peak_rss_mb": 512.0}})
    assert [m["met"] for m in mem] == ["NO", "yes"]


def test_loader_ratios():
    assert performance.with_setting("DIN", "data_loader", "tensor") == "DIN:data_loader=tensor"
    assert performance.with_setting("DIN_IaCN:iacn_lambda=0", "data_loader", "tensor") == (
        "DIN_IaCN:iacn_lambda=0,data_loader=tensor")
    results = {f"{m}:data_loader={loader}": {"train_samples_per_s": sps}
               for m, loader, sps in [("DAIN", "recbole", 100.0), ("DAIN", "tensor", 160.0), ("DAIN_IaCN", "recbole", 50.0),
                                      ("DAIN_IaCN", "tensor", 140.0), ("DIN", "recbole", 100.0), ("DIN", "tensor", 110.0)]}
    rows = {r["ratio"]: r for r in performance.ratio_rows(results)}
    assert rows["DAIN training samples/s, tensor loader / RecBole's loader"]["value"] == pytest.approx(1.6)
    assert rows["DAIN training samples/s, tensor loader / RecBole's loader"]["met"] == "yes"
    assert rows["DIN training samples/s, tensor loader / RecBole's loader"]["met"] == "NO"  # 1.1 < 1.2
    assert rows["DAIN_IaCN training samples/s, tensor loader / RecBole's loader"]["target"] == "(none)"
    tensor_ratio = rows["DAIN_IaCN:data_loader=tensor epoch time / DAIN:data_loader=tensor epoch time"]
    assert tensor_ratio["value"] == pytest.approx(160 / 140) and tensor_ratio["met"] == "yes"
    assert rows["DAIN_IaCN:data_loader=recbole epoch time / DAIN:data_loader=recbole epoch time"]["met"] == "NO"


# ------------------------------------------------------------------------------ smoke runs
def test_reproduce_smoke_trains_to_convergence_and_resumes(tiny_root, tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = ["--models", "DIN", "--datasets", "tiny", "--seeds", "2", "--epochs", "3", "--stopping-step", "1",
            "--data_path", str(tiny_root), "--out", str(out), "--device", "cpu",
            "--config_dict", *[f"{k}={v}" for k, v in TINY.items()]]
    paths = reproduce.main(args)
    runs = pd.read_csv(paths["csv"], comment="#")
    assert len(runs) == 8 and set(runs["variant"]) == {"base", "wide", "lambda0", "iacn"}
    assert runs["error"].isna().all() and runs["test_auc"].between(0, 1).all()
    assert (runs["best_epoch"] < runs["epochs_run"]).all() and (runs["epochs_run"] <= 3).all()
    assert (runs["seconds_to_best"] <= runs["train_seconds"]).all()
    assert (runs["cpu_seconds_to_best"] <= runs["cpu_train_seconds"]).all()
    width = TINY["embedding_size"] + TINY["iacn_embedding_size"]
    assert set(runs.loc[runs["variant"] == "wide", "item_embedding_size"]) == {width}
    assert set(runs.loc[runs["variant"] == "lambda0", "lambda_used"]) == {0.0}
    text = paths["markdown"].read_text(encoding="utf-8")
    assert text.splitlines()[2].startswith("- command: ") and "- device: cpu" in text
    assert "| DIN + IaCN − DIN, E_orig of d + d_aux |" in text and "n=2" in text
    # every row names the machine that trained it, not only the header of the last report
    assert set(runs["cpu"]) == {common.cpu_model()} and set(runs["device"]) == {"cpu"}
    assert f"Runs were trained on: {common.cpu_model()} (8 runs)" in text and "more than one machine" not in text
    assert open(paths["csv"], encoding="utf-8").readline().startswith("# command: ")

    # the same command again runs nothing; a run lost from the file (a stop) is the only one redone
    calls = []
    real = reproduce.train_once
    monkeypatch.setattr(reproduce, "train_once", lambda spec, *a: calls.append(spec) or real(spec, *a))
    reproduce.main(args)
    assert calls == [] and len(pd.read_csv(paths["csv"], comment="#")) == 8
    lines = open(paths["csv"], encoding="utf-8").read().splitlines(keepends=True)
    (out / "runs.csv").write_text("".join(lines[:-1]), encoding="utf-8")  # the last run is missing
    report = reproduce.main([*args, "--report-only"])  # trains nothing, says the table is incomplete
    assert calls == [] and "Incomplete: 7 of the 8 planned runs" in report["markdown"].read_text(encoding="utf-8")
    reproduce.main(args)
    assert len(calls) == 1 and (calls[0].seed, calls[0].variant) == (2021, "iacn")
    again = pd.read_csv(paths["csv"], comment="#")
    assert len(again) == 8 and not list(out.glob(".*partial"))


def test_reproduce_rereads_its_own_rows():
    rows = [{"table": "2", "dataset": "d", "host": "DIEN", "variant": "iacn", "seed": 2020, "max_len": 10,
             "delta": None, "test_auc": 0.8, "error": ""}]
    spec = reproduce.RunSpec("2", "d", "DIEN", "iacn", 2020, max_len=10)
    assert reproduce.row_key(rows[0]) == spec.key()
    assert reproduce.best_epoch([(0, 0.7, 1.0), (1, 0.8, 2.0), (2, 0.8, 3.0)]) == (1, 0.8, 2.0)


def test_report_names_the_machine_of_every_run():
    rows = [{"cpu": "Xeon", "device": "cpu", "error": ""}, {"cpu": "Xeon", "device": "cpu", "error": ""},
            {"cpu": "EPYC", "device": "cuda:0 NVIDIA H200", "error": ""},
            {"cpu": "EPYC", "device": "cpu", "error": "RuntimeError: x"},  # a failed run trained nothing
            {"error": ""}]  # a row written before the column existed
    text = reproduce.machines_sentence(rows)
    assert "EPYC with cuda:0 NVIDIA H200 (1 run); Xeon (2 runs); not recorded (1 run)" in text
    assert "comparable only between runs on the same machine" in text
    one = reproduce.machines_sentence(rows[:2])
    assert "Xeon (2 runs)" in one and "more than one machine" not in one
    assert reproduce.machines_sentence([]) == ""
    # the column survives a round trip through runs.csv
    with tempfile.TemporaryDirectory() as folder:
        path = reproduce.write_rows(Path(folder) / "runs.csv", rows[:3], ["command: x"])
        assert [r["cpu"] for r in reproduce.read_rows(path)] == ["Xeon", "Xeon", "EPYC"]


def test_hosts_report_shows_each_sides_learning_rates():
    rows = [{"table": "hosts", "dataset": "d", "host": "DIN", "variant": v, "seed": seed, "test_auc": 0.8,
             "cpu_seconds_to_best": 10.0, "best_epoch": 2, "learning_rate": lr, "error": ""}
            for v, seed, lr in [("base", 1, 0.003), ("base", 2, 0.003), ("recbole", 1, 0.001), ("recbole", 2, 0.003)]]
    text = reproduce.hosts_markdown(rows, ["DIN"], ["d"])
    assert text.rstrip().endswith("| 0.003 | 0.001, 0.003 |")  # a side whose runs mixed settings says so


def test_table1_report_counts_its_comparisons():
    def comparison(p):
        return reproduce.Comparison(0.8, 0.01, 0.81, 0.01, 0.01, 0.01, 2.0, p, 3)

    tested = [("a", comparison(0.001)), ("b", comparison(0.02)), ("c", comparison(0.5)), ("d", comparison(math.nan))]
    line = reproduce.multiple_comparisons("ml", tested)
    assert line.startswith("ml: 3 comparisons tested") and "p < 0.0167" in line  # the n/a one is not counted
    assert "Below it: a (0.001)." in line and "Below 0.05 only: b (0.020)." in line
    assert "no comparison has a p value" in reproduce.multiple_comparisons("ml", tested[3:])


def test_delta_report_tests_every_pair_and_the_sweep_as_a_whole():
    from scipy import stats

    auc = {0.1: [0.80, 0.82, 0.81], 0.5: [0.79, 0.80, 0.82], 1.0: [0.78, 0.79, 0.80]}
    rows = [{"table": "delta", "dataset": "d", "host": "DIEN", "variant": "iacn", "seed": 2020 + i, "delta": d,
             "test_auc": a, "error": ""} for d, values in auc.items() for i, a in enumerate(values)]
    text = reproduce.delta_markdown(rows, "DIEN", ["d"], [0.1, 0.5, 1.0])
    friedman = stats.friedmanchisquare(*auc.values())
    assert f"χ² = {friedman.statistic:.2f}, p = {reproduce.fmt_p(friedman.pvalue)}.\n" in text
    assert "blocks = seeds [2020, 2021, 2022]" in text
    # a δ run on fewer seeds than the others is left out of the Friedman test, and named
    rows.append({**rows[0], "delta": 0.2, "test_auc": 0.9})
    partial = reproduce.delta_markdown(rows, "DIEN", ["d"], [0.1, 0.2, 0.5, 1.0])
    assert f"p = {reproduce.fmt_p(friedman.pvalue)}. Left out, not run on every seed: δ = 0.2." in partial
    rows.append({**rows[0], "seed": 2023, "test_auc": 0.5})  # a seed only δ = 0.1 finished: no δ set is complete
    text = reproduce.delta_markdown(rows, "DIEN", ["d"], [0.1, 0.5, 1.0])
    assert "Friedman test: n/a" in text and "Left out, not run on every seed: δ = 0.5, 1." in text

    def cell(a, b):  # row − column, as the report writes it
        return f"{statistics.fmean(auc[a]) - statistics.fmean(auc[b]):+.4f} (p {reproduce.fmt_p(stats.ttest_rel(auc[a], auc[b]).pvalue)})"

    assert f"| 0.1 | 0.7325 ± 0.1552 | {cell(0.1, 1.0)} |" in text  # the mean has seed 2023; the pair does not
    assert f"| 0.5 | 0.8033 ± 0.0153 | {cell(0.5, 1.0)} |" in text
    assert f"| 0.1 | {cell(0.1, 0.5)} | {cell(0.1, 1.0)} |" in text and f"| 0.5 |  | {cell(0.5, 1.0)} |" in text
    assert "3 comparisons: Bonferroni needs p < 0.0167" in text
    two = reproduce.delta_markdown(rows[:6], "DIEN", ["d"], [0.1, 0.5])
    assert "Friedman test: n/a" in two and "− δ = 1" not in two


def test_performance_smoke(tiny_root, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"  # the parent and its workers make their temporary folders here
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "perf"
    args = ["--models", "DIN", "DIN_IaCN:iacn_lambda=0", "DIN_IaCN", "recbole.DIN@ctr", "recbole.DIEN@ctr", "--dataset", "tiny", "--data_path", str(tiny_root), "--out", str(out),
            "--warmup", "1", "--batches", "2", "--eval-batches", "1", "--auc-epochs", "0", "--batch-size", "256",
            "--embedding-size", "8", "--threads", "1", "--device", "cpu", "--profile-batches", "1"]
    paths = performance.main(args)
    table = pd.read_csv(paths["csv"], comment="#")
    assert list(table["model"]) == ["DIN", "DIN_IaCN:iacn_lambda=0", "DIN_IaCN", "recbole.DIN@ctr", "recbole.DIEN@ctr"]
    assert table["error"].isna().all()
    assert (table["train_samples_per_s"] > 0).all() and (table["peak_rss_mb"] > 0).all()
    text = paths["markdown"].read_text(encoding="utf-8")
    assert "| DIN_IaCN epoch time / DIN epoch time |" in text and "of which the capsule network" in text
    assert "- cpu: " in text and "- device: cpu" in text
    assert "## Profiles" in text and "| DIN_IaCN |" in text and "aten::" in text
    assert not list(scratch.glob("iacn-perf-*")), "performance.py left temporary folders behind"


def test_performance_medians_over_rounds():
    rounds = [{"A": {"model": "A", "train_samples_per_s": 10.0, "parameters": 5, "error": "", "flag": True},
               "B": {"model": "B", "train_samples_per_s": 4.0, "error": ""}},
              {"A": {"model": "A", "train_samples_per_s": 30.0, "parameters": 5, "error": "", "flag": False},
               "B": {"model": "B", "train_samples_per_s": math.nan, "error": "out of memory"}},
              {"A": {"model": "A", "train_samples_per_s": 11.0, "parameters": 5, "error": "", "flag": True}}]
    merged = performance.median_rows(rounds)
    assert list(merged) == ["A", "B"]
    assert merged["A"]["train_samples_per_s"] == 11.0 and merged["A"]["rounds"] == 3 and merged["A"]["flag"] is True
    assert merged["B"]["error"] == "out of memory"  # a failure in any round is reported, not hidden by a median


def test_performance_repeats_report_the_median(tiny_root, tmp_path):
    out = tmp_path / "perf"
    args = ["--models", "DIN", "--repeats", "2", "--dataset", "tiny", "--data_path", str(tiny_root), "--out", str(out),
            "--warmup", "1", "--batches", "2", "--eval-batches", "1", "--auc-epochs", "0", "--batch-size", "256",
            "--embedding-size", "8", "--threads", "1", "--device", "cpu"]
    paths = performance.main(args)
    table = pd.read_csv(paths["csv"], comment="#", dtype={"round": str})
    assert list(table["round"]) == ["1", "2", "median"] and table["error"].isna().all()
    rounds, median = table[table["round"] != "median"], table[table["round"] == "median"].iloc[0]
    assert median["train_samples_per_s"] == pytest.approx(statistics.median(rounds["train_samples_per_s"]))
    assert f"| {performance._f(float(median['train_samples_per_s']))} |" in paths["markdown"].read_text("utf-8")
    assert "median of 2 rounds" in paths["markdown"].read_text("utf-8")
    with pytest.raises(SystemExit):
        performance.main([*args, "--repeats", "0"])


def test_performance_interleaves_the_data_loaders(tiny_root, tmp_path):
    out = tmp_path / "perf"
    args = ["--models", "DIN", "--interleave-loaders", "--block", "1", "--dataset", "tiny", "--data_path", str(tiny_root),
            "--out", str(out), "--warmup", "1", "--batches", "2", "--eval-batches", "1", "--auc-epochs", "1",
            "--batch-size", "256", "--embedding-size", "8", "--threads", "1", "--device", "cpu"]
    table = pd.read_csv(performance.main(args)["csv"], comment="#")
    assert list(table["model"]) == ["DIN:data_loader=recbole", "DIN:data_loader=tensor"]
    assert table["error"].isna().all() and (table["train_samples_per_s"] > 0).all()
    assert table["test_auc"].between(0, 1).all()
    assert "| DIN training samples/s, tensor loader / RecBole's loader |" in (out / "performance.md").read_text("utf-8")


def test_kernels_smoke(tmp_path):
    paths = kernels.main(["--repeats", "1", "--calls", "2", "--threads", "1", "--out", str(tmp_path)])
    rows = paths["rows"]
    assert len(rows) == 6 and all(r["plain_us"] > 0 and r["ours_us"] > 0 and r["ratio"] > 0 for r in rows)
    text = paths["markdown"].read_text(encoding="utf-8")
    assert "- command: " in text and "| embedding fwd+bwd, capsule lookup |" in text


def test_iacn_loss_smoke(data_root, tmp_path):
    """Both ways of the IaCN loss timed on ml-100k, checked equal (float64), the host beside the step."""
    paths = iacn_loss.main(["--data_path", data_root, "--variants", "default", "in_batch", "--batches", "1",
                            "--repeats", "2", "--calls", "1", "--out", str(tmp_path)])
    rows = paths["rows"]
    assert [r["variant"] for r in rows] == ["default", "in_batch", "default"]
    assert all(r["today_ms"] > 0 and r["fused_ms"] > 0 and r["rounds"] == 2 for r in rows)
    assert all(r["grad_rel_diff"] < 1e-9 and r["loss_diff"] < 1e-12 and r["parameters"] >= 8 for r in rows)
    assert rows[-1]["case"] == "step (WideDeep_IaCN)" and rows[-1]["host_ms"] > 0
    text = paths["markdown"].read_text(encoding="utf-8")
    assert "- command: " in text and "| loss | in_batch |" in text and (tmp_path / "results.csv").is_file()


@pytest.mark.skipif(not (ML1M_SAMPLE / "ratings.dat").is_file(), reason="../shared/data/ml-1m-sample is not beside the checkout")
def test_dain_ranking_smoke(tmp_path):
    """BPR and DAIN on one leave-one-out split: same test item for every user, metrics in range."""
    argv = ["--baselines", "BPR", "--dain-models", "DAIN", "--seeds", "1", "--epochs", "2", "--stopping-step", "1",
            "--threads", "1", "--device", "cpu", "--data_path", str(tmp_path / "data"),
            "--out", str(tmp_path / "out"), "--config_dict", "embedding_size=8"]
    paths = dain_ranking.main(argv)
    table = pd.read_csv(paths["csv"], comment="#")
    assert list(table["model"]) == ["BPR", "DAIN"] and table["error"].isna().all()
    assert set(table["cpu"]) == {common.cpu_model()} and set(table["device"]) == {"cpu"}
    assert (table["best_epoch"] < table["epochs_run"]).all() and (table["epochs_run"] <= 2).all()
    again = pd.read_csv(dain_ranking.main(argv)["csv"], comment="#")  # finished runs are kept, not redone
    assert again["seconds"].tolist() == table["seconds"].tolist()
    assert "users whose DAIN test item differs from RecBole's: 0;" in paths["markdown"].read_text(encoding="utf-8")
    for key in dain_ranking.RESULT_KEYS:
        assert table[key].between(0, 1).all()
    text = paths["markdown"].read_text(encoding="utf-8")
    assert "users whose DAIN test item differs from RecBole's: 0;" in text
    assert f"Runs were trained on: {common.cpu_model()} (2 runs) (column `cpu` of dain_ranking.csv" in text


def test_reproduce_refuses_a_second_run_into_the_same_folder(tmp_path):
    with reproduce.exclusive(tmp_path):
        with pytest.raises(SystemExit, match="Another benchmark is writing"):
            with reproduce.exclusive(tmp_path):
                pass
    with reproduce.exclusive(tmp_path):  # released when the first run ends
        pass


def test_performance_reports_convergence_beside_throughput(tiny_root, tmp_path):
    """--convergence-seeds: our DIN and RecBole's on the same rows, early-stopped, in the same report."""
    out = tmp_path / "perf"
    paths = performance.main(["--models", "DIN", "--dataset", "tiny", "--data_path", str(tiny_root), "--out", str(out),
                              "--warmup", "1", "--batches", "2", "--eval-batches", "1", "--auc-epochs", "0",
                              "--batch-size", "256", "--embedding-size", "8", "--threads", "1", "--device", "cpu",
                              "--convergence-seeds", "1", "--convergence-models", "DIN",
                              "--convergence-stopping-step", "1", "--config_dict", "epochs=2"])
    runs = pd.read_csv(out / "convergence.csv", comment="#")
    assert list(runs["model"]) == ["DIN", "recbole.DIN@ctr"] and runs["error"].isna().all()
    assert (runs["cpu_seconds_to_best"] > 0).all() and (runs["epochs_run"] <= 2).all()
    text = paths["markdown"].read_text(encoding="utf-8")
    assert "## Our hosts against RecBole's on the same CTR rows" in text and "| tiny | DIN |" in text
