"""Exact evaluation across processes: every rank's predictions gathered, each test row counted once.

RecBole's multi-process evaluation computes the metrics on each rank's shard and averages them
(weighted by shard size), which is not the AUC of the whole set. Here each rank's collected rows
(``rec.score`` and ``data.label`` for AUC/LogLoss; ``rec.topk``, ``rec.meanrank``, ``rec.items`` for
ranking metrics) are all-gathered together with the dataset positions they came from, rows that
``DistributedSampler`` repeated to even out the shards are dropped, and the rest are put back in
dataset order, so every rank computes the metrics of one process on the same rows in the same order.
"""

from __future__ import annotations

from typing import List, Sequence

import torch

#: The collector's per-row entries (one row per evaluated sample) that are gathered.
ROW_KEYS = ("rec.score", "data.label", "rec.topk", "rec.meanrank", "rec.items")


def all_gather_rows(tensor: torch.Tensor, device=None) -> List[torch.Tensor]:
    """Every rank's ``tensor`` ``[n_r, ...]`` (``n_r`` may differ between ranks; trailing dimensions
    and dtype must agree) → list of ``world_size`` tensors, on ``tensor``'s device.

    ``device`` is where the collective runs (CUDA for NCCL; default: the tensor's own).
    """
    import torch.distributed as dist

    home = tensor.device
    work = tensor.to(device or home).contiguous()
    world = dist.get_world_size()
    size = torch.tensor([work.shape[0]], dtype=torch.long, device=work.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    longest = max(sizes)
    if work.shape[0] < longest:  # all_gather needs equal shapes: pad, then trim
        pad = work.new_zeros((longest - work.shape[0], *work.shape[1:]))
        work = torch.cat([work, pad])
    parts = [torch.empty_like(work) for _ in range(world)]
    dist.all_gather(parts, work)
    return [part[:n].to(home) for part, n in zip(parts, sizes)]


def first_occurrences(positions: torch.Tensor) -> torch.Tensor:
    """Indices into ``positions`` ``[N]`` that keep each position once (its first occurrence), in
    ascending order of position → ``[U]``."""
    order = torch.argsort(positions, stable=True)
    ordered = positions[order]
    keep = torch.ones_like(ordered, dtype=torch.bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return order[keep]


def gather_rows(struct, positions: Sequence[int], device=None) -> bool:
    """Replace the per-row entries of RecBole's ``DataStruct`` by those of all ranks, in dataset order,
    each position once. ``positions`` are this rank's dataset positions, one per collected row, in
    the order the rows were collected. Returns False (and changes nothing) when the rows do not match
    the positions one to one, e.g. samples that yield several rows."""
    local = torch.as_tensor(list(positions), dtype=torch.long)
    keys = [k for k in ROW_KEYS if k in struct]
    lengths_match = all(struct[k].shape[0] == len(local) for k in keys)
    import torch.distributed as dist

    agreed = torch.tensor([1 if lengths_match else 0], device=device)
    dist.all_reduce(agreed, op=dist.ReduceOp.MIN)  # every rank takes the same path
    if not bool(agreed.item()):
        return False
    everyone = torch.cat(all_gather_rows(local, device))
    keep = first_occurrences(everyone)
    for key in keys:
        rows = torch.cat(all_gather_rows(struct[key], device))
        struct.set(key, rows[keep])
    return True
