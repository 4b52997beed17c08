"""Trainers: RecBole's own, with safe checkpoints, a per-epoch report hook, named losses, fused Adam, an
optionally compiled loss and multi-process pieces (:mod:`recbole_iacn.distributed.trainer`)."""

from __future__ import annotations

from logging import getLogger

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


class CompiledLoss:
    """``loss_fn`` through ``torch.compile``, or ``loss_fn`` itself once compiling has failed.

    Compilation happens at the first call (and again for a new batch shape, e.g. the last, partial
    batch of an epoch). If building or running the compiled function raises (no C compiler, an
    operator the backend cannot lower, ...), the reason is logged once and this call and every later
    one run ``loss_fn`` eagerly: an error of the model itself then surfaces from the eager call.
    """

    def __init__(self, loss_fn, **compile_options):
        import torch

        self.eager = loss_fn
        self.compiled = None
        self.fallback_reason = None
        try:
            self.compiled = torch.compile(loss_fn, **compile_options)
        except Exception as exc:  # noqa: BLE001 -- any failure means: run eagerly, and say why
            self._fall_back(exc)

    def __call__(self, interaction):
        if self.compiled is not None:
            try:
                return self.compiled(interaction)
            except Exception as exc:  # noqa: BLE001
                self._fall_back(exc)
        return self.eager(interaction)

    def _fall_back(self, exc: Exception) -> None:
        self.compiled = None
        first_line = (str(exc).strip().splitlines() or [""])[0]
        self.fallback_reason = f"{type(exc).__name__}: {first_line}"
        getLogger().warning(f"compile_loss: torch.compile failed ({self.fallback_reason}); the loss runs eagerly.")


class CompiledLossMixin:
    """``compile_loss: true``: each training step calls the model's ``calculate_loss`` through
    :class:`CompiledLoss` (fewer, fused kernels; eager when compiling fails), compiled in ``compile_mode``
    (``reduce-overhead``: on a GPU, the loss's forward and backward replay as CUDA graphs, one per batch
    shape). Evaluation stays eager."""

    _compiled_loss = None

    def training_loss(self):
        """The loss function training steps call: ``model.calculate_loss``, compiled if ``compile_loss``."""
        if not self.config["compile_loss"]:
            return self.model.calculate_loss
        if self._compiled_loss is None or self._compiled_loss.eager != self.model.calculate_loss:
            self._compiled_loss = CompiledLoss(self.model.calculate_loss, mode=self.config["compile_mode"])
        return self._compiled_loss

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss_func = loss_func or self.training_loss()
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)


_CLASSES = {}


def trainer_class(config, plugin: bool):
    """RecBole's trainer for the model (``Trainer`` for plugin models) with the mixins above and the
    multi-process ones (RecBole's own models' configs lack ``fused_optimizer`` and ``compile_loss``: both
    stay off for them)."""
    from recbole.trainer import Trainer
    from recbole.utils import get_trainer

    from recbole_iacn.distributed.trainer import DistributedModelInit, DistributedTrainerMixin

    base = Trainer if plugin else get_trainer(config["MODEL_TYPE"], config["model"])
    if base not in _CLASSES:
        # DistributedModelInit lands just before AbstractTrainer in the MRO, replacing its DDP wrapping
        mixins = (DistributedTrainerMixin, SafeCheckpointMixin, EpochReportMixin, NamedLossMixin, FusedOptimizerMixin,
                  CompiledLossMixin)
        _CLASSES[base] = type(base.__name__, (*mixins, base, DistributedModelInit), {})
    return _CLASSES[base]
