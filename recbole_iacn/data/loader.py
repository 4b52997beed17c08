"""Device-resident data loaders: each split's columns become tensors once, a batch is an index slice.

RecBole's ``TrainDataLoader`` and ``NegSampleEvalDataLoader`` build every batch on the host: the torch
``DataLoader`` machinery hands a Python list of row numbers to ``collate_fn``, ``Interaction.__getitem__``
turns it back into a list to index each column, ``Dataset.join`` looks the user and item features up,
and the trainer then copies the batch to the device. Here that work is done once per split:

* :class:`SplitColumns` holds every field a batch carries (the split's own columns joined with the user
  and item features, exactly as ``Dataset.__getitem__`` joins them) as one tensor per field, ``[N, ...]``,
  on the training device when it fits there, otherwise in (pinned, when training on CUDA) host memory;
* :class:`TensorTrainLoader` yields batches of a permutation drawn on the columns' device by a seeded
  generator (a new permutation per epoch), :class:`TensorEvalLoader` contiguous slices in row order.

Both are accepted by RecBole's ``Trainer`` as its own loaders are (length, iteration, ``_dataset``; eval
batches are ``(interaction, None, None, None)`` as from ``NegSampleEvalDataLoader`` without negative
sampling), so training, evaluation, early stopping and checkpoints are RecBole's. ``data_loader: recbole``
keeps RecBole's loaders; :func:`recbole_iacn.pipeline.build_loaders` builds either.
"""

from __future__ import annotations

import math
from logging import getLogger
from typing import Iterator, Optional

import torch
from recbole.data.interaction import Interaction


# ------------------------------------------------------------------------------ columns
def columns_nbytes(columns: dict[str, torch.Tensor]) -> int:
    return sum(c.numel() * c.element_size() for c in columns.values())


def storage_device(nbytes: int, device: torch.device, fraction: float) -> torch.device:
    """Where ``nbytes`` of columns live: ``device`` when it is the host, or when they take at most
    ``fraction`` of its free memory; the host otherwise (logged, with the figures)."""
    device = torch.device(device)
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if nbytes <= fraction * free:
            return device
        getLogger().warning(
            f"data_loader tensor: the data takes {nbytes / 2**20:,.0f} MiB, more than "
            f"data_device_memory_fraction={fraction:g} of the {free / 2**20:,.0f} MiB free on {device}: it "
            "stays in pinned host memory and each batch is copied to the device."
        )
        return torch.device("cpu")
    return device if fraction > 0 else torch.device("cpu")


class SplitColumns:
    """Every field of one split's batches, one tensor ``[N, ...]`` per field, on one device.

    Args:
        dataset: a built RecBole ``Dataset`` (one split): its ``inter_feat`` rows, each joined with its
            user's and item's features (``Dataset.__getitem__``), are what a batch holds.
        device: the training device batches are delivered to.
        fraction: the largest share of ``device``'s free memory the columns may take (see
            :func:`storage_device`).
    """

    def __init__(self, dataset, device, fraction: float = 1.0):
        self.device = torch.device(device)
        columns = dataset[0 : len(dataset)].interaction  # views of inter_feat, joined as RecBole joins per batch
        self.home = storage_device(columns_nbytes(columns), self.device, fraction)
        self.columns = {name: self._place(column) for name, column in columns.items()}
        self.num_rows = len(dataset)

    def _place(self, column: torch.Tensor) -> torch.Tensor:
        if self.home.type != "cpu":
            return column.to(self.home)
        column = column.contiguous()
        if self.device.type == "cuda":
            try:
                return column.pin_memory()
            except RuntimeError as exc:  # e.g. the locked-memory limit
                getLogger().warning(f"data_loader tensor: cannot pin host memory ({exc}); batches copy from pageable memory.")
        return column

    @property
    def nbytes(self) -> int:
        return columns_nbytes(self.columns)

    def __len__(self) -> int:
        return self.num_rows

    def rows(self, index: torch.Tensor) -> Interaction:
        """The rows ``index`` (``[B]``, int64 on :attr:`home`) as an Interaction on :attr:`device`."""
        return Interaction({name: self._deliver(column, index) for name, column in self.columns.items()})

    def span(self, start: int, stop: int) -> Interaction:
        """Rows ``start:stop`` in storage order (views of the columns where they already are on the device)."""
        return Interaction({name: self._deliver(column[start:stop]) for name, column in self.columns.items()})

    def _deliver(self, column: torch.Tensor, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.home == self.device:
            return column if index is None else column.index_select(0, index)
        if index is not None:  # gather on the host into pinned memory, then copy without blocking
            shape = (index.numel(), *column.shape[1:])
            out = torch.empty(shape, dtype=column.dtype, pin_memory=column.is_pinned())
            column = torch.index_select(column, 0, index, out=out)
        return column.to(self.device, non_blocking=column.is_pinned())


# ------------------------------------------------------------------------------ loaders
class TensorLoader:
    """Batches of a split's :class:`SplitColumns`, with the attributes RecBole's trainer reads.

    Args (RecBole's dataloader signature):
        config: the run's config (``device``, ``seed``, ``data_device_memory_fraction``, batch size).
        dataset: one built split (kept as ``_dataset``, as RecBole's loaders keep it).
        sampler: unused (negatives are stored in the data); accepted for RecBole's signature.
        shuffle: draw a new permutation of the rows for each epoch.
    """

    batch_size_key = "train_batch_size"

    def __init__(self, config, dataset, sampler=None, shuffle: bool = False):
        self.config = config
        self._dataset = dataset
        self._sampler = sampler
        self.shuffle = shuffle
        self.times = 1  # rows per stored sample (RecBole: 1 + sampled negatives)
        self.columns = SplitColumns(dataset, config["device"], config["data_device_memory_fraction"])
        self.generator = torch.Generator(device=self.columns.home)
        self.generator.manual_seed(config["seed"])
        self.set_batch_size(config[self.batch_size_key])

    # RecBole's loaders expose these
    @property
    def dataset(self):
        return self._dataset

    def set_batch_size(self, batch_size: int) -> None:
        self._batch_size = self.step = int(batch_size)

    def update_config(self, config) -> None:
        self.config = config
        self.set_batch_size(config[self.batch_size_key])

    def get_model(self, model) -> None:
        self.model = model

    def __len__(self) -> int:
        return math.ceil(len(self.columns) / self._batch_size)

    def order(self) -> Optional[torch.Tensor]:
        """This epoch's row order ``[N]`` on the columns' device, or None for storage order."""
        if not self.shuffle:
            return None
        return torch.randperm(len(self.columns), generator=self.generator, device=self.columns.home)

    def batches(self) -> Iterator[Interaction]:
        order, size = self.order(), self._batch_size
        for start in range(0, len(self.columns), size):
            stop = min(start + size, len(self.columns))
            if order is None:
                yield self.columns.span(start, stop)
            else:
                yield self.columns.rows(order[start:stop])

    def __iter__(self):
        return self.batches()


class TensorTrainLoader(TensorLoader):
    """Training batches of ``train_batch_size`` rows, shuffled per epoch when ``shuffle`` (RecBole's
    ``TrainDataLoader`` without negative sampling). The last batch holds the remainder."""


class TensorEvalLoader(TensorLoader):
    """Evaluation batches of ``eval_batch_size`` rows in storage order, as ``(interaction, None, None,
    None)`` like RecBole's ``NegSampleEvalDataLoader`` without negative sampling (labeled mode)."""

    batch_size_key = "eval_batch_size"

    def __init__(self, config, dataset, sampler=None, shuffle: bool = False):
        super().__init__(config, dataset, sampler, shuffle=False)

    def __iter__(self):
        return ((interaction, None, None, None) for interaction in self.batches())


def tensor_loaders(config, train, valid, test) -> tuple:
    """``(train, valid, test)`` tensor loaders of a plugin dataset's three built splits (which loaders a run
    reads is chosen by :func:`recbole_iacn.pipeline.choose_loader`)."""
    from recbole.utils import set_color

    loaders = (
        TensorTrainLoader(config, train, shuffle=config["shuffle"]),
        TensorEvalLoader(config, valid),
        TensorEvalLoader(config, test),
    )
    homes = ", ".join(f"{name} {loader.columns.nbytes / 2**20:,.1f} MiB on {loader.columns.home}"
                      for name, loader in zip(("train", "valid", "test"), loaders))
    getLogger().info(set_color("[Data loader]: ", "pink") + f"tensor ({homes})")
    return loaders
