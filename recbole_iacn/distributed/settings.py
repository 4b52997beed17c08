"""The multi-process settings (RecBole's names), their checks, and each rank's device and process group.

``nproc`` processes run on this machine; ``world_size`` (default ``nproc``) is the number of processes
on all machines together; the processes meet at ``ip:port`` (``tcp://`` rendezvous, hosted by global
rank 0); ``group_offset`` is the global rank of this machine's first process (0 on the machine that
hosts rank 0). The settings arrive as keyword arguments of :func:`recbole_iacn.quick_start.run` or as
ordinary config overrides (``--nproc=2`` on the command line).
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import asdict, dataclass

from recbole_iacn.errors import ConfigError
from recbole_iacn.settings import uses_gpu

#: The settings as the user writes them (``--group_offset``; RecBole's config calls it ``offset``).
SETTING_KEYS = ("nproc", "world_size", "ip", "port", "group_offset")
#: Seconds a rank waits at the rendezvous and in a collective before it gives up (torch's default).
DEFAULT_TIMEOUT_S = 1800


@dataclass(frozen=True)
class DistributedSettings:
    """How many processes train, where they meet; RecBole's ``run`` defaults."""

    nproc: int = 1
    world_size: int = -1
    ip: str = "localhost"
    port: int = 5678
    group_offset: int = 0

    @property
    def enabled(self) -> bool:
        """More than one process in all (RecBole's rule: ``nproc > 1`` or a ``world_size``)."""
        return self.nproc > 1 or self.world_size > 0

    @property
    def total(self) -> int:
        """Processes on all machines."""
        return self.world_size if self.world_size > 0 else self.nproc

    def rank_config(self) -> dict:
        """Config keys every rank gets (RecBole's names; ``local_rank`` is added per rank)."""
        return {"nproc": self.nproc, "world_size": self.total, "ip": self.ip, "port": self.port,
                "offset": self.group_offset}

    def check(self) -> None:
        """Types and ranges, as one clear :class:`ConfigError`."""
        from recbole_iacn import settings

        for name in SETTING_KEYS:  # each value against its declaration
            settings.check(name, getattr(self, name), where="--" + name)
        if self.world_size == 0:
            raise ConfigError("--world_size=0 is not valid: it takes a whole number >= 1 (the processes on all "
                              "machines together), or -1 for --nproc.")
        if self.group_offset + self.nproc > self.total:
            raise ConfigError(
                f"--group_offset={self.group_offset} with --nproc={self.nproc} needs ranks up to "
                f"{self.group_offset + self.nproc - 1}, but --world_size={self.total} has ranks 0 to "
                f"{self.total - 1}. On each machine, group_offset is the number of processes started on "
                "the machines before it."
            )


def pop_settings(config_dict: dict | None, **explicit) -> tuple:
    """``(settings, rest)``: the settings from keyword arguments (when not None) or else from
    ``config_dict``, checked (their one check in a run: :func:`recbole_iacn.settings.check_overrides` leaves
    them to this), and a copy of ``config_dict`` without them."""
    unknown = sorted(set(explicit) - set(SETTING_KEYS))
    if unknown:
        raise TypeError(f"unexpected multi-process setting(s) {', '.join(unknown)}; they are {', '.join(SETTING_KEYS)}")
    rest = dict(config_dict or {})
    values = {}
    for key in SETTING_KEYS:
        from_config = rest.pop(key, None)
        value = explicit.get(key)
        values[key] = value if value is not None else from_config
    defaults = asdict(DistributedSettings())
    settings = DistributedSettings(**{k: (defaults[k] if v is None else v) for k, v in values.items()})
    if isinstance(settings.port, str) and settings.port.isdigit():  # RecBole's default is the string "5678"
        settings = DistributedSettings(**{**asdict(settings), "port": int(settings.port)})
    settings.check()
    return settings, rest


# ------------------------------------------------------------------------------ checks before spawning
def check_gpus(settings: DistributedSettings, values) -> None:
    """On GPUs every local process needs a GPU of its own among ``gpu_id``."""
    if not uses_gpu(values):
        return
    import torch

    listed = [g for g in str(values["gpu_id"]).split(",") if g.strip()]
    usable = min(len(listed), torch.cuda.device_count())
    if settings.nproc > usable:
        raise ConfigError(
            f"--nproc={settings.nproc} starts {settings.nproc} processes on GPUs, one GPU each, but only "
            f"{usable} GPU(s) can be used (gpu_id={values['gpu_id']!r}, {torch.cuda.device_count()} visible). "
            f"List one GPU per process, e.g. --gpu_id='{','.join(str(i) for i in range(settings.nproc))}', "
            f"lower --nproc, or train on CPU processes with --use_gpu=false."
        )


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_cpus(settings: DistributedSettings, values) -> None:
    """On CPUs every local process needs a core of its own: more ranks than cores only share them (and each
    holds the dataset in memory), so ``--nproc=1000`` would exhaust the machine instead of training."""
    if uses_gpu(values):
        return
    cores = available_cores()
    if settings.nproc > cores:
        raise ConfigError(
            f"--nproc={settings.nproc} starts {settings.nproc} CPU processes, but this machine lets this run use "
            f"{cores} CPU core(s); more processes than cores only share them, and each holds the dataset in "
            f"memory. Use --nproc={cores} or fewer (or GPUs, one per process)."
        )


def check_port(settings: DistributedSettings) -> None:
    """On the machine of rank 0 (``group_offset`` 0), ``ip:port`` must be free and local."""
    if settings.group_offset != 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(settings.ip, settings.port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"--ip={settings.ip!r} cannot be resolved ({exc.strerror}); give the host name or "
                          "address of the machine that runs rank 0.") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as torch's store: TIME_WAIT is fine
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"Port {settings.port} on {settings.ip} is already in use, so the {settings.total} processes "
                    "cannot meet there (rank 0 listens on it for the others). Choose a free port with --port=N, "
                    "or stop the program that holds it (another multi-process run?)."
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(
                    f"--ip={settings.ip} is not an address of this machine, but with --group_offset=0 this "
                    "machine runs rank 0, which listens at --ip:--port for the other processes. Give one of "
                    "this machine's addresses, or the right --group_offset on the other machines."
                ) from None
            raise ConfigError(f"Cannot listen on {settings.ip}:{settings.port}: {exc.strerror}.") from None


# ------------------------------------------------------------------------------ in each rank
def process_group(settings: DistributedSettings, values) -> dict:
    """What every rank needs to join the process group, worked out once in the launcher from ``settings``
    and the run's config ``values`` (its ``gpu_id``, ``use_gpu`` and ``dist_timeout``): plain values that
    travel to the spawned ranks."""
    gpu_id = values["gpu_id"]
    gpu = uses_gpu(values)
    return {
        "gpu_id": ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id),
        "gpu": gpu,
        "backend": "nccl" if gpu else "gloo",
        "offset": settings.group_offset,
        "world_size": settings.total,
        "init_method": f"tcp://{settings.ip}:{settings.port}",
        "timeout_s": int(values["dist_timeout"] or DEFAULT_TIMEOUT_S),
    }


def join_process_group(group: dict, local_rank: int) -> None:
    """At a rank's entry: join the process group (NCCL on GPUs, gloo on CPU) as global rank
    ``local_rank + offset``; on GPUs, local rank ``i`` takes GPU ``i`` of ``gpu_id`` first. ``group`` is
    :func:`process_group`'s. The rank's config then only records the device
    (:func:`recbole_iacn.config.rank_device`)."""
    import datetime

    import torch
    import torch.distributed as dist

    os.environ["CUDA_VISIBLE_DEVICES"] = group["gpu_id"]
    if group["gpu"]:  # NCCL: one GPU per process, chosen before the group forms (not testable without GPUs)
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(
            backend=group["backend"],
            rank=local_rank + int(group["offset"] or 0),
            world_size=int(group["world_size"]),
            init_method=group["init_method"],
            timeout=datetime.timedelta(seconds=int(group["timeout_s"])),
        )
