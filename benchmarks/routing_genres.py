"""Do the interests of a model trained on real data follow content? Genre purity on ml-100k.

For each model and routing form, one model is trained at the package defaults (early stopping on the
validation AUC, best epoch reloaded) and read on its test users (each user's positive test samples):

* genre purity of the interests (:func:`recbole_iacn.explain.recovery`: each behaviour assigned to its top
  interest, each interest labelled by the majority genre of its behaviours), from the trained routing, from the
  position-only routing (the trained model's start logits before any refinement) and from random routing
  weights (softmax of N(0, 1) logits over the user's K_u interests);
* the content diagnostics of :mod:`recbole_iacn.explain.diagnostics`: the share of behaviours moved from the
  start logits' choice, ``‖x̂‖``, and E_aux's nearest-neighbour genre agreement against chance.

ml-100k's category is an item's first listed genre; a film has up to six and a user's taste mixes them, so
purity here is far from 1 whatever the routing. Each finished run is appended to ``routing_genres.csv`` at
once and skipped on a rerun.
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

#: The routing forms compared: the package defaults and MIND's (this package's defaults until 2026-12-06).
FORMS = {
    "default": {},
    "mind": {"iacn_routing_scale": 0.0, "iacn_routing_logit_std": 1.0, "iacn_routing_iterations": 3},
}
COLUMNS = ["model", "form", "seed", "purity_routing", "purity_position", "purity_random", "moved_share",
           "x_hat_norm", "neighbour_agreement", "neighbour_chance", "users", "test_auc", "valid_auc", "seconds",
           "cpu", "commit"]


def measure(loaded, rows, seed: int = 0) -> dict:
    """Genre purity from the three routings and the content diagnostics of ``loaded`` on ``rows``."""
    import torch

    from recbole_iacn.explain import recovery
    from recbole_iacn.explain.diagnostics import neighbour_agreement, routing_figures

    model, s = loaded.model, loaded.schema
    history, lengths = rows[s.history_item_field], rows[s.history_length_field]
    genres = torch.tensor(s.item_categories, dtype=torch.long)
    nobody = [[] for _ in range(len(history))]
    with torch.no_grad():
        formed = model.iacn.form_interests(rows)
        counts = formed.mask.sum(-1)
        start = model.iacn.routing.start_weights(history.shape[1], formed.mask).expand(len(history), -1, -1)
        logits = torch.randn(formed.routing_weights.shape, generator=torch.Generator().manual_seed(seed))
        random_weights = torch.softmax(logits.masked_fill(~formed.mask.unsqueeze(1), float("-inf")), -1)
        purity = {name: recovery(weights, lengths, counts, genres[history], nobody)
                  for name, weights in (("routing", formed.routing_weights), ("position", start),
                                        ("random", random_weights))}
        figures = routing_figures(model.iacn, rows)
        neighbours = neighbour_agreement(model.iacn.aux_item_embedding.weight, genres)
    return {**{f"purity_{name}": value["purity"] for name, value in purity.items()},
            "users": purity["routing"]["users"], "moved_share": figures["moved_share"],
            "x_hat_norm": figures["behaviour_norm_mean"], "neighbour_agreement": neighbours["agreement"],
            "neighbour_chance": neighbours["chance"]}


def train_and_measure(model: str, form: str, seed: int, data_path, checkpoint_dir, commit: str) -> dict:
    """Train ``model`` at the routing ``form`` and measure it; ``commit``: the code's commit, read once when the
    benchmark started (the checkout may move while it runs)."""
    import torch

    from recbole_iacn.pipeline import prepare, run
    from recbole_iacn.quick_start import load_model

    started = time.perf_counter()
    config = {**common.QUIET, **FORMS[form], "seed": seed, "data_path": str(data_path),
              "checkpoint_dir": str(checkpoint_dir)}
    prepared = prepare(model, "ml-100k", config_dict=config)
    result = run(model, "ml-100k", prepared=prepared)
    dataset = prepared.test_data._dataset
    rows = dataset[torch.arange(len(dataset))]
    rows = rows[rows[dataset.label_field] > 0.5]
    measured = measure(load_model(result["model_file"]), rows, seed)
    return {"model": model, "form": form, "seed": seed, **measured, "test_auc": result["test_result"]["auc"],
            "valid_auc": result["best_valid_result"]["auc"], "seconds": round(time.perf_counter() - started, 1),
            "cpu": common.cpu_model(), "commit": commit}


def read_rows(path: Path) -> list[dict]:
    """The rows of an earlier routing_genres.csv (cells as text), or none; a damaged row is an error naming its line
    (:func:`benchmarks.common.read_runs_csv`)."""
    return common.read_runs_csv(path, required=("model", "form", "seed"))


def report(rows: list[dict], command: str, info: dict) -> str:
    text = common.markdown_header("Genre purity of the interests on ml-100k (real data)", command, info)
    text += "\n## Protocol\n\n" + __doc__.split("\n\n", 1)[1] + "\n## Results (one seed per row)\n\n"
    body = [[r["model"], r["form"], r["seed"], *(f"{float(r[k]):.3f}" for k in
             ("purity_routing", "purity_position", "purity_random", "moved_share", "x_hat_norm")),
             f"{float(r['neighbour_agreement']):.3f} ({float(r['neighbour_chance']):.3f})", r["users"],
             f"{float(r['test_auc']):.4f}", r["seconds"], r["commit"]] for r in rows]
    return text + common.markdown_table(
        ["model", "routing", "seed", "purity: routing", "position only", "random", "moved from start", "mean ‖x̂‖",
         "E_aux neighbour genre (chance)", "users", "test AUC", "seconds", "commit"], body) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> Path:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", default=["DIN_IaCN", "DIEN_IaCN"])
    p.add_argument("--forms", nargs="+", default=list(FORMS), choices=list(FORMS))
    common.add_common_arguments(p, "routing_genres", device=False, overrides=False, seeds=1, threads=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else common.default_out_dir("routing") / "routing_genres"
    command = common.command_line(None if argv is None else [sys.argv[0], *argv])
    info = common.machine_info("cpu")
    common.ensure_dataset("ml-100k", args.data_path)
    rows = read_rows(out / "routing_genres.csv")
    done = {(r["model"], r["form"], str(r["seed"])) for r in rows}
    scratch = Path(tempfile.mkdtemp(prefix="iacn-genres-"))
    try:
        for seed in common.seed_list(args):
            for model in args.models:
                for form in args.forms:
                    if (model, form, str(seed)) in done:
                        continue
                    rows.append(train_and_measure(model, form, seed, args.data_path, scratch, info["commit"]))
                    common.write_csv(out / "routing_genres.csv", rows, common.header_lines(command, info), COLUMNS)
                    print(f"{model} {form} seed {seed}: " + ", ".join(
                        f"{k} {rows[-1][k]:.3f}" for k in ("purity_routing", "purity_position", "moved_share")),
                        flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    path = common.write_text(out / "routing_genres.md", report(rows, command, info))
    print(path.read_text(encoding="utf-8"))
    return path


if __name__ == "__main__":
    common.run_main(main)
