"""DAIN top-k ranking on the ML-1M sample, against RecBole's BPR (MF), NeuMF and DeepFM (the DAIN paper, arXiv 2409.02425).

Protocol (identical split for every model):

* Source: the RecBole atomic ML-1M sample written by ``python -m recbole_iacn.data movielens``
  (``dataset/ml-1m-sample/source/``: ``.inter`` with user, item, rating, timestamp; ``.item`` with
  the genre as ``cate_id``; ``.user`` with gender, age, occupation). Every rating counts as an
  interaction (no threshold), nothing is filtered.
* Split: RecBole's leave-one-out by time (on a copy of the ``.inter`` whose timestamps are replaced
  by their dense rank, because RecBole's float32 would round Unix times into false ties), ``eval_args = {split: {LS: valid_and_test}, order: TO,
  group_by: user, mode: full}``: per user (interactions stably sorted by timestamp) the last
  interaction is the test item, the second-last the validation item, the rest train.
* RecBole models (BPR, NeuMF, DeepFM) are trained and evaluated by RecBole's own pipeline on that
  split (full ranking over all items, the user's train + valid items excluded, best epoch by
  valid NDCG@10).
* DAIN is a pointwise CTR model of this package and reads CTRDataset files, so it trains on the
  package's ``dense`` CTR view of the *same source file* (per user: last interaction → test,
  second-last → valid, all earlier ones → train, each positive with one sampled negative, drawn
  like the baselines' (``--dain-negatives``, default ``uniform``, as RecBole's
  ``train_neg_sample_args``: a model trained on popularity-matched negatives cannot learn item
  popularity, which full ranking rewards); ties in time keep file order, exactly as RecBole's
  stable sort). That view is built in a scratch folder for the run. The first interaction of each
  user is only history there, never a training sample (DAIN does not read the history). Its best
  epoch is chosen by valid AUC. Then DAIN scores *all* items for every user of RecBole's test loader
  (ids mapped through the tokens), the user's train + valid items (RecBole's ``history_index``) are
  masked exactly as RecBole's full-sort evaluation does, and RecBole's own ``Collector`` and
  ``Evaluator`` compute NDCG@10, Hit@10 (= HR@10) and MAP@10. The script checks, user by user, that
  DAIN's test item is RecBole's test item and reports the count of mismatches.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from benchmarks.reproduce_report import machines_sentence  # noqa: E402
from benchmarks.reproduce_runs import best_epoch, read_rows, write_rows  # noqa: E402
from benchmarks.stats import fmt_mean_sd, mean_sd  # noqa: E402
from recbole_iacn.data.common import NEG_SAMPLINGS  # noqa: E402

DATASET = common.ML1M_NAME
BASELINES = ("BPR", "NeuMF", "DeepFM")
DAIN_MODELS = ("DAIN",)
TOPK = 10
METRICS = ("NDCG", "Hit", "MAP")
RESULT_KEYS = tuple(f"{m.lower()}@{TOPK}" for m in METRICS)
METRIC_LABELS = {"ndcg@10": "NDCG@10", "hit@10": "HR@10 (Hit)", "map@10": "MAP@10"}
DEFAULT_SEEDS = 3
DEFAULT_EPOCHS = 100  # the most; every model stops early on its validation metric
DEFAULT_STOPPING_STEP = 5
#: Users scored at once when DAIN ranks all items (rows = users × items).
SCORE_USERS_PER_BATCH = 64
#: Full-sort eval batch size of RecBole (rows = users × items per batch).
EVAL_BATCH_ROWS = 131072
#: The DAIN paper's ML-1M figures (arXiv 2409.02425), reference only: full ML-1M, protocol not stated.
PAPER = {"map@10": 0.096, "ndcg@10": 0.158, "hit@10": 0.318}
FLOAT32_EXACT_INTEGERS = 2 ** 24
LOO_EVAL_ARGS = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}


# ------------------------------------------------------------------------------ configuration
def recbole_source_root(data_path: Path, scratch: Path) -> Path:
    """A RecBole ``data_path`` whose ``ml-1m-sample/`` holds the atomic source files (copied from
    ``<data_path>/ml-1m-sample/source``, which RecBole cannot address directly)."""
    source = Path(data_path) / DATASET / "source"
    if not (source / f"{DATASET}.inter").is_file():
        raise FileNotFoundError(
            f"{source / (DATASET + '.inter')} not found: prepare the sample with `python -m recbole_iacn.data "
            "movielens --ratings ../shared/data/ml-1m-sample/ratings.dat --merged "
            "../shared/data/ml-1m-sample/merged.csv --name ml-1m-sample`."
        )
    target = Path(scratch) / DATASET
    target.mkdir(parents=True, exist_ok=True)
    for path in source.glob(f"{DATASET}.*"):
        if path.suffix == ".inter":
            write_rank_timestamps(path, target / path.name)
        else:
            shutil.copy2(path, target / path.name)
    return Path(scratch)


def write_rank_timestamps(source: Path, target: Path, time_column: str = "timestamp:float") -> None:
    """Copy an atomic ``.inter`` file with each timestamp replaced by its dense rank (1, 2, ...).

    RecBole stores float fields as float32, whose 24-bit mantissa rounds Unix times (~1e9) to
    multiples of 64 s: distinct times would become ties and reorder the leave-one-out split. Dense
    ranks (exact in float32 below 2**24) keep the order and the ties of the original times exactly.
    """
    import pandas as pd

    frame = pd.read_csv(source, sep="\t", dtype=str, keep_default_na=False)
    if len(frame) >= FLOAT32_EXACT_INTEGERS:
        raise ValueError(f"{source}: too many interactions for exact float32 time ranks.")
    frame[time_column] = pd.to_numeric(frame[time_column]).rank(method="dense").astype("int64").astype(str)
    frame.to_csv(target, sep="\t", index=False)


def ranking_config(root: Path, seed: int, epochs: int, device: str, overrides: dict,
                   stopping_step: int = DEFAULT_STOPPING_STEP) -> dict:
    """RecBole config of the leave-one-out full-ranking runs (early stopping on valid NDCG@10)."""
    load_col = {"inter": ["user_id", "item_id", "timestamp"]}
    if (root / DATASET / f"{DATASET}.user").is_file():
        load_col["user"] = ["user_id", "gender", "age", "occupation"]
    if (root / DATASET / f"{DATASET}.item").is_file():
        load_col["item"] = ["item_id", "cate_id"]
    return {
        **common.QUIET, **common.device_config(device),
        "data_path": str(root), "seed": seed, "epochs": epochs, "stopping_step": stopping_step, "eval_step": 1,
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "RATING_FIELD": None, "LABEL_FIELD": "label", "load_col": load_col,
        "filter_inter_by_user_or_item": False, "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)", "rm_dup_inter": None, "val_interval": None,
        "normalize_all": False, "normalize_field": None,
        "eval_args": LOO_EVAL_ARGS, "metrics": list(METRICS), "topk": [TOPK], "valid_metric": f"NDCG@{TOPK}",
        "eval_batch_size": EVAL_BATCH_ROWS, "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
        **overrides,
    }


def dain_data_root(data_path: Path, scratch: Path, neg_sampling: str) -> Path:
    """A data_path whose ``ml-1m-sample`` is the dense CTR view of the sample's source file, with
    negatives drawn by ``neg_sampling``."""
    from recbole_iacn.data import build_from_atomic

    source = Path(data_path) / DATASET / "source"
    root = Path(scratch)
    build_from_atomic(str(source), DATASET, root / DATASET, DATASET, protocol="dense", neg_sampling=neg_sampling)
    return root


def dain_config(data_path: Path, seed: int, epochs: int, device: str, checkpoint_dir: str, overrides: dict,
                stopping_step: int = DEFAULT_STOPPING_STEP) -> dict:
    """Config of the plugin models' runs (early stopping on valid AUC)."""
    return {**common.QUIET, **common.device_config(device), "data_path": str(data_path), "seed": seed,
            "epochs": epochs, "stopping_step": stopping_step, "eval_step": 1, "checkpoint_dir": checkpoint_dir,
            **overrides}


class EpochLog:
    """Records ``(epoch, valid score, seconds since the first call)`` after every validation, to report the
    best epoch and the time it took to reach it."""

    def __init__(self):
        self.curve: list[tuple[int, float, float]] = []
        self.started = time.perf_counter()

    def __call__(self, trainer, epoch, score, result):
        self.curve.append((epoch, float(score), time.perf_counter() - self.started))

    def summary(self) -> dict:
        best = best_epoch(self.curve)
        if best is None:
            return {"best_epoch": "", "epochs_run": 0, "seconds_to_best": "", "train_seconds": ""}
        return {"best_epoch": best[0], "epochs_run": len(self.curve), "seconds_to_best": round(best[2], 2),
                "train_seconds": round(self.curve[-1][2], 2)}


# ------------------------------------------------------------------------------ RecBole baselines
def run_baseline(model: str, config: dict) -> dict:
    """Train a RecBole model on the leave-one-out split to its best epoch, test it; its test metrics,
    best epoch and time to it."""
    from recbole_iacn.pipeline import run

    log = EpochLog()
    result = run(model, DATASET, config_dict=config, saved=True, epoch_callback=log)
    return {**{k: float(result["test_result"].get(k, math.nan)) for k in RESULT_KEYS}, **log.summary()}


# ------------------------------------------------------------------------------ DAIN
def train_dain(model: str, config: dict):
    """Train a plugin model on the CTR view; ``(trained model, its CTRDataset, its test split)``."""
    from recbole_iacn.pipeline import prepare, run
    from recbole_iacn.quick_start import load_model

    prepared = prepare(model, DATASET, config_dict=config)
    log = EpochLog()
    result = run(model, DATASET, prepared=prepared, saved=True, epoch_callback=log)
    result["epochs"] = log.summary()
    loaded = load_model(result["model_file"], device=str(prepared.config["device"]))
    return loaded.model, prepared.dataset, prepared.test_data._dataset, result


def token_map(src_dataset, dst_dataset, field: str, dst_field: Optional[str] = None):
    """Tensor mapping ``src_dataset`` ids of ``field`` to ``dst_dataset`` ids (0 = [PAD] or unknown)
    and the number of tokens ``dst_dataset`` does not know."""
    import torch

    dst_field = dst_field or field
    tokens = src_dataset.field2id_token[field]
    index = dst_dataset.field2token_id[dst_field]
    ids = [index.get(str(t), 0) for t in tokens]
    ids[0] = 0
    unknown = sum(1 for t in tokens[1:] if str(t) not in index)
    return torch.tensor(ids, dtype=torch.long), unknown


class CTRRanker:
    """Scores every RecBole item for RecBole users with a trained CTR model: each user's CTR *test*
    row (their full train + valid history, as the model would see it at test time) is repeated over
    all items, with the candidate item (and, by the dataset join, its category) replaced."""

    def __init__(self, model, ctr_dataset, ctr_test, rb_dataset, device):
        import torch

        self.model, self.ctr, self.device = model, ctr_dataset, device
        uid, iid, label = ctr_dataset.uid_field, ctr_dataset.iid_field, ctr_dataset.label_field
        self.uid_field, self.iid_field, self.label_field = uid, iid, label
        self.user_map, self.unknown_users = token_map(rb_dataset, ctr_dataset, rb_dataset.uid_field, uid)
        self.item_map, self.unknown_items = token_map(rb_dataset, ctr_dataset, rb_dataset.iid_field, iid)
        feat = ctr_test.inter_feat
        positive = torch.nonzero(feat[label] > 0).squeeze(1)
        self.test_rows = feat[positive]
        self.row_of_user = torch.full((ctr_dataset.user_num,), -1, dtype=torch.long)
        self.row_of_user[self.test_rows[uid]] = torch.arange(len(positive))
        self.n_items = len(self.item_map)
        # every ranked item with its item-side features, joined once: RecBole's Interaction indexes through a
        # Python list (index.tolist()), so joining users × items rows chunk by chunk took most of the scoring
        self.candidates = ctr_dataset.join(type(self.test_rows)({iid: self.item_map}))

    def test_item(self, rb_users):
        """DAIN's test item (in RecBole ids via tokens) per RecBole user; -1 where it has none."""
        import torch

        rows = self.row_of_user[self.user_map[rb_users]]
        ctr_items = torch.where(rows >= 0, self.test_rows[self.iid_field][rows.clamp(min=0)], torch.tensor(-1))
        inverse = torch.full((self.ctr.item_num,), -1, dtype=torch.long)
        inverse[self.item_map] = torch.arange(self.n_items)
        inverse[0] = -1
        return torch.where(ctr_items >= 0, inverse[ctr_items.clamp(min=0)], torch.tensor(-1))

    def scores(self, rb_users):
        """``[len(rb_users), n_items]`` scores; users without a CTR test row get -inf."""
        import torch

        scores = torch.full((len(rb_users), self.n_items), -math.inf)
        rows = self.row_of_user[self.user_map[rb_users]]
        for start in range(0, len(rb_users), SCORE_USERS_PER_BATCH):
            chunk = rows[start:start + SCORE_USERS_PER_BATCH]
            valid = torch.nonzero(chunk >= 0).squeeze(1)
            if len(valid) == 0:
                continue
            base = self.ctr.join(self.test_rows[chunk[valid]])  # the user-side features of these users' rows
            batch = base.repeat_interleave(self.n_items)
            batch.update(self.candidates.repeat(len(valid)))  # the candidate and its features replace the test item
            batch = batch.to(self.device)
            with torch.no_grad():
                out = self.model.predict(batch).view(len(valid), self.n_items).float().cpu()
            out[:, self.item_map == 0] = -math.inf  # [PAD] and items DAIN never saw
            scores[start + valid] = out
        return scores


def evaluate_full_sort(ranker, test_loader, config) -> tuple[dict, int, int]:
    """:func:`benchmarks.common.evaluate_full_sort` for this script's metrics."""
    return common.evaluate_full_sort(ranker, test_loader, config, RESULT_KEYS)


def recbole_test_loader(root_config: dict):
    """RecBole's leave-one-out test loader (and config, dataset) of the ML-1M sample, built as for BPR."""
    from recbole_iacn.pipeline import prepare

    prepared = prepare("BPR", DATASET, config_dict=root_config)
    return prepared.test_data, prepared.config, prepared.dataset


# ------------------------------------------------------------------------------ report
def summary_markdown(rows: Sequence[dict], models: Sequence[str], dain_models: Sequence[str]) -> str:
    """Mean ± SD per model and metric, DAIN's relative difference to each baseline, the paper's figures."""
    cols = ["model", *[METRIC_LABELS[k] for k in RESULT_KEYS], "n"]
    body, means = [], {}
    for model in [*models, *dain_models]:
        ok = [r for r in rows if r["model"] == model and not r.get("error")]
        stats = {k: mean_sd([r[k] for r in ok]) for k in RESULT_KEYS}
        means[model] = {k: s[0] for k, s in stats.items()}
        body.append([model, *[fmt_mean_sd(*stats[k]) for k in RESULT_KEYS], len(ok)])
    text = "## Test metrics (full ranking, leave-one-out by time; mean ± SD over seeds)\n\n"
    text += common.markdown_table(cols, body)
    rel = []
    for dain in dain_models:
        for base in models:
            cells = []
            for k in RESULT_KEYS:
                b, d = means[base][k], means[dain][k]
                cells.append("n/a" if not b or math.isnan(b) or math.isnan(d) else f"{100 * (d - b) / b:+.1f} %")
            rel.append([f"{dain} vs {base}", *cells])
    if rel:
        text += "\n### Relative difference of the means, (DAIN − baseline) / baseline\n\n"
        text += common.markdown_table(["comparison", *[METRIC_LABELS[k] for k in RESULT_KEYS]], rel)
    text += ("\n### For reference only: the DAIN paper's figures on the FULL MovieLens-1M (arXiv 2409.02425)\n\n"
             "Different data (the full ML-1M, not this 100k-rating sample) and an unstated protocol: "
             "not comparable with the numbers above. The paper reports DAIN 6–9 % above MF, NCF and DeepFM.\n\n"
             + common.markdown_table([METRIC_LABELS[k] for k in RESULT_KEYS], [[PAPER[k] for k in RESULT_KEYS]]))
    return text


PROTOCOL_MD = __doc__.split("\n\n", 1)[1]
#: the split check of a DAIN run, kept in its CSV row so that a resumed run still reports it
CHECK_KEYS = ("users", "mismatched", "unknown_users", "unknown_items")


def write_outputs(rows, out: Path, args, command: str, info: dict, checks: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    header = common.header_lines(command, info)
    csv_path = write_rows(out / "dain_ranking.csv", rows, header)
    text = common.markdown_header("DAIN ranking on the ML-1M sample (NDCG@10, HR@10, MAP@10)", command, info)
    text += (f"\nSettings: seeds {args.seed_list}; every model trains until {args.stopping_step} epochs bring no "
             f"better validation metric (RecBole's models: NDCG@10; DAIN: AUC), at most {args.epochs} epochs, and "
             f"its best epoch is tested; overrides {args.overrides or {}}. Columns best_epoch (0-based), "
             "epochs_run and seconds_to_best of dain_ranking.csv give each run's convergence.\n")
    text += machines_sentence(rows, "dain_ranking.csv")
    text += "\n## Protocol\n\n" + PROTOCOL_MD + "\n"
    text += ("\n## Split check\n\n"
             f"Evaluated users: {checks.get('users', 'n/a')}; users whose DAIN test item differs from RecBole's: "
             f"{checks.get('mismatched', 'n/a')}; RecBole users unknown to the CTR view: "
             f"{checks.get('unknown_users', 'n/a')} (users with a single interaction, which the CTR view drops: "
             f"they have no test item); RecBole items unknown to the CTR view: {checks.get('unknown_items', 'n/a')} "
             "(items rated only by such users: never a test item; DAIN scores them -inf).\n\n")
    failed = [r for r in rows if r.get("error")]
    if failed:
        text += f"**{len(failed)} run(s) failed** (see the `error` column of dain_ranking.csv).\n\n"
    text += summary_markdown(rows, args.baselines, args.dain_models)
    md = common.write_text(out / "dain_ranking.md", text)
    return {"markdown": md, "csv": csv_path}


# ------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="DAIN full-ranking evaluation against RecBole baselines.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--baselines", nargs="*", default=list(BASELINES), help="RecBole models")
    p.add_argument("--dain-models", nargs="*", default=list(DAIN_MODELS), help="plugin models ranked (DAIN, DAIN_IaCN)")
    p.add_argument("--epochs", type=common.positive_int, default=DEFAULT_EPOCHS, help="maximum epochs per run")
    p.add_argument("--stopping-step", type=common.positive_int, default=DEFAULT_STOPPING_STEP,
                   help="stop after this many epochs without a better validation metric")
    p.add_argument("--dain-negatives", choices=NEG_SAMPLINGS, default="uniform",
                   help="how the CTR view DAIN trains on draws its negatives (the baselines': uniform)")
    return common.add_common_arguments(p, "dain_ranking", seeds=DEFAULT_SEEDS)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    import torch

    args = build_parser().parse_args(argv)
    args.seed_list = common.seed_list(args)
    args.overrides = common.parse_overrides(args.config_dict)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = common.resolve_device(args.device)
    common.ensure_dataset(DATASET, args.data_path)
    out = Path(args.out) if args.out else common.default_out_dir("dain") / "dain_ranking"
    command = common.command_line(None if argv is None else [sys.argv[0], *argv])
    info = common.machine_info(device)
    # runs already in the output's CSV are kept and skipped: a stopped benchmark resumes where it was
    rows = [r for r in read_rows(out / "dain_ranking.csv") if not r.get("error")]
    done = {(r["model"], r["seed"]) for r in rows}
    checks = next(({k: int(r[k]) for k in CHECK_KEYS} for r in rows if r.get("users") not in (None, "")), {})
    header = common.header_lines(command, info)
    machine = {"cpu": info["cpu"], "device": info["device"]}  # in every row: a resumed folder may mix machines
    planned = [(m, seed) for seed in args.seed_list for m in (*args.baselines, *args.dain_models)]
    if all(run in done for run in planned):  # nothing left to train: the report alone, without building the data
        paths = write_outputs(rows, out, args, command, info, checks)
        print(paths["markdown"].read_text(encoding="utf-8"))
        return paths
    scratch = Path(tempfile.mkdtemp(prefix="iacn-rank-"))
    try:
        root = recbole_source_root(Path(args.data_path), scratch / "recbole")
        ctr_root = dain_data_root(Path(args.data_path), scratch / "ctr", args.dain_negatives) if args.dain_models else None
        for seed in args.seed_list:
            rb_config = ranking_config(root, seed, args.epochs, device, {**args.overrides,
                                       "checkpoint_dir": str(scratch / "saved")}, args.stopping_step)
            for model in (m for m in args.baselines if (m, seed) not in done):
                rows.append(_timed(model, seed, lambda: run_baseline(model, rb_config), machine))
                write_rows(out / "dain_ranking.csv", rows, header)
            todo = [m for m in args.dain_models if (m, seed) not in done]
            if todo:
                test_loader, rb_cfg, rb_dataset = recbole_test_loader(rb_config)
            for model in todo:
                def ranked(model=model):
                    net, ctr, ctr_test, result = train_dain(model, dain_config(
                        ctr_root, seed, args.epochs, device, str(scratch / "saved"), args.overrides,
                        args.stopping_step))
                    ranker = CTRRanker(net, ctr, ctr_test, rb_dataset, rb_cfg["device"])
                    metrics, users, mismatched = evaluate_full_sort(ranker, test_loader, rb_cfg)
                    checks.update(users=users, mismatched=mismatched, unknown_users=ranker.unknown_users,
                                  unknown_items=ranker.unknown_items)
                    return {**metrics, **result["epochs"], **checks}
                rows.append(_timed(model, seed, ranked, machine))
                write_rows(out / "dain_ranking.csv", rows, header)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    paths = write_outputs(rows, out, args, command, info, checks)
    print(paths["markdown"].read_text(encoding="utf-8"))
    return paths


def _timed(model: str, seed: int, fn, machine: dict) -> dict:
    """Run ``fn()`` → metrics; a row with the model, seed, seconds, the machine (``cpu``, ``device``) and the
    error if it failed."""
    started = time.perf_counter()
    row = {"model": model, "seed": seed, "commit": common.git_commit(), **machine}
    try:
        row.update(fn(), error="")
    except Exception as exc:  # recorded, the other runs go on
        row.update({k: math.nan for k in RESULT_KEYS}, error=f"{type(exc).__name__}: {exc}")
    row["seconds"] = round(time.perf_counter() - started, 2)
    print(f"{model} seed={seed}: " + (row["error"] or ", ".join(f"{k}={row[k]:.4f}" for k in RESULT_KEYS))
          + f" ({row['seconds']} s)", flush=True)
    return row


if __name__ == "__main__":
    common.run_main(main)
