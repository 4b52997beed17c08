"""Trainer pieces for multi-process runs (no-ops in one process); :func:`recbole_iacn.trainer.trainer_class`
mixes them into RecBole's trainers.

* :class:`DistributedModelInit` takes the place of RecBole's ``AbstractTrainer.__init__``, which wraps
  the model for NCCL only (``device_ids=[local_rank]``, ``SyncBatchNorm``); on CPU processes (gloo) DDP
  needs ``device_ids=None`` and batch norm stays per rank.
* :class:`DistributedTrainerMixin`: one checkpoint name for all ranks, written by global rank 0 only;
  the best weights read once (by rank 0) and broadcast, so other machines need no shared folder; and
  exact metrics over all ranks' predictions (:mod:`recbole_iacn.distributed.gather`).

Unused parameters: RecBole's trainer adds ``0 * sum(parameters)`` to every loss (``sync_grad_loss``)
and prepares DDP's reducer with an empty forward (``set_reduce_hook``), so every parameter receives a
gradient in every step: IaCN with λ = 0 (no auxiliary loss) or a host that ignores some inputs needs
no ``find_unused_parameters`` (which must stay False with that empty forward).
"""

from __future__ import annotations

import torch
from recbole.evaluator import Collector
from recbole.trainer import AbstractTrainer

from recbole_iacn.distributed.gather import gather_rows


def is_distributed(config) -> bool:
    return not config["single_spec"]


def global_rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def wrap_model(model, config):
    """``DistributedDataParallel`` around ``model``: one GPU per process (NCCL), or CPU (gloo)."""
    from torch.nn.parallel import DistributedDataParallel

    if config["device"].type == "cuda":  # RecBole's wrapping (not testable without GPUs)
        return DistributedDataParallel(model, device_ids=[config["local_rank"]])
    return DistributedDataParallel(model)


def broadcast_module_state(module: torch.nn.Module, src: int = 0) -> None:
    """Copy every parameter and buffer of ``module`` from global rank ``src`` to all ranks, in place."""
    import torch.distributed as dist

    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=src)


def broadcast_object(value, src: int = 0):
    """Global rank ``src``'s ``value`` (any picklable object), on every rank."""
    import torch.distributed as dist

    holder = [value]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


class GatheringCollector(Collector):
    """RecBole's ``Collector`` whose data struct holds every rank's rows while ``positions`` (this
    rank's dataset positions of the rows being collected) is set."""

    positions = None
    device = None
    gathered = False

    def get_data_struct(self):
        struct = super().get_data_struct()
        self.gathered = self.positions is not None and gather_rows(struct, self.positions, self.device)
        return struct


class DistributedModelInit(AbstractTrainer):
    """``AbstractTrainer.__init__`` with DDP on CPU as well as GPU (placed just before
    ``AbstractTrainer`` in the trainer's MRO)."""

    def __init__(self, config, model):
        self.config = config
        self.model = model
        if is_distributed(config):
            if config["device"].type == "cuda":
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            self.distributed_model = wrap_model(self.model, config)


class DistributedTrainerMixin:
    """Checkpoints and evaluation of a multi-process run (see the module docstring)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        if is_distributed(config):
            # the file name holds the local time: ranks that started a second apart would disagree
            self.saved_model_file = broadcast_object(self.saved_model_file)
            self.eval_collector = GatheringCollector(config)

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if is_distributed(self.config) and global_rank() != 0:
            return  # rank 0 writes (RecBole's rule uses local_rank: once per machine)
        return super()._save_checkpoint(epoch, verbose=verbose, **kwargs)

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if not is_distributed(self.config) or not eval_data:
            return super().evaluate(eval_data, load_best_model, model_file, show_progress)
        if load_best_model:
            checkpoint_file = model_file or self.saved_model_file
            if global_rank() == 0:
                self._load_weights(checkpoint_file)
                self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        # every rank scores its shard with rank 0's weights and buffers: the checkpoint's. The parameters
        # agree after each step, but batch-norm running statistics (Dice, BatchNorm) are updated by each
        # rank's own batches, so a validation with each rank's own would not be what the checkpoint scores.
        broadcast_module_state(self.model)
        self.eval_collector.positions = list(iter(eval_data.sampler))
        self.eval_collector.device = self.device
        try:
            return super().evaluate(eval_data, load_best_model=False, model_file=None, show_progress=show_progress)
        finally:
            self.eval_collector.positions = None

    def _map_reduce(self, result, num_sample):
        if getattr(self.eval_collector, "gathered", False):
            return result  # already the metrics of all ranks' rows
        self.logger.warning("Evaluation rows do not match samples one to one: metrics are RecBole's "
                            "average over ranks, not exact.")
        return super()._map_reduce(result, num_sample)
