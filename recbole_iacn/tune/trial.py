"""One Ray Tune trial: train with :func:`recbole_iacn.pipeline.run_one_process`, report after each validation.

Each validation epoch reports ``valid_<metric>`` (this epoch), ``best_valid_<metric>`` (best so far)
and, when the epoch is the best so far, a checkpoint holding that model (``model.pth``, loadable with
:func:`recbole_iacn.load_model`). The last report repeats the best validation metrics and adds the
test metrics (``test_<metric>``) of the best model, so that the study's table has both.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import List

from recbole_iacn.tune.space import plain

MODEL_FILE = "model.pth"
STATE_FILE = "state.json"
VALID_PREFIX = "valid_"
BEST_PREFIX = "best_valid_"
TEST_PREFIX = "test_"
EPOCH_KEY = "epoch"
FINAL_KEY = "finished"


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a study shares (all paths absolute, prepared by the driver)."""

    model: str
    dataset: str
    config_files: List[str] = field(default_factory=list)
    overrides: dict = field(default_factory=dict)  # includes the absolute data_path
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0


def metric_key(prefix: str, name: str) -> str:
    """``valid_auc`` etc.: RecBole's lower-case metric name with a prefix."""
    return f"{prefix}{name.lower()}"


def prefixed(prefix: str, result) -> dict:
    return {metric_key(prefix, k): plain(v) for k, v in (result or {}).items()}


class EpochReporter:
    """``epoch_callback`` for :func:`recbole_iacn.pipeline.run_one_process`: ``tune.report`` after each
    validation."""

    last_epoch = 0

    def __call__(self, trainer, epoch, valid_score, valid_result):
        from ray import tune

        self.last_epoch = epoch + 1
        metrics = {EPOCH_KEY: epoch + 1, FINAL_KEY: False}
        metrics.update(prefixed(VALID_PREFIX, valid_result))
        metrics.update(prefixed(BEST_PREFIX, trainer.best_valid_result))
        improved = trainer.cur_step == 0 and os.path.isfile(trainer.saved_model_file or "")
        if not improved:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as staging:
            shutil.copy2(trainer.saved_model_file, os.path.join(staging, MODEL_FILE))
            with open(os.path.join(staging, STATE_FILE), "w", encoding="utf-8") as f:
                json.dump({"epoch": epoch + 1, "best_valid_score": float(trainer.best_valid_score)}, f)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(staging))


def trial_config(setup: TrialSetup, params: dict, checkpoint_dir: str) -> dict:
    """The ``config_dict`` of one trial: the study's overrides, then the sampled parameters, then
    the device Ray gave the trial (RecBole's ``gpu_id`` would otherwise reset CUDA_VISIBLE_DEVICES)."""
    gpu_id = os.environ.get("CUDA_VISIBLE_DEVICES", "") if setup.gpus_per_trial > 0 else ""
    return {
        **setup.overrides,
        **{k: plain(v) for k, v in params.items()},
        "checkpoint_dir": checkpoint_dir,
        "gpu_id": gpu_id,
    }


def train_trial(params: dict, setup: TrialSetup) -> None:
    """Ray Tune function trainable (bind ``setup`` with ``tune.with_parameters``)."""
    import torch
    from ray import tune

    from recbole_iacn.pipeline import run_one_process

    torch.set_num_threads(max(1, int(setup.cpus_per_trial)))
    checkpoint_dir = tempfile.mkdtemp(prefix="recbole-iacn-trial-")
    reporter = EpochReporter()
    try:
        result = run_one_process(setup.model, setup.dataset, setup.config_files,
                                 trial_config(setup, params, checkpoint_dir), saved=True, epoch_callback=reporter)
    finally:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    final = {EPOCH_KEY: reporter.last_epoch, FINAL_KEY: True}
    final.update(prefixed(VALID_PREFIX, result["best_valid_result"]))
    final.update(prefixed(BEST_PREFIX, result["best_valid_result"]))
    final.update(prefixed(TEST_PREFIX, result["test_result"]))
    tune.report(final)
