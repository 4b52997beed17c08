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
torch >= 2.6 ``weights_only`` loads    :mod:`recbole_iacn.checkpoint` saves tensors plus plain data
reject RecBole's pickled Config        (the config as a dict) and loads with ``weights_only=True``.
RecBole's trainer builds               :func:`patch_grad_scaler` gives it ``torch.amp.GradScaler("cuda",
``torch.cuda.amp.GradScaler`` every    ...)``, the same object without the FutureWarning that torch
epoch (deprecated: a FutureWarning)    prints every epoch.
``recbole.quick_start`` imports Ray    this package never imports ``recbole.quick_start``; it runs
at import; its ``tune.report(**kw)``   RecBole's pipeline itself (:mod:`recbole_iacn.pipeline`),
is gone from current Ray Tune          and :mod:`recbole_iacn.tune` uses ``tune.report(metrics)``.
Importing any RecBole sequential       :func:`keep_anomaly_mode` imports that package once, at
model imports SINE, whose module runs  :func:`apply`, and puts autograd's anomaly mode back as it
``set_detect_anomaly(True)``: the      was (the numbers are the same either way, only slower).
whole process then trains in anomaly
mode (RecBole's DIN and DIEN: about
half their training speed)
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

from recbole_iacn.errors import CompatibilityError

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
    patch_grad_scaler()
    keep_anomaly_mode()
    # RecBole's tensorboard writer spawns nothing but creates ./log_tensorboard; keep it quiet.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _APPLIED = True


def patch_grad_scaler() -> None:
    """RecBole's trainer calls ``torch.cuda.amp.GradScaler(enabled=...)`` once per epoch, which torch
    deprecates with a FutureWarning each time; give its module ``torch.amp.GradScaler("cuda", ...)``,
    which is what the deprecated class builds. Nothing else in RecBole or torch changes."""
    import functools
    import types

    import torch
    from recbole.trainer import trainer

    if not isinstance(getattr(trainer, "amp", None), types.SimpleNamespace):
        trainer.amp = types.SimpleNamespace(  # the two names RecBole's trainer module uses
            GradScaler=functools.partial(torch.amp.GradScaler, "cuda"),
            autocast=functools.partial(torch.autocast, "cuda"),
        )


#: The RecBole package whose import turns autograd's anomaly mode on (its ``sine`` module does, at import).
RECBOLE_SEQUENTIAL = "recbole.model.sequential_recommender"


def keep_anomaly_mode() -> None:
    """Import RecBole's sequential models with autograd's anomaly mode left as it was.

    ``recbole/model/sequential_recommender/sine.py`` calls ``torch.autograd.set_detect_anomaly(True)`` at module
    level, and the package's ``__init__`` imports it with every other sequential model: RecBole's ``get_model("DIN")``
    and any ``import recbole.model.sequential_recommender`` leave the whole process, every later model included,
    in anomaly mode. Training then gives the same numbers, slower: RecBole's DIN and DIEN on ml-100k train 2.0x and
    2.2x the samples per second without it (``benchmarks/results/2026-12-06/recbole-anomaly-mode``). Imported here
    first, the package is not run again by later imports. Where it was imported before this runs, the mode it left
    is kept (it cannot be told from a user's own choice), with a warning that says how to turn it off."""
    import sys
    import warnings

    import torch

    if RECBOLE_SEQUENTIAL in sys.modules:
        if torch.is_anomaly_enabled():
            warnings.warn("autograd's anomaly mode is on: RecBole's sequential models were imported before "
                          "recbole_iacn, and RecBole's SINE module turns it on at import. Training gives the same "
                          "numbers about half as fast; call torch.autograd.set_detect_anomaly(False) unless you want "
                          "it on.", RuntimeWarning, stacklevel=2)
        return
    enabled, check_nan = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    try:
        importlib.import_module(RECBOLE_SEQUENTIAL)
    finally:
        torch.set_anomaly_enabled(enabled, check_nan)
