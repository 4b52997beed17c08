"""What the content routing costs in training: X_IaCN ÷ X per host at the routing before 2026-12-06 and at
today's defaults, all three measured in one process, alternating.

For each host X (DIN, DIEN, WideDeep, DAIN) on ml-100k: the first ``--batches`` training batches of
``--batch-size`` samples; three models built under the same seed: ``X``; ``X_IaCN`` with the old routing
(``iacn_routing_scale=0, iacn_routing_logit_std=1, iacn_routing_iterations=3``: MIND's form, as before
issue 28); ``X_IaCN`` at the package defaults. One step = the whole training loss + backward. The three
alternate in rounds of ``--calls`` steps (order reversed every other round), ``--repeats`` rounds, timed as
CPU time of the thread (``time.thread_time``) at ``--threads`` torch threads, so that other work on the
machine counts as little as it can. Each figure is the median over rounds of the mean per step; the
``new ÷ old`` column is the median of the per-round ratios ``(new/X) ÷ (old/X)``, with its range.

The old routing here runs on today's code, which also made it cheaper (a contiguous ``x̂ᵀ``): the ratio
is therefore against a faster "before" than the code before the change. For that code itself, run this file
from a checkout of it with ``--forms old`` (the old settings are its defaults; it ignores the keys it does not
know). Usage::

    python benchmarks/routing_cost.py --threads 1      # benchmarks/results/<date>/routing-cost/
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from benchmarks.iacn_loss import build, cpu_run_setup, host_model, time_ways, training_loss  # noqa: E402

NAME = "routing-cost"
DATASET = "ml-100k"
HOSTS = ("DIN", "DIEN", "WideDeep", "DAIN")
OLD_ROUTING = {"iacn_routing_scale": 0.0, "iacn_routing_logit_std": 1.0, "iacn_routing_iterations": 3}
#: the issue's limit: the new defaults may raise X_IaCN ÷ X by at most this factor
LIMIT = 1.10


def steps_of(models: dict, batches: list) -> dict:
    """``{name: step}`` for :func:`time_ways`: the whole training loss + backward over the batches in turn."""
    cycle = {"i": 0}

    def step_for(model):
        def step():
            model.zero_grad(set_to_none=True)
            batch = batches[cycle["i"] % len(batches)]
            cycle["i"] += 1
            return lambda: training_loss(model, batch).backward()

        return step

    return {name: step_for(model) for name, model in models.items()}


def measure(host: str, args, overrides: dict) -> dict:
    from recbole_iacn.pipeline import prepare

    model_name = f"{host}_IaCN"
    prepared = prepare(model_name, DATASET, config_dict=overrides)
    batches = []
    for batch in prepared.train_data:
        batches.append(batch)
        if len(batches) == args.batches:
            break
    forms = {"old": OLD_ROUTING, "new": {}}
    models = {"host": host_model(prepared, model_name, overrides),
              **{form: build(prepared, forms[form]) for form in args.forms}}
    rounds = time_ways(steps_of(models, batches), args.repeats, args.calls)
    row = {"host": host, "host_ms": statistics.median(rounds["host"])}
    for form in args.forms:
        row[f"{form}_ms"] = statistics.median(rounds[form])
        row[f"ratio_{form}"] = row[f"{form}_ms"] / row["host_ms"]
    if len(args.forms) == 2:
        per_round = [n / o for o, n in zip(rounds["old"], rounds["new"])]  # (new/X) ÷ (old/X), one per round
        row.update({"new_over_old": statistics.median(per_round), "new_over_old_min": min(per_round),
                    "new_over_old_max": max(per_round), "rounds_within_limit": sum(r <= LIMIT for r in per_round),
                    "rounds": len(per_round)})
    print(row, flush=True)
    return row


def results_markdown(rows: Sequence[dict], command: str, info: dict, args) -> str:
    text = common.markdown_header("What the content routing costs: X_IaCN ÷ X, old routing and new defaults",
                                  command, info)
    text += (f"\nml-100k, the first {args.batches} training batches of {args.batch_size}; one step = training loss "
             f"+ backward; CPU ms per step of the thread, median of {args.repeats} rounds × {args.calls} steps, "
             "the three models alternating. Old routing: scale 0, start std 1, 3 iterations (before issue 28), "
             "on today's code. new ÷ old: median of the per-round ratios [min, max]; the limit is "
             f"{LIMIT:.2f}.\n\n")
    columns, body = ["host X", "X ms"], [[r["host"], f"{r['host_ms']:.2f}"] for r in rows]
    for form in args.forms:
        columns += [f"X_IaCN {form} ms", f"X_IaCN ÷ X {form}"]
        for line, r in zip(body, rows):
            line += [f"{r[f'{form}_ms']:.2f}", f"{r[f'ratio_{form}']:.2f}"]
    if len(args.forms) == 2:
        columns += ["new ÷ old", f"rounds ≤ {LIMIT:.2f}"]
        for line, r in zip(body, rows):
            line += [f"{r['new_over_old']:.3f} [{r['new_over_old_min']:.2f}, {r['new_over_old_max']:.2f}]",
                     f"{r['rounds_within_limit']}/{r['rounds']}"]
    return text + common.markdown_table(columns, body)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="X_IaCN ÷ X per host at the old routing and at the new defaults.")
    p.add_argument("--hosts", nargs="+", default=list(HOSTS), choices=HOSTS)
    p.add_argument("--forms", nargs="+", default=["old", "new"], choices=["old", "new"],
                   help="which X_IaCN to time beside X (old alone also runs on a checkout from before the change, "
                        "where it is that checkout's defaults)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--batches", type=int, default=4, help="training batches the steps cycle through")
    p.add_argument("--repeats", type=int, default=15, help="rounds (each model once per round)")
    p.add_argument("--calls", type=int, default=5, help="steps per model and round")
    return common.add_common_arguments(p, NAME, device=False, threads=1)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    out, command, overrides = cpu_run_setup(args, argv, NAME)
    args.forms = list(dict.fromkeys(args.forms))
    rows = [measure(host, args, overrides) for host in args.hosts]
    info = common.machine_info("cpu")
    return common.write_results(out, "results", rows, results_markdown(rows, command, info, args),
                                common.header_lines(command, info))


if __name__ == "__main__":
    common.run_main(main)
