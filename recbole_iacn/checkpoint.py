"""Safe checkpoints: tensors and plain data only, loaded with ``torch.load(weights_only=True)``.

RecBole's trainer pickles its ``Config`` into the checkpoint and reloads it with ``torch.load``, which
torch >= 2.6 refuses by default, and which could run code from an untrusted file. Here the config is
stored as a plain dict and the model's feature schema as plain data, so loading a checkpoint cannot
run code. :class:`SafeCheckpointMixin` is mixed into the trainers by :mod:`recbole_iacn.trainer`.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

CHECKPOINT_FORMAT = "recbole-iacn/1"


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


def config_to_plain(config) -> dict:
    """The final configuration of a RecBole ``Config`` as a plain dict."""
    return to_plain(dict(config.final_config_dict))


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by :class:`SafeCheckpointMixin` with ``weights_only=True``.

    Loading cannot execute code. A file in another format gives a clear :class:`CheckpointError`.
    """
    import pickle

    import torch

    from recbole_iacn.errors import CheckpointError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint file {path!r} does not exist.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise CheckpointError(
            f"{path!r} is not a safe recbole-iacn checkpoint (it holds pickled objects or is "
            f"corrupt), so it was not loaded: {str(exc).splitlines()[0]}. Checkpoints written by "
            "RecBole itself pickle their Config; re-train with run_recbole_iacn.py to get a safe one."
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path!r} is not a {CHECKPOINT_FORMAT} checkpoint.")
    return state


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
        import torch
        from recbole.utils import set_color

        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        torch.save(self.checkpoint_state(epoch), saved_model_file)
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
