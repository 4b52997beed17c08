"""The capsule network as a candidate generator: HR@10, NDCG@10 and Recall@50 against RecBole's Pop and BPR.

Protocol (one split, every model measured in the same run):

* Source: a RecBole atomic dataset with user, item and timestamp: RecBole's bundled ml-100k, the ML-1M
  sample (``../shared/data/ml-1m-sample``, imported on first use; skipped when absent), or any
  ``<data_path>/NAME/NAME.inter``. Every interaction counts; nothing is filtered.
* Split: RecBole's leave-one-out by time (``eval_args = {split: {LS: valid_and_test}, order: TO,
  group_by: user, mode: full}``; timestamps replaced by their dense rank, which float32 holds
  exactly): per user the last interaction is the test item, the second-last the validation item.
* Pop and BPR: RecBole's own classes, trained and tested by RecBole's pipeline (full ranking over all
  items, the user's train + valid items excluded, best epoch by valid NDCG@10).
* X_IaCN: a plugin model trained on the package's ``dense`` CTR view of the same source file (per
  user the last interaction → test sample, the second-last → valid, earlier ones → train; ties in time
  keep file order, as RecBole's stable sort), best epoch by valid AUC. For every user of RecBole's test
  loader, its interests are formed from the user's CTR test sample (the behaviours before the test
  item, the most recent L of them) and the whole catalogue is ranked by ``max_k R_score = max_k
  c_tᵀ i_u^k`` (:meth:`recbole_iacn.explain.InterestExplainer.catalogue_scores`); the same items as
  for RecBole's models are excluded, and RecBole's own ``Collector`` and ``Evaluator`` compute the
  metrics. "X_IaCN untrained" is the same model freshly initialised: the floor of the retriever.
  The script counts the users whose test item differs between the two splits (expected 0).
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
from benchmarks.dain_ranking import CTRRanker, write_rank_timestamps  # noqa: E402

DATASETS = ("ml-100k", common.ML1M_NAME)
BASELINES = ("Pop", "BPR")
DEFAULT_MODEL = "DIN_IaCN"
METRICS = ("Hit", "NDCG", "Recall")
TOPK = (10, 50)
RESULT_KEYS = ("hit@10", "ndcg@10", "recall@50")
LABELS = {"hit@10": "HR@10", "ndcg@10": "NDCG@10", "recall@50": "Recall@50"}
LOO_EVAL_ARGS = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}
EVAL_BATCH_ROWS = 131072


# ------------------------------------------------------------------------------ data
def source_of(name: str, data_path: Path) -> tuple[Path, str]:
    """``(folder, name)`` of the RecBole atomic source of ``name``; FileNotFoundError when absent."""
    from recbole_iacn.data import default_ml100k_source

    if name == "ml-100k":
        folder, source_name = default_ml100k_source()
        return Path(folder), source_name
    if name == common.ML1M_NAME:
        common.ensure_dataset(name, data_path)  # imports ../shared/data/ml-1m-sample on first use
        return Path(data_path) / name / "source", name
    folder = Path(data_path) / name
    if not (folder / f"{name}.inter").is_file():
        raise FileNotFoundError(f"{folder / (name + '.inter')} not found: a RecBole atomic dataset is needed.")
    return folder, name


def recbole_root(source: Path, name: str, scratch: Path) -> Path:
    """A RecBole data_path whose ``name/`` holds the source interactions with dense-rank timestamps."""
    target = scratch / name
    target.mkdir(parents=True, exist_ok=True)
    write_rank_timestamps(source / f"{name}.inter", target / f"{name}.inter")
    return scratch


def ctr_root(source: Path, name: str, scratch: Path) -> Path:
    """A data_path whose ``name/`` is the dense CTR view of the same source file."""
    from recbole_iacn.data import build_from_atomic

    build_from_atomic(str(source), name, scratch / name, name, protocol="dense")
    return scratch


def recbole_config(root: Path, seed: int, epochs: int, device: str, checkpoint_dir: str, overrides: dict) -> dict:
    return {
        **common.QUIET, **common.device_config(device),
        "data_path": str(root), "seed": seed, "epochs": epochs, "checkpoint_dir": checkpoint_dir,
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "RATING_FIELD": None, "LABEL_FIELD": "label", "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "filter_inter_by_user_or_item": False, "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)", "rm_dup_inter": None, "val_interval": None,
        "normalize_all": False, "normalize_field": None,
        "eval_args": LOO_EVAL_ARGS, "metrics": list(METRICS), "topk": list(TOPK), "valid_metric": "NDCG@10",
        "eval_batch_size": EVAL_BATCH_ROWS, "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
        **overrides,
    }


# ------------------------------------------------------------------------------ the capsule retriever
class CapsuleRanker(CTRRanker):
    """Scores every RecBole item for RecBole users by ``max_k R_score`` of the user's CTR test sample."""

    def __init__(self, explainer, ctr_dataset, ctr_test, rb_dataset, device):
        super().__init__(explainer.model, ctr_dataset, ctr_test, rb_dataset, device)
        self.explainer = explainer

    def scores(self, rb_users):
        import torch

        scores = torch.full((len(rb_users), self.n_items), -math.inf)
        rows = self.row_of_user[self.user_map[rb_users]]
        valid = torch.nonzero(rows >= 0).squeeze(1)
        if len(valid):
            batch = self.ctr.join(self.test_rows[rows[valid]]).to(self.device)
            ours = self.explainer.catalogue_scores(batch).cpu()  # [users, CTR items]
            mapped = ours[:, self.item_map]  # [users, RecBole items]
            mapped[:, self.item_map == 0] = -math.inf
            scores[valid] = mapped
        return scores


def evaluate_full_sort(ranker, test_loader, config) -> tuple[dict, int, int]:
    """:func:`benchmarks.common.evaluate_full_sort` for this script's metrics."""
    return common.evaluate_full_sort(ranker, test_loader, config, RESULT_KEYS)


def train_iacn(model: str, root: Path, name: str, config: dict, model_file: Optional[str]):
    """Train ``model`` on the CTR view (or load ``model_file``); ``(explainer, prepared data, untrained explainer)``."""
    from recbole_iacn.explain import InterestExplainer
    from recbole_iacn.pipeline import prepare, run
    from recbole_iacn.quick_start import LoadedModel, load_model

    prepared = prepare(model, name, config_dict={**config, "data_path": str(root)})
    if model_file is None:
        model_file = run(model, name, prepared=prepared, saved=True)["model_file"]
    loaded = load_model(model_file, device=str(prepared.config["device"]))
    untrained = type(loaded.model)(loaded.config, loaded.schema).to(loaded.config["device"]).eval()
    return (InterestExplainer(loaded), prepared,
            InterestExplainer(LoadedModel(untrained, loaded.config, loaded.schema)), model_file)


# ------------------------------------------------------------------------------ report
def write_outputs(rows, checks, out: Path, command: str, info: dict, settings: str) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    csv_path = common.write_csv(out / "retrieval.csv", rows, common.header_lines(command, info))
    text = common.markdown_header("Retrieval with the capsule network (max_k R_score) against Pop and BPR",
                                  command, info)
    text += f"\n{settings}\n\n## Protocol\n\n" + __doc__.split("\n\n", 1)[1] + "\n"
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        c = checks.get(dataset, {})
        text += (f"\n## {dataset}\n\nTest users: {c.get('users', 'n/a')}; users whose test item differs between "
                 f"RecBole's split and the CTR view: {c.get('mismatched', 'n/a')}; RecBole users unknown to the CTR "
                 f"view: {c.get('unknown_users', 'n/a')}.\n\n")
        body = [[r["model"], *[("n/a" if r.get("error") else f"{r[k]:.4f}") for k in RESULT_KEYS], r["seconds"],
                 r.get("error") or ""] for r in rows if r["dataset"] == dataset]
        text += common.markdown_table(["model", *[LABELS[k] for k in RESULT_KEYS], "seconds", "error"], body)
    path = out / "retrieval.md"
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(text, encoding="utf-8")
    staging.replace(path)
    return {"markdown": path, "csv": csv_path}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Capsule retrieval (max_k R_score) against RecBole's Pop and BPR.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--model", default=DEFAULT_MODEL, help="the X_IaCN model trained on the CTR view")
    p.add_argument("--model-file", default=None, help="evaluate this checkpoint (of the one dataset given) instead of training")
    p.add_argument("--baselines", nargs="*", default=list(BASELINES))
    p.add_argument("--epochs", type=int, default=3, help="epochs of the X_IaCN model")
    p.add_argument("--baseline-epochs", type=int, default=50, help="epochs of BPR (early stopping on valid NDCG@10)")
    p.add_argument("--seed", type=int, default=2020)
    return common.add_common_arguments(p, "retrieval")


def main(argv: Optional[Sequence[str]] = None) -> dict:
    import torch

    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model_file and len(args.datasets) != 1:
        raise SystemExit("--model-file evaluates one checkpoint: give the one dataset it was trained on.")
    device = common.resolve_device(args.device)
    overrides = common.parse_overrides(args.config_dict)
    out = Path(args.out) if args.out else common.default_out_dir("retrieval") / "retrieval"
    command = common.command_line(None if argv is None else [sys.argv[0], *argv])
    info = common.machine_info(device)
    rows, checks = [], {}
    scratch = Path(tempfile.mkdtemp(prefix="iacn-retrieval-"))
    try:
        for dataset in args.datasets:
            try:
                source, name = source_of(dataset, Path(args.data_path))
            except FileNotFoundError as exc:
                print(f"skipped {dataset}: {exc}", flush=True)
                continue
            work = scratch / dataset
            rb_root = recbole_root(source, name, work / "recbole")
            rb_config = recbole_config(rb_root, args.seed, args.baseline_epochs, device, str(work / "saved"), {})
            for model in args.baselines:
                rows.append(_timed(dataset, model, lambda: _baseline(model, name, rb_config)))
            from recbole_iacn.pipeline import prepare

            loader = prepare("BPR", name, config_dict=rb_config)
            ctr_config = {**common.QUIET, **common.device_config(device), "seed": args.seed, "epochs": args.epochs,
                          "checkpoint_dir": str(work / "saved"), **overrides}
            started = time.perf_counter()
            try:
                explainer, prepared, untrained, _ = train_iacn(
                    args.model, ctr_root(source, name, work / "ctr"), name, ctr_config, args.model_file)
            except Exception as exc:  # recorded; the baselines' rows stay
                rows.append({"dataset": dataset, "model": args.model, "error": f"{type(exc).__name__}: {exc}",
                             "seconds": round(time.perf_counter() - started, 2)})
                continue
            ctr_test = prepared.test_data._dataset
            for label, ex in ((args.model, explainer), (f"{args.model} untrained", untrained)):
                def ranked(ex=ex):
                    ranker = CapsuleRanker(ex, prepared.dataset, ctr_test, loader.dataset, loader.config["device"])
                    metrics, users, mismatched = evaluate_full_sort(ranker, loader.test_data, loader.config)
                    checks[dataset] = {"users": users, "mismatched": mismatched, "unknown_users": ranker.unknown_users}
                    return metrics
                row = _timed(dataset, label, ranked)
                if label == args.model:
                    row["seconds"] = round(row["seconds"] + time.perf_counter() - started, 2)  # training included
                rows.append(row)
            common.write_csv(out / "retrieval.csv", rows, common.header_lines(command, info))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    settings = (f"X_IaCN model {args.model}, {args.epochs} epochs (package defaults otherwise; overrides "
                f"{overrides or 'none'}{'; checkpoint ' + args.model_file if args.model_file else ''}); "
                f"Pop and BPR: RecBole's defaults, at most {args.baseline_epochs} epochs; seed {args.seed}. "
                "Seconds: training and evaluation of that row.")
    paths = write_outputs(rows, checks, out, command, info, settings)
    print(paths["markdown"].read_text(encoding="utf-8"))
    return paths


def _baseline(model: str, name: str, config: dict) -> dict:
    from recbole_iacn.pipeline import run

    result = run(model, name, config_dict=config, saved=True)
    return {k: float(result["test_result"].get(k, math.nan)) for k in RESULT_KEYS}


def _timed(dataset: str, model: str, fn) -> dict:
    started = time.perf_counter()
    row = {"dataset": dataset, "model": model}
    try:
        row.update(fn(), error="")
    except Exception as exc:  # recorded, the other rows go on
        row.update({k: math.nan for k in RESULT_KEYS}, error=f"{type(exc).__name__}: {exc}")
    row["seconds"] = round(time.perf_counter() - started, 2)
    print(f"{dataset} {model}: " + (row["error"] or ", ".join(f"{k}={row[k]:.4f}" for k in RESULT_KEYS))
          + f" ({row['seconds']} s)", flush=True)
    return row


if __name__ == "__main__":
    common.run_main(main)
