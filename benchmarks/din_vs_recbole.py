"""Why RecBole's DIN tests higher than ours on the same CTR rows: a weight-for-weight diagnostic.

Our DIN is configured like RecBole's (``mlp_hidden_size`` and ``attention_mlp_sizes`` 256-256-256,
``dnn_batch_norm``, unnormalised attention) and three things ours has no option for yet are swapped
in for the run only (:func:`like_recbole`): the DNN input ``[interest, candidate, interest ⊙ candidate]``,
RecBole's "Dice" (which is ``sigmoid(s)·s``, i.e. SiLU) and the attention scores divided by ``sqrt(d)``.

1. Equivalence: RecBole's DIN weights are copied into ours; the logits (train and eval mode) and every
   weight gradient of one training batch are compared.
2. Training: test AUC (RecBole's evaluator, the same test rows) after each epoch of RecBole's DIN from its
   own initial weights, ours from RecBole's initial weights, ours from its own initialisation, and ours
   with its category table rescaled to the item table's standard deviation. If the layers agree (1) and
   the training curves differ only by the starting weights (2), the gap is the initialisation.

    python benchmarks/din_vs_recbole.py --epochs 2

This is a diagnostic, not a benchmark of the shipped defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

RECBOLE_SIZES = [256, 256, 256]  # RecBole's DIN.yaml mlp_hidden_size, used for both of its MLPs
ATTENTION = "attention.att_mlp_layers.mlp_layers."
DNN = "dnn_mlp_layers.mlp_layers."
#: our module → RecBole's module holding the same weights
WEIGHT_PAIRS = {
    "attention.first": ATTENTION + "1", "attention.rest.0": ATTENTION + "4", "attention.rest.2": ATTENTION + "7",
    "attention.score": "attention.dense", "dnn.0": DNN + "1", "dnn.1": DNN + "2", "dnn.3": DNN + "5",
    "dnn.4": DNN + "6", "dnn.6": DNN + "9", "dnn.7": DNN + "10", "output_layer": "dnn_predict_layers",
}
ITEM_TABLE = "embedding_layer.token_embedding_table.item.embedding.weight"  # item ids, then categories


@contextlib.contextmanager
def like_recbole():
    """Our DIN computing what RecBole's DIN computes, for the duration of the block."""
    import torch
    from torch import nn

    from recbole_iacn.model import base, layers

    saved = (base.CTRModel.deep_interest_input_dim, base.CTRModel.deep_interest_input, layers.activation,
             layers.LocalActivationUnit.scores)
    plain_activation, plain_scores = layers.activation, layers.LocalActivationUnit.scores
    base.CTRModel.deep_interest_input_dim = lambda self, d: 3 * d
    base.CTRModel.deep_interest_input = lambda self, f, i: torch.cat([i, f.target, i * f.target], -1)
    layers.activation = lambda name, dim: nn.SiLU() if str(name).lower() == "dice" else plain_activation(name, dim)
    layers.LocalActivationUnit.scores = lambda self, q, k, m: plain_scores(self, q, k, m) / self.key_dim ** 0.5
    try:
        yield
    finally:
        (base.CTRModel.deep_interest_input_dim, base.CTRModel.deep_interest_input, layers.activation,
         layers.LocalActivationUnit.scores) = saved


def copy_recbole_weights(ours, theirs) -> None:
    """Load RecBole's DIN weights into ours (the user table, unused by RecBole's DIN, is kept)."""
    source, state = theirs.state_dict(), ours.state_dict()
    for mine, their in WEIGHT_PAIRS.items():
        for key in state:
            if key.startswith(mine + "."):
                state[key] = source[their + key[len(mine):]]
    items = ours.embedder.item_embedding.table.weight.shape[0]
    state["embedder.item_embedding.table.weight"] = source[ITEM_TABLE][:items]
    state["embedder.category_embedding.weight"] = source[ITEM_TABLE][items:]
    ours.load_state_dict(state)


def recbole_logits(model, batch):
    return model.forward(batch["user_id"], batch["item_id_list"], batch["item_length"], batch["item_id"])


def compare(ours, theirs, batch) -> list[list]:
    """Max |logit difference| in train and eval mode, and relative gradient differences per weight."""
    rows = []
    for training in (True, False):
        ours.train(training), theirs.train(training)
        difference = (ours.forward(batch) - recbole_logits(theirs, batch)).abs().max().item()
        rows.append([f"logits, {'train' if training else 'eval'} mode, max abs difference", f"{difference:.2e}"])
    ours.train(), theirs.train()
    ours.zero_grad(), theirs.zero_grad()
    ours.calculate_loss(batch).backward()
    theirs.calculate_loss(batch).backward()
    their_params, our_params = dict(theirs.named_parameters()), dict(ours.named_parameters())
    for mine, their in WEIGHT_PAIRS.items():
        a, b = our_params[mine + ".weight"].grad, their_params[their + ".weight"].grad
        rows.append([f"gradient {mine}.weight, relative difference", f"{((a - b).norm() / b.norm()).item():.2e}"])
    items = ours.embedder.item_embedding.table.weight.shape[0]
    b = their_params[ITEM_TABLE].grad
    for name, a, theirs_part in (("item table", ours.embedder.item_embedding.table.weight.grad, b[:items]),
                                 ("category table", ours.embedder.category_embedding.weight.grad, b[items:])):
        # row 0 is [PAD]: masked out on both sides, RecBole's gradient there is 0 too
        rel = ((a[1:] - theirs_part[1:]).norm() / theirs_part[1:].norm()).item()
        rows.append([f"gradient {name}, relative difference", f"{rel:.2e}"])
    return rows


def train_curve(model, prepared, epochs: int) -> list[float]:
    """Test AUC after each epoch, trained by the package's trainer (RecBole's evaluator)."""
    from recbole_iacn.pipeline import build_trainer, close_tensorboard

    prepared.config["epochs"] = epochs
    aucs = []

    def record(trainer, epoch, score, result):
        aucs.append(trainer.evaluate(prepared.test_data, load_best_model=False, show_progress=False)["auc"])

    trainer = build_trainer(prepared, model, epoch_callback=record)
    try:
        trainer.fit(prepared.train_data, prepared.valid_data, saved=False, show_progress=False)
    finally:
        close_tensorboard(trainer)
    return aucs


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=str(common.DEFAULT_DATA_PATH))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--embedding-size", type=int, default=18)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import torch

    from benchmarks.common import on_ctr_view
    from recbole_iacn import compat
    from recbole_iacn.pipeline import prepare

    compat.apply()
    torch.set_num_threads(args.threads)
    common.ensure_dataset(args.dataset, args.data_path)
    config = {**common.QUIET, **common.device_config("cpu"), "data_path": args.data_path, "seed": args.seed,
              "embedding_size": args.embedding_size, "mlp_hidden_size": RECBOLE_SIZES,
              "attention_mlp_sizes": RECBOLE_SIZES, "dnn_batch_norm": True, "attention_softmax": False,
              "stopping_step": args.epochs + 1}
    out = (Path(args.out) if args.out else common.default_out_dir("din_vs_recbole") / "din_vs_recbole").resolve()
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="iacn-din-") as scratch, like_recbole():
        os.chdir(scratch)  # RecBole writes log/ into the working directory and makes checkpoint_dir
        try:
            equivalence, curves, batch_size = _run(args, config, torch, on_ctr_view, prepare)
        finally:
            os.chdir(here)
    info = common.machine_info("cpu")
    command = common.command_line(None if argv is None else [sys.argv[0], *argv])
    out.mkdir(parents=True, exist_ok=True)
    text = common.markdown_header("Our DIN against RecBole's DIN, weight for weight", command, info) + "\n"
    text += f"Dataset {args.dataset} (CTR view, the same batches and test rows on both sides), embedding size " \
            f"{args.embedding_size}, batch {batch_size}, seed {args.seed}.\n\n"
    text += "## 1. RecBole's DIN weights copied into ours configured alike (one training batch)\n\n"
    text += common.markdown_table(["quantity", "value"], equivalence) + "\n\n"
    text += "## 2. Test AUC after each epoch\n\n"
    text += common.markdown_table(["start", *[f"epoch {e + 1}" for e in range(args.epochs)]],
                                  [[label, *[f"{a:.4f}" for a in aucs]] for label, aucs in curves.items()]) + "\n"
    path = common.write_text(out / "din_vs_recbole.md", text)
    print(text)
    return {"markdown": path, "equivalence": equivalence, "curves": curves}


def _run(args, config, torch, on_ctr_view, prepare):
    """The equivalence rows, the test-AUC curves and the batch size."""
    ours_data = prepare("DIN", args.dataset, config_dict=config)
    recbole_data = on_ctr_view(prepare("DIN", args.dataset, config_dict=config), "DIN")

    def fresh_ours():
        torch.manual_seed(args.seed)
        return ours_data.model_class(ours_data.config, ours_data.train_data._dataset)

    def fresh_theirs():
        torch.manual_seed(args.seed)
        return recbole_data.model_class(recbole_data.config, recbole_data.train_data._dataset)

    ours, theirs = fresh_ours(), fresh_theirs()
    copy_recbole_weights(ours, theirs)
    equivalence = compare(ours, theirs, next(iter(ours_data.train_data)))

    copied = fresh_ours()
    copy_recbole_weights(copied, fresh_theirs())
    rescaled = fresh_ours()
    with torch.no_grad():
        item_std = rescaled.embedder.item_embedding.table.weight[1:].std()
        category = rescaled.embedder.category_embedding.weight
        category.mul_(item_std / category[1:].std())
    starts = {
        "RecBole's DIN, its own initial weights": (fresh_theirs(), recbole_data),
        "ours (configured alike), RecBole's initial weights": (copied, ours_data),
        "ours (configured alike), our initialisation": (fresh_ours(), ours_data),
        "ours (configured alike), our initialisation, category table at the item table's std": (rescaled, ours_data),
    }
    curves = {}
    for label, (model, data) in starts.items():
        curves[label] = train_curve(model, data, args.epochs)
        print(label, [round(a, 4) for a in curves[label]], flush=True)
    return equivalence, curves, ours_data.config["train_batch_size"]


if __name__ == "__main__":
    common.run_main(main)
