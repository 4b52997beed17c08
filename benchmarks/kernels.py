"""The implementation choices inside the models, each timed against the plain PyTorch way in one run.

Every case times forward + backward (or one optimizer step) of the same computation written two ways,
on tensors shaped like a 1024-sample ml-100k training batch (about 512 positives reach the IaCN loss;
L = 20 behaviours, K = 4 interests, h = 18, 1,683 items), and prints the ratio plain ÷ ours, the
absolute times and the machine. Both ways give the same values (checked before timing).

Cases:

* ``embedding``: :class:`recbole_iacn.model.embedding.Embedding` (CPU backward: one ``index_add_``)
  against ``nn.Embedding`` (``embedding_dense_backward``), for the capsule network's lookup (512 x 31
  ids) and a host's (1024 x 21).
* ``batched_dot``: the broadcast product-and-sum against ``einsum`` for label-aware attention
  (K = 4) and the sampled softmax (10 negatives).
* ``routing``: dynamic routing refined without gradient (``iacn_routing_stop_gradient: true``, MIND's
  and ComiRec's code) against backpropagating through every iteration.
* ``adam``: torch's fused Adam against the per-parameter loop RecBole builds, on DIN_IaCN's parameter
  shapes.

Usage::

    python benchmarks/kernels.py                 # all cases, torch's default threads
    python benchmarks/kernels.py --threads 1 --cases embedding routing
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

CASES = ("embedding", "batched_dot", "routing", "adam")
NUM_ITEMS = 1683  # ml-100k
DIM = 18
POSITIVES = 512
BATCH = 1024
LENGTH = 20
INTERESTS = 4
NEGATIVES = 10
ITERATIONS = 3
DEFAULT_REPEATS = 7
DEFAULT_CALLS = 50
#: DIN_IaCN's parameter shapes on ml-100k with the default settings (read off the model).
DIN_IACN_SHAPES = (
    (1683, 18), (18, 18), (883, 8), (36, 18), (36,), (36, 32), (18, 36), (18,), (1683, 18), (20, 18), (1827, 18),
    (80, 216), (80,), (40, 80), (40,), (1, 40), (1,), (200, 306), (200,), (200,), (80, 200), (80,), (80,), (1, 80),
    (1,),
)


def time_call(fn: Callable[[], object], repeats: int, calls: int) -> float:
    """Median over ``repeats`` of the mean seconds per call over ``calls`` calls (after a warm-up)."""
    for _ in range(max(2, calls // 5)):
        fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - started) / calls)
    return statistics.median(samples)


def _pair(name: str, shape: str, plain: Callable, ours: Callable, repeats: int, calls: int) -> dict:
    plain_s, ours_s = time_call(plain, repeats, calls), time_call(ours, repeats, calls)
    return {"case": name, "shape": shape, "plain_us": plain_s * 1e6, "ours_us": ours_s * 1e6,
            "ratio": plain_s / ours_s}


# ------------------------------------------------------------------------------ cases
def embedding_cases(repeats: int, calls: int) -> list[dict]:
    import torch
    from torch import nn

    from recbole_iacn.model.embedding import Embedding

    rows = []
    for label, shape in (("capsule lookup", (POSITIVES, LENGTH + 1 + NEGATIVES)), ("host lookup", (BATCH, LENGTH + 1))):
        ours = Embedding(NUM_ITEMS, DIM, padding_idx=0)
        plain = nn.Embedding(NUM_ITEMS, DIM, padding_idx=0)
        plain.load_state_dict(ours.state_dict())
        ids = torch.randint(0, NUM_ITEMS, shape)
        upstream = torch.randn(*shape, DIM)

        def step(table):
            table.weight.grad = None
            table(ids).backward(upstream)
            return table.weight.grad

        assert torch.allclose(step(ours), step(plain), atol=1e-5)
        rows.append(_pair(f"embedding fwd+bwd, {label}", f"{shape[0]}x{shape[1]} ids, {NUM_ITEMS}x{DIM} table",
                          lambda: step(plain), lambda: step(ours), repeats, calls))
    return rows


def batched_dot_cases(repeats: int, calls: int) -> list[dict]:
    import torch

    from recbole_iacn.model.iacn import batched_dot

    rows = []
    for label, n in (("label-aware attention", INTERESTS), ("sampled softmax", NEGATIVES)):
        vectors = torch.randn(POSITIVES, n, DIM, requires_grad=True)
        query = torch.randn(POSITIVES, DIM, requires_grad=True)
        upstream = torch.randn(POSITIVES, n)
        assert torch.allclose(batched_dot(vectors, query), torch.einsum("bnh,bh->bn", vectors, query), atol=1e-5)
        rows.append(_pair(f"batched dot fwd+bwd, {label}", f"[{POSITIVES},{n},{DIM}]·[{POSITIVES},{DIM}]",
                          lambda: torch.einsum("bnh,bh->bn", vectors, query).backward(upstream),
                          lambda: batched_dot(vectors, query).backward(upstream), repeats, calls))
    return rows


def routing_cases(repeats: int, calls: int) -> list[dict]:
    import torch

    from recbole_iacn.model.iacn import BehaviourToInterestRouting, interest_counts

    lengths = torch.randint(1, LENGTH + 1, (POSITIVES,))
    mask = torch.arange(LENGTH) < lengths.unsqueeze(-1)
    counts = interest_counts(lengths, INTERESTS)
    behaviours = torch.randn(POSITIVES, LENGTH, DIM, requires_grad=True)
    upstream = torch.randn(POSITIVES, INTERESTS, DIM)
    routings = {}
    for stop in (False, True):
        torch.manual_seed(0)
        routings[stop] = BehaviourToInterestRouting(DIM, INTERESTS, ITERATIONS, LENGTH, seed=0, stop_gradient=stop)
    assert torch.allclose(routings[True](behaviours, mask, counts)[0], routings[False](behaviours, mask, counts)[0],
                          atol=1e-5)

    def step(routing):
        routing(behaviours, mask, counts)[0].backward(upstream)

    return [_pair("dynamic routing fwd+bwd, gradient through every iteration vs stop-gradient refinement",
                  f"[{POSITIVES},{LENGTH},{DIM}], K={INTERESTS}, {ITERATIONS} iterations",
                  lambda: step(routings[False]), lambda: step(routings[True]), repeats, calls)]


def adam_cases(repeats: int, calls: int) -> list[dict]:
    import torch

    def parameters():
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s)) for s in DIN_IACN_SHAPES]
        for p in params:
            p.grad = torch.randn_like(p)
        return params

    plain_params, fused_params = parameters(), parameters()
    plain = torch.optim.Adam(plain_params, lr=1e-3)  # what RecBole's Trainer builds
    fused = torch.optim.Adam(fused_params, lr=1e-3, fused=True)
    plain.step()
    fused.step()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain_params, fused_params))
    total = sum(p.numel() for p in plain_params)
    return [_pair("Adam step, RecBole's per-parameter loop vs fused", f"{len(DIN_IACN_SHAPES)} tensors, {total:,} values",
                  plain.step, fused.step, repeats, calls)]


RUNNERS = {"embedding": embedding_cases, "batched_dot": batched_dot_cases, "routing": routing_cases,
           "adam": adam_cases}


# ------------------------------------------------------------------------------ output
def results_markdown(rows: Sequence[dict], command: str, info: dict) -> str:
    text = common.markdown_header("recbole-iacn kernels: plain PyTorch vs the models' choices", command, info)
    text += ("\nEach row: the same computation written the plain way and the way the models do it, "
             "median over repeats of the mean time per call, measured in this run; ratio = plain ÷ ours "
             "(> 1: ours is faster).\n\n")
    body = [[r["case"], r["shape"], f"{r['plain_us']:,.1f}", f"{r['ours_us']:,.1f}", f"{r['ratio']:.2f}"] for r in rows]
    return text + common.markdown_table(["case", "shape", "plain µs", "ours µs", "plain ÷ ours"], body)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Time the models' implementation choices against plain PyTorch.")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    p.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="calls per timed repeat")
    return common.add_common_arguments(p, "kernels", data=False, device=False, overrides=False)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    import torch

    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else common.default_out_dir("kernels") / "kernels"
    command = common.command_line(None if argv is None else [sys.argv[0], *argv])
    info = common.machine_info("cpu")
    rows = []
    for case in args.cases:
        rows += RUNNERS[case](args.repeats, args.calls)
    return common.write_results(out, "kernels", rows, results_markdown(rows, command, info),
                                common.header_lines(command, info))


if __name__ == "__main__":
    common.run_main(main)
