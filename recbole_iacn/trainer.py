"""Trainers: RecBole's own, with safe checkpoints, a per-epoch report hook, named losses and fused Adam."""

from __future__ import annotations

from recbole_iacn.checkpoint import SafeCheckpointMixin


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


class NamedLossMixin:
    """Names the parts of a tuple loss in the epoch log (``main``, ``dien_aux``, ``iacn``: the model's
    ``loss_names``) instead of RecBole's ``train_loss1``, ``train_loss2``, ..."""

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        names = getattr(self.model, "loss_names", None)
        if not isinstance(losses, tuple) or names is None or len(names) != len(losses):
            return super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)
        from recbole.utils import set_color

        places = self.config["loss_decimal_place"] or 4
        parts = ", ".join(f"{name}: {loss:.{places}f}" for name, loss in zip(names, losses))
        return (set_color(f"epoch {epoch_idx} training", "green") + " [" + set_color("time", "blue")
                + f": {e_time - s_time:.2f}s, " + set_color("train loss", "blue") + f" {parts}]")


class FusedOptimizerMixin:
    """Adam and AdamW with torch's fused kernels when ``fused_optimizer`` is true (the plugin default).

    Same update rule as RecBole's per-parameter loop, computed in one kernel over all parameters (the
    measured gain is in ``benchmarks/results/*/kernels``, from ``benchmarks/kernels.py``).
    Other learners, RecBole's own models (whose configs lack the key) and devices without fused
    kernels keep RecBole's optimizer.
    """

    FUSED_LEARNERS = {"adam": "Adam", "adamw": "AdamW"}
    FUSED_DEVICES = ("cpu", "cuda")

    def _build_optimizer(self, **kwargs):
        import torch

        learner = str(kwargs.get("learner", self.learner)).lower()
        params = list(kwargs.pop("params", self.model.parameters()))
        fused = (
            self.config["fused_optimizer"]
            and learner in self.FUSED_LEARNERS
            and all(p.is_floating_point() and p.device.type in self.FUSED_DEVICES for p in params)
        )
        if not fused:
            return super()._build_optimizer(params=params, **kwargs)
        optimizer_class = getattr(torch.optim, self.FUSED_LEARNERS[learner])
        return optimizer_class(
            params,
            lr=kwargs.get("learning_rate", self.learning_rate),
            weight_decay=kwargs.get("weight_decay", self.weight_decay),
            fused=True,
        )


_CLASSES = {}


def trainer_class(config, plugin: bool):
    """RecBole's trainer for the model (``Trainer`` for plugin models) with the mixins above."""
    from recbole.trainer import Trainer
    from recbole.utils import get_trainer

    base = Trainer if plugin else get_trainer(config["MODEL_TYPE"], config["model"])
    if base not in _CLASSES:
        _CLASSES[base] = type(
            base.__name__, (SafeCheckpointMixin, EpochReportMixin, NamedLossMixin, FusedOptimizerMixin, base), {}
        )
    return _CLASSES[base]
