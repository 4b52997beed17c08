"""Safe checkpoints: tensors and plain data only, loaded with ``torch.load(weights_only=True)``.

RecBole's trainer pickles its ``Config`` into the checkpoint and reloads it with ``torch.load``, which
torch >= 2.6 refuses by default, and which could run code from an untrusted file. Here the config is
stored as a plain dict and the model's feature schema as plain data, so loading a checkpoint cannot
run code. :class:`SafeCheckpointMixin` is mixed into the trainers by :mod:`recbole_iacn.trainer`.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from typing import Any, Mapping

import numpy as np

CHECKPOINT_FORMAT = "recbole-iacn/1"
REQUIRED_KEYS = ("model", "config", "state_dict")
#: suffix of the temporary file a checkpoint is written to before it is renamed into place
TEMP_SUFFIX = ".partial"
#: ``.<file>.w<pid>@<host>.<random>.partial``: the temporary file of a checkpoint write
_TEMP_NAME = re.compile(r"^\..+\.w(?P<pid>\d+)@(?P<host>.+)\.[^.]+" + re.escape(TEMP_SUFFIX) + "$")
#: a temporary file without the writer's process id (written before it was named) older than this is stale
LEGACY_TEMP_AGE = 3600.0


def to_plain(value: Any) -> Any:
    """Convert a config value to plain data that ``torch.load(weights_only=True)`` accepts.

    Enums become their names, devices and other objects their ``str``; containers are converted
    recursively. Plain data (None, bool, int, float, str, lists, dicts) passes unchanged.
    """
    from enum import Enum

    import torch

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_plain(v) for v in value]
    return str(value)


#: entry holding :func:`content_digest` of every other entry
DIGEST_KEY = "digest"


def content_digest(state: Mapping) -> str:
    """``sha256:<hex>`` of a checkpoint's content: every entry but :data:`DIGEST_KEY`, tensors by dtype, shape
    and bytes, plain data by type and value, in key order. The zip container torch writes checks no sums
    of its own, so without it flipped bytes inside the weights load silently."""
    import hashlib

    import torch

    digest = hashlib.sha256()

    def feed(value):
        if isinstance(value, torch.Tensor):
            tensor = value.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"T{tensor.dtype}{tuple(value.shape)}:".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        elif isinstance(value, Mapping):
            digest.update(f"D{len(value)}:".encode())
            for key in sorted(value, key=repr):
                feed(key)
                feed(value[key])
        elif isinstance(value, (list, tuple)):
            digest.update(f"L{len(value)}:".encode())
            for item in value:
                feed(item)
        else:
            text = repr(value)
            digest.update(f"{type(value).__name__}{len(text)}:{text}".encode())

    feed({k: v for k, v in state.items() if k != DIGEST_KEY})
    return "sha256:" + digest.hexdigest()


def config_to_plain(config) -> dict:
    """The final configuration of a RecBole ``Config`` as a plain dict."""
    return to_plain(dict(config.final_config_dict))


def check_device(device, option: str = "--device"):
    """``device`` as a ``torch.device`` if this machine has it: a name torch does not know, or a CUDA device
    where CUDA is missing or has fewer devices, is a ``ConfigError`` naming ``option``. Checked before a
    checkpoint is loaded onto it, where torch's error would make a good file look corrupt."""
    import torch

    from recbole_iacn.errors import ConfigError

    if device is None or isinstance(device, dict) or callable(device):
        return device  # torch.load's other forms of map_location
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(f"{option}={device!r} is not a device torch knows ({first}); use cpu, cuda or cuda:N.") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{option}={device!r}: this machine has no CUDA device (torch sees none); use "
                              f"{option}=cpu.")
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(f"{option}={device!r}: this machine has {count} CUDA device(s), cuda:0 to "
                              f"cuda:{count - 1}; choose one of them, or {option}=cpu.")
    return parsed


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by :class:`SafeCheckpointMixin` with ``weights_only=True``.

    Loading cannot execute code. A file in another format gives a clear :class:`CheckpointError`.
    """
    import pickle

    import torch

    from recbole_iacn.errors import CheckpointError

    path = os.fspath(path)
    if os.path.isdir(path):
        inside = sorted(name for name in os.listdir(path) if name.endswith(".pth") and not name.startswith("."))
        hint = (f" It holds {', '.join(inside[:5])}{' ...' if len(inside) > 5 else ''}: give one of them."
                if inside else " It holds no .pth file.")
        raise CheckpointError(f"Checkpoint file {path!r} is a folder, not a checkpoint file.{hint}")
    if not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint file {path!r} does not exist.")
    map_location = check_device(map_location)
    if os.path.getsize(path) == 0:
        raise CheckpointError(
            f"Checkpoint file {path!r} is empty (0 bytes): it was cut off while being written, e.g. by a kill "
            "in an older version that wrote checkpoints in place. Train again, or load another checkpoint."
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, IndexError, KeyError, TypeError,
            AttributeError, UnicodeDecodeError, OSError) as exc:
        # torch.load raises many kinds of errors on truncated or foreign files; all mean "not loadable"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(
            f"{path!r} is not a safe recbole-iacn checkpoint (it holds pickled objects, or is truncated "
            f"or corrupt), so it was not loaded: {type(exc).__name__}: {first}. Checkpoints written by "
            "RecBole itself pickle their Config; re-train with run_recbole_iacn.py to get a safe one."
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path!r} is not a {CHECKPOINT_FORMAT} checkpoint.")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(
            f"{path!r} lacks the entr{'ies' if len(missing) > 1 else 'y'} {', '.join(map(repr, missing))} every "
            f"{CHECKPOINT_FORMAT} checkpoint holds: it was edited or cut short. Train again to get a complete one."
        )
    if not isinstance(state["config"], dict) or not isinstance(state["state_dict"], dict):
        raise CheckpointError(f"{path!r} has a config or state_dict that is not a mapping: it was edited.")
    stored = state.get(DIGEST_KEY)  # checkpoints written before the digest existed have none
    if stored is not None and stored != content_digest(state):
        raise CheckpointError(
            f"{path!r} does not match the content digest stored in it: its bytes changed after it was written "
            "(a disk or copy error, or an edit), so it was not loaded. Use another copy, or train again."
        )
    return state


def unique_checkpoint_name(model: str) -> str:
    """``MODEL-Nov-23-2026_11-30-40-123456-p4242-1a2b.pth``: RecBole's time stamp with microseconds, the
    process id and a random suffix, so that runs started in the same second (or in one process) never
    share a file."""
    import datetime
    import secrets

    now = datetime.datetime.now()
    return f"{model}-{now.strftime('%b-%d-%Y_%H-%M-%S')}-{now.microsecond:06d}-p{os.getpid()}-{secrets.token_hex(2)}.pth"


@contextlib.contextmanager
def interrupts_deferred():
    """Hold Ctrl-C (SIGINT) back while the block runs, then raise ``KeyboardInterrupt`` if one came.

    A ``KeyboardInterrupt`` raised inside ``torch.save``'s writer surfaces as a ``RuntimeError`` of its
    C++ stream ("unexpected pos ..."), so a Ctrl-C during a checkpoint write would end the run with a
    traceback instead of the one-line "interrupted" message. Only the main thread can handle signals;
    elsewhere the block runs as it is.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def check_output_folder(path: str | os.PathLike, option: str) -> str:
    """Check, before any work, that the folder ``path`` (named on the command line by ``option``) can hold new
    files: it is a folder that can be written, or can be created in the nearest folder above it that exists.
    A file in its place or above it, or a folder that cannot be written, is a ``ConfigError`` naming ``option``;
    nothing is created. Returns the absolute path."""
    import tempfile

    from recbole_iacn.errors import ConfigError

    path = os.path.abspath(os.fspath(path))
    existing = path
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "is a file" if existing == path else f"would be created under {existing}, which is a file"
        raise ConfigError(f"{option} {path} {where}, not a folder. Give a folder (it is created if missing).")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = "" if existing == path else f" (it would be created in {existing})"
        raise ConfigError(f"{option} {path} cannot be written{where}: {exc.strerror or exc}. Give a folder you can "
                          "write to.") from None
    return path


def temp_prefix(filename: str, pid: int | None = None) -> str:
    """Prefix of the temporary file of a write of ``filename``: ``.<filename>.w<pid>@<host>.`` (this process's
    id unless ``pid`` is given), so that the file of a killed write can be told from one being written."""
    return f".{filename}.w{os.getpid() if pid is None else pid}@{socket.gethostname()}."


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def remove_stale_partials(folder: str | os.PathLike) -> list:
    """Remove the temporary files that killed checkpoint writes left in ``folder``: this machine's whose
    process is gone, and those without a process id (older versions) older than :data:`LEGACY_TEMP_AGE`.
    Returns their paths."""
    from pathlib import Path

    folder = Path(folder)
    removed = []
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX)]
    except OSError:
        return removed
    host = socket.gethostname()
    for path in candidates:
        match = _TEMP_NAME.match(path.name)
        try:
            if match is not None:
                pid = int(match.group("pid"))
                stale = match.group("host") == host and pid != os.getpid() and not process_alive(pid)
            else:
                stale = path.stat().st_mtime < time.time() - LEGACY_TEMP_AGE
            if stale and path.is_file():
                path.unlink()
                removed.append(path)
        except OSError:  # removed by another run meanwhile, or not ours to remove
            continue
    return removed


@contextlib.contextmanager
def interrupts_kept():
    """Ctrl-C (SIGINT) inside the block ends it as a ``KeyboardInterrupt``, even where a library turns the
    exception into an error of its own: pandas' C parser reports a ``KeyboardInterrupt`` raised while it
    reads as "Error tokenizing data ... Calling read(nbytes) on source failed", which would blame an intact
    file. The handler in place is still called (or Ctrl-C raises ``KeyboardInterrupt`` as by default); only
    the main thread can handle signals, elsewhere the block runs as it is."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        received.append(signum)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, frame)
        raise KeyboardInterrupt

    if previous == signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    except BaseException:
        if received:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


def current_umask() -> int:
    """The process's umask (read from /proc on Linux, where setting it to read it would race with threads)."""
    try:
        with open("/proc/self/status", "r", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: str | os.PathLike, folder: bool = False) -> None:
    """Give ``path`` the mode an ordinary ``open``/``mkdir`` would have: 0666 (folders 0777) less the umask.
    ``mkstemp`` and ``mkdtemp`` create 0600 files and 0700 folders, and a file written to a temporary name
    and renamed into place kept that mode: a checkpoint or dataset that other users of a group were meant to
    read was private to its owner."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, fsync: bool = False, defer_interrupts: bool = False):
    """Write the file ``path`` all at once: the block writes to the staging path this yields, which is then
    renamed over ``path``; a kill or an error at any moment leaves either the previous file or the new one,
    never a partial file under ``path``.

    The staging file is ``.<file>.w<pid>@<host>.<random>.partial`` in the same folder (:func:`temp_prefix`:
    hidden, and a killed write's file can be told from one being written, :func:`remove_stale_partials`); it
    is removed on any error. The file gets the mode an ordinary ``open`` would give it (:func:`follow_umask`).
    ``fsync`` makes the content and the rename durable; ``defer_interrupts`` holds a Ctrl-C back until the
    file is in place (:func:`interrupts_deferred`). The folder must exist. A writer that picks its format by
    the file name (``savefig``) must be told the format: the staging name ends in ``.partial``.

        with atomic_write(path) as staging:
            with open(staging, "w", encoding="utf-8") as f:
                json.dump(data, f)
    """
    import tempfile

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, staging = tempfile.mkstemp(prefix=temp_prefix(os.path.basename(path)), suffix=TEMP_SUFFIX, dir=folder)
    os.close(fd)
    try:
        with interrupts_deferred() if defer_interrupts else contextlib.nullcontext():
            yield staging
            if fsync:
                _fsync(staging, os.O_RDONLY)
            follow_umask(staging)
            os.replace(staging, path)
    except BaseException:
        try:
            os.unlink(staging)
        except OSError:
            pass
        raise
    if fsync:  # make the rename itself durable
        try:
            _fsync(folder, os.O_RDONLY)
        except OSError:
            pass


def _fsync(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``
    (:func:`atomic_write`): a kill at any moment leaves either the previous file or the new one, never a
    partial file under ``path``; a Ctrl-C during the write is acted on once the file is in place."""
    import torch

    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    with atomic_write(path, fsync=True, defer_interrupts=True) as staging:
        with open(staging, "wb") as f:
            torch.save(obj, f)


def plain_other_parameters(model) -> dict:
    """``model.other_parameter()`` without modules: RecBole's DIN/DIEN list their embedding layer
    there (it holds the dataset and config, which cannot be stored safely); its weights are in the
    state dict anyway."""
    import torch

    others = model.other_parameter() or {}
    return {k: v for k, v in others.items() if not isinstance(v, torch.nn.Module)}


class SafeCheckpointMixin:
    """Mix into a RecBole trainer: checkpoints hold tensors and plain data only.

    RecBole's trainer pickles its ``Config`` into the checkpoint and reloads it with ``torch.load``,
    which torch >= 2.6 refuses by default (``weights_only=True``). Here the config is stored as a
    plain dict, the model's feature schema as plain data, and loading uses ``weights_only=True``,
    so a checkpoint cannot run code when it is loaded.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        # RecBole names the file by the second; two runs started in the same second shared it
        self.saved_model_file = os.path.join(self.checkpoint_dir, unique_checkpoint_name(config["model"]))
        remove_stale_partials(self.checkpoint_dir)  # left by runs killed while writing a checkpoint

    def checkpoint_state(self, epoch: int) -> dict:
        model = self.model
        schema = getattr(model, "schema", None)
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.config["model"],
            "config": config_to_plain(self.config),
            "schema": schema.to_dict() if schema is not None else None,
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "state_dict": model.state_dict(),
            "other_parameter": plain_other_parameters(model),
            "optimizer": self.optimizer.state_dict(),
        }

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        from recbole.utils import set_color

        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = self.checkpoint_state(epoch)
        state[DIGEST_KEY] = content_digest(state)
        atomic_save(state, saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def _load_weights(self, checkpoint_file) -> dict:
        checkpoint = load_checkpoint(checkpoint_file, map_location=self.device)
        self.model.load_state_dict(checkpoint["state_dict"])
        others = checkpoint.get("other_parameter")
        if others:
            self.model.load_other_parameter(others)
        return checkpoint

    def resume_checkpoint(self, resume_file):
        resume_file = str(resume_file)
        self.saved_model_file = resume_file
        checkpoint = self._load_weights(resume_file)
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            checkpoint_file = model_file or self.saved_model_file
            self._load_weights(checkpoint_file)
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(
            eval_data, load_best_model=False, model_file=None, show_progress=show_progress
        )
