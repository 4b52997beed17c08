"""Trainers: RecBole's own, with safe checkpoints and a per-epoch report hook."""

from __future__ import annotations

from recbole_iacn.compat import SafeCheckpointMixin


class EpochReportMixin:
    """Keeps the latest validation result and calls ``epoch_callback(trainer, epoch, score, result)``
    after every validation, e.g. to report to Ray Tune."""

    epoch_callback = None
    last_valid_result = None

    def _valid_epoch(self, valid_data, show_progress=False):
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.last_valid_result = result
        return score, result

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        def report(epoch_idx, valid_score):
            if callback_fn is not None:
                callback_fn(epoch_idx, valid_score)
            if self.epoch_callback is not None:
                self.epoch_callback(self, epoch_idx, valid_score, self.last_valid_result)

        return super().fit(train_data, valid_data, verbose, saved, show_progress, report)


_CLASSES = {}


def trainer_class(config, plugin: bool):
    """RecBole's trainer for the model (``Trainer`` for plugin models) with the mixins above."""
    from recbole.trainer import Trainer
    from recbole.utils import get_trainer

    base = Trainer if plugin else get_trainer(config["MODEL_TYPE"], config["model"])
    if base not in _CLASSES:
        _CLASSES[base] = type(base.__name__, (SafeCheckpointMixin, EpochReportMixin, base), {})
    return _CLASSES[base]
