"""Compatibility fixes that let RecBole 1.2.1 run on today's Python stack.

RecBole 1.2.1 was released against numpy 1.x, pandas 1.x/2.x, torch < 2.6 and Ray < 2.7. Each
incompatibility found on Python 3.11 with numpy 2, pandas 2.x, torch >= 2.6 and a current Ray has one
named fix here. None of them edits site-packages: they are either install-time decisions (documented
in the README and declared in ``setup.cfg``) or run-time patches applied by :func:`apply`, which is
idempotent and called by every entry point of this package.

=====================================  =============================================================
incompatibility                        fix
=====================================  =============================================================
RecBole's wheel pins ``ray<=2.6.3``,   ``RECBOLE_INSTALL``: RecBole is installed with ``--no-deps``;
``colorlog==4.7.2``,                   :data:`RECBOLE_RUNTIME_REQUIREMENTS` lists what it really
``colorama==0.4.4``; Ray 2.6.3 fails    imports, and ``setup.cfg`` installs those with current
to import (pkg_resources, np.bool8)    versions. :func:`check_recbole_runtime` verifies them.
``Config()`` runs ``np.float =          :func:`install_numpy_aliases` (used by
np.float_``, which raises on numpy 2   :class:`recbole_iacn.config.IaCNConfig`) defines only the
                                       aliases numpy lacks; RecBole's metrics still use ``np.float``.
pandas copy-on-write makes RecBole's   :func:`patch_fill_nan` replaces ``Dataset._fill_nan`` with a
in-place ``fillna`` a silent no-op     version that assigns the result; :func:`check_pandas` rejects
(then IndexError in an embedding)      pandas >= 3 with a clear message (``setup.cfg`` pins < 3).
torch >= 2.6 ``weights_only`` loads    :class:`SafeCheckpointMixin` saves tensors plus plain data
reject RecBole's pickled Config        (the config as a dict) and loads with ``weights_only=True``.
``recbole.quick_start`` imports Ray    this package never imports ``recbole.quick_start``; it runs
at import; its ``tune.report(**kw)``   RecBole's pipeline itself (:mod:`recbole_iacn.quick_start`),
is gone from current Ray Tune          and :mod:`recbole_iacn.tune` uses ``tune.report(metrics)``.
RecBole dispatches models by name      :mod:`recbole_iacn.registry` maps names to classes and
(``get_model``, ``create_dataset``,    :class:`recbole_iacn.config.IaCNConfig` builds the config
the DIN/DIEN special cases)            from the class, never through RecBole's name lookups.
=====================================  =============================================================
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from typing import Any, Mapping

import numpy as np

#: How RecBole is installed: without its stale pins (see README, "Installation").
RECBOLE_INSTALL = "pip install --no-deps recbole==1.2.1"

#: Modules RecBole 1.2.1 imports on the code paths this plugin uses, with the distribution that
#: provides each. (RecBole's declared ``plotly``, ``thop``, ``tabulate`` and ``ray`` are not needed.)
RECBOLE_RUNTIME_REQUIREMENTS: Mapping[str, str] = {
    "numpy": "numpy",
    "scipy": "scipy",
    "pandas": "pandas",
    "torch": "torch",
    "tqdm": "tqdm",
    "colorlog": "colorlog",
    "colorama": "colorama",
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "tensorboard": "tensorboard",
    "texttable": "texttable",
    "psutil": "psutil",
}

#: numpy aliases removed in numpy 1.24/2.0 that RecBole 1.2.1 still uses, with their old meaning.
NUMPY_ALIASES: Mapping[str, Any] = {
    "bool": np.bool_,
    "int": np.int_,
    "float": np.float64,
    "float_": np.float64,
    "complex": np.complex128,
    "complex_": np.complex128,
    "object": np.object_,
    "str": np.str_,
    "unicode": np.str_,
    "unicode_": np.str_,
    "long": np.int_,
}

PANDAS_MAX_MAJOR = 2  # RecBole 1.2.1 relies on in-place column fillna (pandas < 3)


class CompatibilityError(ImportError):
    """The installed stack cannot run RecBole 1.2.1 even with the fixes here."""


def install_numpy_aliases() -> list[str]:
    """Define the numpy aliases RecBole needs, only where numpy no longer has them.

    Existing attributes are never overwritten. Returns the names that were added.
    """
    import warnings

    added = []
    for name, value in NUMPY_ALIASES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns when probing some removed aliases
            present = hasattr(np, name)
        if not present:
            setattr(np, name, value)
            added.append(name)
    return added


def check_pandas(version: str | None = None) -> None:
    """Reject pandas >= 3, under which RecBole silently loses its missing-value imputation."""
    import pandas as pd

    version = version or pd.__version__
    major = int(version.split(".")[0])
    if major > PANDAS_MAX_MAJOR:
        raise CompatibilityError(
            f"pandas {version} is installed, but RecBole 1.2.1 needs pandas < 3: with pandas 3's "
            "copy-on-write its in-place `fillna` on dataset columns does nothing, and training later "
            "fails with 'index out of range' in an embedding. Install a supported version with "
            "`pip install 'pandas>=2.2,<3'`."
        )


def _fill_nan_copy_on_write_safe(self) -> None:
    """RecBole's ``Dataset._fill_nan`` with assignments instead of in-place ``fillna`` calls.

    Identical results to RecBole's version under pandas' legacy mode, and correct under
    copy-on-write, where ``df[col].fillna(..., inplace=True)`` modifies a temporary copy.
    """
    from recbole.utils import FeatureType

    for feat_name in self.feat_name_list:
        feat = getattr(self, feat_name)
        for field in feat:
            ftype = self.field2type[field]
            if ftype == FeatureType.TOKEN:
                feat[field] = feat[field].fillna(value=0)
            elif ftype == FeatureType.FLOAT:
                feat[field] = feat[field].fillna(value=feat[field].mean())
            else:
                dtype = np.int64 if ftype == FeatureType.TOKEN_SEQ else np.float64
                feat[field] = feat[field].apply(
                    lambda x: np.array([], dtype=dtype) if isinstance(x, float) else x
                )


#: RecBole's own ``Dataset._fill_nan``, kept for reference (and for the test that shows the bug).
recbole_fill_nan = None


def patch_fill_nan() -> None:
    """Install :func:`_fill_nan_copy_on_write_safe` as ``recbole.data.dataset.Dataset._fill_nan``."""
    global recbole_fill_nan
    from recbole.data.dataset import Dataset

    if Dataset._fill_nan is not _fill_nan_copy_on_write_safe:
        recbole_fill_nan = Dataset._fill_nan
        Dataset._fill_nan = _fill_nan_copy_on_write_safe


def check_recbole_runtime() -> dict[str, str]:
    """Import every module RecBole needs at run time; return {distribution: version}.

    Raises :class:`CompatibilityError` naming the missing distributions and the install command.
    """
    missing, versions = [], {}
    for module, dist in RECBOLE_RUNTIME_REQUIREMENTS.items():
        try:
            importlib.import_module(module)
            versions[dist] = importlib.metadata.version(dist)
        except (ImportError, importlib.metadata.PackageNotFoundError):
            missing.append(dist)
    try:
        versions["recbole"] = importlib.metadata.version("recbole")
    except importlib.metadata.PackageNotFoundError:
        missing.append("recbole")
    if missing:
        raise CompatibilityError(
            "Missing packages needed by RecBole 1.2.1: " + ", ".join(missing) + ". Install this "
            f"package with `pip install -e .` and RecBole with `{RECBOLE_INSTALL}` (RecBole's own "
            "dependency pins would downgrade Ray and break it; see README, Installation)."
        )
    return versions


_APPLIED = False


def apply() -> None:
    """Apply every run-time fix once. Safe to call many times."""
    global _APPLIED
    if _APPLIED:
        return
    check_pandas()
    install_numpy_aliases()
    patch_fill_nan()
    # RecBole's tensorboard writer spawns nothing but creates ./log_tensorboard; keep it quiet.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _APPLIED = True


# --------------------------------------------------------------------------------------------
# Safe checkpoints (torch >= 2.6: weights_only=True by default)
# --------------------------------------------------------------------------------------------

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
