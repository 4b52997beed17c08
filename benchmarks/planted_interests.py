"""Do the explained interests recover planted ones? Purity and coverage on SYNTHETIC data.

Data: :func:`recbole_iacn.data.synthetic.build_planted` (each user draws 2-3 distinct categories, and
every behaviour an item of one of them; dense protocol). A model is trained on it, then for every test
user (their test sample: the behaviours before their last one) each behaviour is assigned to one of the
user's K_u interests, and each interest is labelled by the majority category of its behaviours:

* purity: the share of a user's behaviours whose category is their interest's label (mean over users);
* coverage: the share of the user's planted categories (those present in the behaviours the model
  read) that label some interest (mean over users).

Two assignments of a behaviour i to an interest k, both shown by ``python -m recbole_iacn.explain``:
``routing``: the largest final routing weight a_ik; ``score``: the largest c_iᵀ i_u^k (the behaviour's
own relationship score against each interest, the quantity R_score and retrieval rank by). Baselines,
computed the same way on the same users: the same model untrained (fresh initialisation), and random
routing weights (softmax of N(0, 1) logits over the user's K_u interests), and the position-only routing of
the trained model (its start logits' softmax, before any refinement: what a routing decided by position gives).

Whether the routing follows content (:mod:`recbole_iacn.explain.diagnostics`), on the routing rows: the share
of behaviours (of users with K_u ≥ 2) whose top interest the refinement moved away from the one their start
logits favour, the mean ``‖x̂‖``, and how often an item's nearest neighbour in E_aux has its planted category
(against chance).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

DATASET = "synthetic-planted"
#: Settings of each configuration measured (on top of SMALL).
CONFIGS = {
    "default": {},
    # the routing as MIND's paper and this package before 2026-12-06: c as it is, start logits N(0, 1), r = 3
    "mind": {"iacn_routing_scale": 0.0, "iacn_routing_logit_std": 1.0, "iacn_routing_iterations": 3},
    "fitted": {"learning_rate": 0.01, "iacn_embedding_size": 16},
}
#: The training protocol (the model itself at the package defaults): batches of 256, since the data is small,
#: and early stopping on the validation AUC, the best epoch reloaded.
SMALL = {
    "MAX_ITEM_LIST_LENGTH": 20, "train_batch_size": 256, "epochs": 100, "stopping_step": 10, "reproducibility": True,
}
DATA = {"users": 600, "items": 300, "categories": 20}


def build_data(root, seed: int = 2020, **sizes) -> Path:
    """Write the planted dataset under ``root/synthetic-planted``; returns ``root``."""
    from recbole_iacn.data.synthetic import build_planted

    build_planted(Path(root) / DATASET, DATASET, seed=seed, **{**DATA, **sizes})
    return Path(root)


def train(root, model: str, settings: dict, checkpoint_dir, seed: int = 2020):
    """Train ``model`` on the planted data; ``(loaded model, prepared data)``."""
    from recbole_iacn.pipeline import prepare, run
    from recbole_iacn.quick_start import load_model

    config = {**common.QUIET, **SMALL, **settings, "data_path": str(root), "checkpoint_dir": str(checkpoint_dir),
              "seed": seed}
    prepared = prepare(model, DATASET, config_dict=config)
    result = run(model, DATASET, prepared=prepared)
    return load_model(result["model_file"]), prepared, result


# ------------------------------------------------------------------------------ report
def write_outputs(rows, out: Path, command: str, info: dict, settings: str) -> Path:
    from benchmarks.stats import fmt_mean_sd, mean_sd

    out.mkdir(parents=True, exist_ok=True)
    header = common.header_lines(command, info)
    common.write_csv(out / "planted_interests.csv", rows, header)
    text = common.markdown_header("Planted interests: purity and coverage of the explained interests (SYNTHETIC data)",
                                  command, info)
    text += f"\n{settings}\n\n## Protocol\n\n" + __doc__.split("\n\n", 1)[1] + "\n"
    body = []
    for config in dict.fromkeys(r["config"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows):
            ok = [r for r in rows if r["config"] == config and r["method"] == method]
            if not ok:
                continue
            purity, coverage = mean_sd([r["purity"] for r in ok]), mean_sd([r["coverage"] for r in ok])
            auc = mean_sd([r["test_auc"] for r in ok])
            content = [_mean_of(ok, "moved_share"), _mean_of(ok, "x_hat_norm"),
                       _agreement(ok)]
            body.append([config, method, fmt_mean_sd(*purity), fmt_mean_sd(*coverage), *content,
                         fmt_mean_sd(*auc), ok[0]["users"], len(ok)])
    text += "\n## Results (mean ± SD over seeds)\n\n" + common.markdown_table(
        ["config", "interests from", "purity", "coverage", "moved from start", "mean ‖x̂‖",
         "E_aux neighbour category (chance)", "host test AUC", "users", "seeds"], body)
    path = out / "planted_interests.md"
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(text, encoding="utf-8")
    staging.replace(path)
    return path


def _mean_of(rows, key: str) -> str:
    values = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
    return f"{sum(values) / len(values):.3f}" if values else ""


def _agreement(rows) -> str:
    agreement = _mean_of(rows, "neighbour_agreement")
    return f"{agreement} ({_mean_of(rows, 'neighbour_chance')})" if agreement else ""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Purity and coverage of IaCN's interests on planted SYNTHETIC data.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="WideDeep_IaCN", help="an X_IaCN model")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--epochs", type=int, default=SMALL["epochs"])
    p.add_argument("--users", type=int, default=DATA["users"])
    return common.add_common_arguments(p, "planted_interests", data=False, device=False, overrides=False, seeds=3,
                                       threads=1)


def main(argv: Optional[Sequence[str]] = None) -> Path:
    import torch

    from recbole_iacn.explain.planted import planted_recovery, positive_test_rows

    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else common.default_out_dir("planted") / "planted_interests"
    command = common.command_line(None if argv is None else [sys.argv[0], *argv])
    info = common.machine_info("cpu")
    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="iacn-planted-"))
    try:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            root = build_data(scratch / f"data-{seed}", seed=seed, users=args.users)
            for config in args.configs:
                started = time.perf_counter()
                settings = {**CONFIGS[config], "epochs": args.epochs}
                loaded, prepared, result = train(root, args.model, settings, scratch / "saved", seed=seed)
                seconds = round(time.perf_counter() - started, 1)
                planted_file = root / DATASET / f"{DATASET}.planted.json"
                measured = planted_recovery(loaded, positive_test_rows(prepared), planted_file, seed)
                for method, values in measured.items():
                    rows.append({"config": config, "seed": seed, "method": method, **values,
                                 "test_auc": result["test_result"]["auc"], "train_seconds": seconds})
                print(f"seed {seed} {config}: " + ", ".join(
                    f"{m} {v['purity']:.3f}/{v['coverage']:.3f}" for m, v in measured.items()), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    settings = (f"Model {args.model}, at most {args.epochs} epochs (stopping after {SMALL['stopping_step']} without a "
                f"better validation AUC, best epoch reloaded), batch {SMALL['train_batch_size']}, "
                f"L = {SMALL['MAX_ITEM_LIST_LENGTH']}; data: {args.users} users, "
                f"{DATA['items']} items, {DATA['categories']} categories; configs: "
                + "; ".join(f"{c} = {CONFIGS[c] or 'package defaults'}" for c in args.configs) + ".")
    path = write_outputs(rows, out, command, info, settings)
    print(path.read_text(encoding="utf-8"))
    return path


if __name__ == "__main__":
    common.run_main(main)
