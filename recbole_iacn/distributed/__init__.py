"""Multi-process training (DistributedDataParallel) through RecBole's own mechanism.

``run_recbole_iacn.py ... --nproc=N`` (and RecBole's ``--world_size``, ``--ip``, ``--port``,
``--group_offset``) start ``N`` processes with ``torch.multiprocessing`` spawn, as RecBole's
``quick_start.run`` does (:func:`recbole_iacn.pipeline.run` calls the launcher); each gets ``local_rank`` and
joins a process group (NCCL on GPUs, gloo on CPU), RecBole's dataloaders give every rank a disjoint shard
(``DistributedSampler``), and the trainer wraps the model in ``DistributedDataParallel``.

Modules: :mod:`.settings` (the settings, their checks, the process group each rank joins at its entry;
no torch import at module import), :mod:`.launcher` (spawn, wait, stop every rank when one fails or the
launcher is stopped), :mod:`.gather` (exact evaluation: every rank's predictions gathered, padding
dropped), :mod:`.trainer` (the trainer mixins that use them), :mod:`.processes` (ranks that cannot outlive
their launcher; finding the processes a run left).
"""

from recbole_iacn.distributed.settings import SETTING_KEYS, DistributedSettings, pop_settings

__all__ = ["SETTING_KEYS", "DistributedSettings", "pop_settings"]
