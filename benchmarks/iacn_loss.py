"""The IaCN auxiliary loss, forward + backward, written two ways and timed in one run: today's (autograd over
the plain ops, ``iacn_fused_loss: false``) and the fused one (``true``: routing and attention + softmax as
autograd Functions with hand-derived backwards, :mod:`recbole_iacn.model.iacn_fused`).

Data: the first ``--batches`` training batches of ml-100k (real labels, histories and user profiles; of
1,024 samples about half are positives with a history and reach the loss), with the package's defaults:
L = 20 behaviours, h = 18, K_max = 4, 3 routing iterations, 10 uniform negatives, attention power 2. The
model is ``--model`` (default WideDeep_IaCN) built once per variant; both ways run the same module (same
weights), only ``iacn_fused_loss`` differs. Before timing, float64 copies of the two give the loss and every
parameter gradient under the same seed: the largest relative difference is printed in the table.

Cases, each a row (ratio = today ÷ fused: > 1 means the fused loss is faster):

* ``loss``: ``IaCN.loss(batch)`` and its backward, for the defaults and the variants ``--variants``
  (``in_batch`` negatives, ``iacn_routing_stop_gradient=false``, ``iacn_select_rows=false``, power 1);
* ``step``: the whole training loss of the model, ``calculate_loss`` and its backward, and the host alone
  (``X`` without IaCN) for the ratio X_IaCN ÷ X.

Timing: CPU time of the thread (``time.thread_time``) with ``torch.set_num_threads(--threads)`` (default 1),
so that other work on the machine does not count; the two ways alternate in rounds of ``--calls`` calls
(the order flips every round), ``--repeats`` rounds; each way's figure is the median over rounds of the mean
per call, and the row also gives the median of the per-round ratios and how many rounds the fused way won.

Usage::

    python benchmarks/iacn_loss.py --threads 1                    # benchmarks/results/<date>/iacn-loss/
    python benchmarks/iacn_loss.py --variants default --repeats 5 --calls 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

NAME = "iacn-loss"
DATASET = "ml-100k"
DEFAULT_MODEL = "WideDeep_IaCN"
DEFAULT_BATCH_SIZE = 1024
DEFAULT_BATCHES = 4
DEFAULT_REPEATS = 21
DEFAULT_CALLS = 10
#: variant name → settings over the defaults
VARIANTS = {
    "default": {},
    "in_batch": {"iacn_negative_sampler": "in_batch"},
    "full_gradient": {"iacn_routing_stop_gradient": False},
    "select_rows=false": {"iacn_select_rows": False},
    "power=1": {"iacn_attention_power": 1},
}
WAYS = ("today", "fused")


# ------------------------------------------------------------------------------ timing
def time_ways(steps: dict, repeats: int, calls: int, warmup: int = 3) -> dict:
    """``{way: [ms per call, one per round]}``: thread CPU time of each ``step()`` call, the ways alternating
    in rounds of ``calls`` calls (order flipped every round). ``step`` returns a callable that does the timed
    work; what it does before returning (``zero_grad``) is not timed."""
    names = list(steps)
    for name in names:
        for _ in range(warmup):
            steps[name]()()
    rounds = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            spent = 0.0
            for _ in range(calls):
                work = steps[name]()
                started = time.thread_time()
                work()
                spent += time.thread_time() - started
            rounds[name].append(spent / calls * 1e3)
    return rounds


def summarise(case: str, variant: str, rounds: dict, extra: dict) -> dict:
    """One table row from the rounds of today's and the fused way."""
    today, fused = rounds["today"], rounds["fused"]
    per_round = [t / f for t, f in zip(today, fused)]
    return {
        "case": case, "variant": variant, "today_ms": statistics.median(today), "fused_ms": statistics.median(fused),
        "ratio": statistics.median(today) / statistics.median(fused),
        "round_ratio_median": statistics.median(per_round),
        "round_ratio_min": min(per_round), "round_ratio_max": max(per_round),
        "fused_won": sum(r > 1 for r in per_round), "rounds": len(per_round), **extra,
    }


# ------------------------------------------------------------------------------ equality
def gradient_difference(model, loss_of: Callable, seed: int = 0) -> tuple[float, float, int]:
    """``(|Δ loss|, max relative gradient difference, parameters compared)`` between today's and the fused
    loss of a float64 copy of ``model``, under the same seed (same negatives). The relative difference of a
    parameter is ``max|g_today − g_fused| / max|g_today|``."""
    import torch

    twin = copy.deepcopy(model).double()
    results = []
    for fused in (False, True):
        twin.iacn.fused_loss = fused
        twin.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        loss = loss_of(twin)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in twin.named_parameters() if p.grad is not None}))
    (today, today_grads), (fused, fused_grads) = results
    if today_grads.keys() != fused_grads.keys():
        raise AssertionError(f"the two ways give gradients to different parameters: {sorted(today_grads)} vs "
                             f"{sorted(fused_grads)}")
    worst = 0.0
    for name, grad in today_grads.items():
        scale = float(grad.abs().max())
        worst = max(worst, float((grad - fused_grads[name]).abs().max()) / (scale if scale > 0 else 1.0))
    return float((today - fused).abs()), worst, len(today_grads)


# ------------------------------------------------------------------------------ cases
def loss_steps(model, batches: list) -> dict:
    """``{way: step}`` for ``IaCN.loss`` + backward over the batches in turn."""
    cycle = {"i": 0}

    def step_for(fused: bool):
        def step():
            model.iacn.fused_loss = fused
            model.zero_grad(set_to_none=True)
            batch = batches[cycle["i"] % len(batches)]
            cycle["i"] += 1
            return lambda: model.iacn.loss(batch).backward()

        return step

    return {"today": step_for(False), "fused": step_for(True)}


def training_loss(model, batch):
    losses = model.calculate_loss(batch)
    return sum(losses) if isinstance(losses, tuple) else losses


def step_steps(model, batches: list, host=None) -> dict:
    """``{way: step}`` for the model's whole training loss + backward (``host``: the host alone as a third)."""
    cycle = {"i": 0}

    def step_for(net, fused: Optional[bool]):
        def step():
            if fused is not None:
                net.iacn.fused_loss = fused
            net.zero_grad(set_to_none=True)
            batch = batches[cycle["i"] % len(batches)]
            cycle["i"] += 1
            return lambda: training_loss(net, batch).backward()

        return step

    steps = {"today": step_for(model, False), "fused": step_for(model, True)}
    if host is not None:
        steps["host"] = step_for(host, None)
    return steps


def build(prepared, settings: dict):
    """The model of ``prepared`` with ``settings`` over its config, in training mode, seeded."""
    import torch

    config = prepared.config
    saved = {key: config[key] for key in settings}
    for key, value in settings.items():
        config[key] = value
    try:
        torch.manual_seed(common.FIRST_SEED)
        model = prepared.model_class(config, prepared.train_data._dataset)
    finally:
        for key, value in saved.items():
            config[key] = value
    return model.train()


def host_model(prepared, model_name: str, overrides: dict):
    """``X`` for ``X_IaCN`` on the same data and settings."""
    import torch

    from recbole_iacn.pipeline import make_config

    host = model_name[: -len("_IaCN")]
    config, _, host_class = make_config(host, DATASET, config_dict=overrides)
    torch.manual_seed(common.FIRST_SEED)
    return host_class(config, prepared.train_data._dataset).train()


def rows_reaching_loss(iacn, batches) -> float:
    s = iacn.schema
    return statistics.mean(float(((b[s.label_field] > 0.5) & (b[s.history_length_field] > 0)).sum()) for b in batches)


# ------------------------------------------------------------------------------ output
def results_markdown(rows: Sequence[dict], facts: dict, command: str, info: dict) -> str:
    text = common.markdown_header("IaCN loss: today's autograd ops vs the fused autograd Functions", command, info)
    text += "\n" + "\n".join(f"- {key}: {value}" for key, value in facts.items()) + "\n"
    text += ("\nEach row: CPU ms per call of the thread (median over rounds of the mean per call), the two ways "
             "alternating in the same run; ratio = today ÷ fused (> 1: fused is faster); per-round ratios: "
             "median [min, max], and the rounds fused won. |Δ loss| and max rel. Δ grad: float64 copies of the "
             "model, the same seed, over every parameter with a gradient.\n\n")
    body = []
    for r in rows:
        host = f"{r['host_ms']:.2f}" if r.get("host_ms") is not None else ""
        ratios = (f"{r['today_ms'] / r['host_ms']:.2f} → {r['fused_ms'] / r['host_ms']:.2f}"
                  if r.get("host_ms") else "")
        body.append([r["case"], r["variant"], f"{r['today_ms']:.2f}", f"{r['fused_ms']:.2f}", f"{r['ratio']:.3f}",
                     f"{r['round_ratio_median']:.3f} [{r['round_ratio_min']:.2f}, {r['round_ratio_max']:.2f}]",
                     f"{r['fused_won']}/{r['rounds']}", host, ratios, f"{r['loss_diff']:.1e}",
                     f"{r['grad_rel_diff']:.1e} ({r['parameters']})"])
    return text + common.markdown_table(
        ["case", "variant", "today ms", "fused ms", "today ÷ fused", "per round", "fused won", "host ms",
         "X_IaCN ÷ X (today → fused)", "|Δ loss|", "max rel. Δ grad (params)"], body)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Time the IaCN loss (forward + backward): today's vs the fused one.")
    p.add_argument("--model", default=DEFAULT_MODEL, help="an X_IaCN model (default WideDeep_IaCN)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--no-step", action="store_true", help="skip the whole-training-loss case")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--batches", type=int, default=DEFAULT_BATCHES, help="training batches the calls cycle through")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="rounds (each way once per round)")
    p.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="calls per way and round")
    return common.add_common_arguments(p, NAME, device=False, threads=1)


def cpu_run_setup(args, argv, name: str):
    """``(out folder, command line, config overrides)`` of a CPU timing run on ml-100k at ``args.threads``
    torch threads and ``args.batch_size``, the dataset ensured."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else common.default_out_dir(name) / name
    command = common.command_line(None if argv is None else [sys.argv[0], *argv])
    common.ensure_dataset(DATASET, args.data_path)
    overrides = {**common.QUIET, **common.device_config("cpu"), "data_path": args.data_path,
                 "train_batch_size": args.batch_size, "seed": common.FIRST_SEED,
                 **common.parse_overrides(args.config_dict)}
    return out, command, overrides


def main(argv: Optional[Sequence[str]] = None) -> dict:
    import torch

    from recbole_iacn.pipeline import prepare

    args = build_parser().parse_args(argv)
    if not args.model.endswith("_IaCN"):
        raise SystemExit(f"--model must be an X_IaCN model, got {args.model!r}.")
    out, command, overrides = cpu_run_setup(args, argv, NAME)
    prepared = prepare(args.model, DATASET, config_dict=overrides)
    batches = []
    for batch in prepared.train_data:
        batches.append(batch)
        if len(batches) == args.batches:
            break
    info = common.machine_info("cpu")
    rows = []
    for variant in args.variants:
        model = build(prepared, VARIANTS[variant])
        loss_diff, grad_diff, count = gradient_difference(model, lambda m: m.iacn.loss(batches[0]))
        rounds = time_ways(loss_steps(model, batches), args.repeats, args.calls)
        rows.append(summarise("loss", variant, rounds, {"loss_diff": loss_diff, "grad_rel_diff": grad_diff,
                                                         "parameters": count}))
        print(rows[-1], flush=True)
    if not args.no_step:
        model = build(prepared, {})
        loss_diff, grad_diff, count = gradient_difference(model, lambda m: training_loss(m, batches[0]))
        rounds = time_ways(step_steps(model, batches, host_model(prepared, args.model, overrides)), args.repeats,
                           args.calls)
        rows.append(summarise(f"step ({args.model})", "default", rounds, {
            "host_ms": statistics.median(rounds["host"]), "loss_diff": loss_diff, "grad_rel_diff": grad_diff,
            "parameters": count}))
        print(rows[-1], flush=True)
    config = prepared.config
    facts = {
        "data": f"{DATASET}, the first {len(batches)} training batches of {args.batch_size} samples; "
                f"{rows_reaching_loss(model.iacn, batches):.0f} rows per batch reach the loss on average",
        "settings": ", ".join(f"{k}={config[k]}" for k in (
            "MAX_ITEM_LIST_LENGTH", "iacn_embedding_size", "iacn_max_interests", "iacn_routing_iterations",
            "iacn_num_negatives", "iacn_negative_sampler", "iacn_attention_power", "iacn_routing_stop_gradient",
            "iacn_select_rows", "iacn_mlp_hidden_size")),
        "timing": f"{args.repeats} rounds x {args.calls} calls per way, torch threads {torch.get_num_threads()}, "
                  "time.thread_time",
    }
    return common.write_results(out, "results", rows, results_markdown(rows, facts, command, info),
                                common.header_lines(command, info))


if __name__ == "__main__":
    common.run_main(main)
