"""The one place that maps a model name to its class and its default YAML files.

Plugin models are looked up here; any other name is handed to RecBole's own model lookup, so
``--model=BPR`` still works. Where a plugin model shadows a RecBole model of the same name (DIN, DIEN,
WideDeep), RecBole's is reachable as ``recbole.<Name>`` (e.g. ``--model=recbole.DIN``).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Tuple

from recbole_iacn.errors import UnknownModelError

RECBOLE_PREFIX = "recbole."
RECBOLE_OPTIONAL_MODELS = ("lightgbm", "xgboost")  # RecBole models that need packages we do not install


@dataclass(frozen=True)
class ModelSpec:
    """A registered plugin model."""

    name: str
    target: str  # "module:attribute"
    config_files: Tuple[str, ...]  # relative to properties/
    host: str  # the host model name (itself for hosts)
    summary: str

    @property
    def has_iacn(self) -> bool:
        return self.name != self.host

    def load(self):
        module, attr = self.target.split(":")
        return getattr(importlib.import_module(module), attr)


_HOSTS = {
    "DIN": ("recbole_iacn.model.din", "Deep Interest Network: local activation unit over behaviours"),
    "DIEN": ("recbole_iacn.model.dien", "Deep Interest Evolution Network: GRU + AUGRU, auxiliary loss"),
    "WideDeep": ("recbole_iacn.model.widedeep", "Wide & Deep with the behaviour sequence pooled"),
    "DAIN": ("recbole_iacn.model.dain", "Deep Adaptive Interest Network: user/item/context MLP"),
}

IACN_SUFFIX = "_IaCN"

MODELS = {}
for _host, (_module, _summary) in _HOSTS.items():
    MODELS[_host] = ModelSpec(_host, f"{_module}:{_host}", (f"model/{_host}.yaml",), _host, _summary)
    _name = _host + IACN_SUFFIX
    MODELS[_name] = ModelSpec(
        _name,
        f"recbole_iacn.model.variants:{_name}",
        (f"model/{_host}.yaml", "model/IaCN.yaml"),
        _host,
        f"{_host} + Interest-aware Capsule Network auxiliary task",
    )


def model_names() -> list[str]:
    return list(MODELS)


def host_names() -> list[str]:
    """The plugin host models (DIN, DIEN, WideDeep, DAIN): each also registered as ``<host>_IaCN``."""
    return list(_HOSTS)


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(_unknown_message(name)) from None


def _unknown_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(MODELS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return (
        f"Unknown model {name!r}.{hint} Plugin models: {', '.join(MODELS)}. Any RecBole model name "
        f"also works (e.g. BPR, DeepFM); RecBole's own DIN, DIEN and WideDeep are "
        f"'{RECBOLE_PREFIX}DIN', '{RECBOLE_PREFIX}DIEN' and '{RECBOLE_PREFIX}WideDeep'."
    )


def resolve(name: str):
    """Return ``(spec, cls)``: ``spec`` is the plugin ModelSpec, or None for a RecBole model."""
    if not isinstance(name, str) or not name:
        raise UnknownModelError(_unknown_message(str(name)))
    if name in MODELS:
        spec = MODELS[name]
        return spec, spec.load()
    recbole_name = name[len(RECBOLE_PREFIX):] if name.startswith(RECBOLE_PREFIX) else name
    from recbole_iacn import compat

    compat.apply()
    from recbole.utils import get_model

    try:
        return None, get_model(recbole_name)
    except ValueError:
        raise UnknownModelError(_unknown_message(name)) from None
    except ImportError as exc:
        # RecBole imports its LightGBM/XGBoost wrappers last, only for names it found nowhere else
        if recbole_name.lower() in RECBOLE_OPTIONAL_MODELS:
            raise UnknownModelError(f"RecBole's {recbole_name} needs an extra package: {exc}. Install it with pip.") from None
        raise UnknownModelError(_unknown_message(name)) from None
