"""Search-space files for Ray Tune studies: read, validate strictly, and turn into Ray Tune objects.

A space file is YAML (see ``properties/tune/*.yaml`` for the documented format)::

    search: grid            # grid | random | optuna
    scheduler: fifo         # fifo | asha
    num_samples: 1
    max_concurrent_trials: 1
    resources_per_trial: {cpu: 1, gpu: 0}
    params:
      iacn_delta: {grid: [0.1, 0.2, 0.3]}
      iacn_lambda: 1.0      # a plain value is fixed for every trial

This module does not import Ray; :meth:`StudySpace.param_space` does, when called.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import yaml

from recbole_iacn.errors import ConfigError

SEARCHES = ("grid", "random", "optuna")
SCHEDULERS = ("fifo", "asha")
#: distribution name -> number of arguments
DISTRIBUTIONS = {"grid": None, "choice": None, "uniform": 2, "loguniform": 2, "quniform": 3, "randint": 2}
SAMPLED = ("choice", "uniform", "loguniform", "quniform", "randint")
FIXED_WRAPPER = "value"  # {value: {...}} fixes a mapping-valued parameter
RESOURCE_KEYS = ("cpu", "gpu")
ASHA_KEYS = ("grace_period", "reduction_factor", "max_t")
TOP_LEVEL_KEYS = (
    "search", "scheduler", "num_samples", "max_concurrent_trials", "resources_per_trial", "asha", "seed", "params",
)
#: Keys a study may not tune: they define the data, where things are written, or the objective.
FORBIDDEN_PARAMS = ("model", "dataset", "data_path", "checkpoint_dir", "valid_metric", "valid_metric_bigger",
                    "benchmark_filename")
FORBIDDEN_PREFIXES = ("ctr_",)

DEFAULT_SEARCH = "grid"
DEFAULT_SCHEDULER = "fifo"
DEFAULT_NUM_SAMPLES = 1
DEFAULT_MAX_CONCURRENT = 1
DEFAULT_RESOURCES = {"cpu": 1, "gpu": 0}
DEFAULT_GRACE_PERIOD = 1
DEFAULT_REDUCTION_FACTOR = 2


@dataclass(frozen=True)
class Param:
    """One entry of ``params``: a distribution (``kind`` in DISTRIBUTIONS) or ``kind == 'fixed'``."""

    name: str
    kind: str
    args: Any

    @property
    def tuned(self) -> bool:
        return self.kind != "fixed"

    def values(self) -> list:
        """The values a grid, a choice or a fixed entry can take (empty for continuous distributions)."""
        if self.kind in ("grid", "choice"):
            return list(self.args)
        return [self.args] if self.kind == "fixed" else []

    def to_ray(self):
        """The Ray Tune object for this entry (the plain value when fixed)."""
        from ray import tune

        if self.kind == "fixed":
            return self.args
        if self.kind == "grid":
            return tune.grid_search(list(self.args))
        if self.kind == "choice":
            return tune.choice(list(self.args))
        return getattr(tune, self.kind)(*self.args)


@dataclass
class StudySpace:
    """A validated search-space file."""

    path: str
    search: str = DEFAULT_SEARCH
    scheduler: str = DEFAULT_SCHEDULER
    num_samples: int = DEFAULT_NUM_SAMPLES
    max_concurrent_trials: int = DEFAULT_MAX_CONCURRENT
    resources: Dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    asha: Dict[str, float] = field(default_factory=dict)
    seed: Optional[int] = None
    params: Dict[str, Param] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The file name without extension (part of the default study name)."""
        return Path(self.path).stem

    def tuned(self) -> Dict[str, Param]:
        return {k: p for k, p in self.params.items() if p.tuned}

    def fixed(self) -> Dict[str, Any]:
        return {k: p.args for k, p in self.params.items() if not p.tuned}

    def param_space(self) -> dict:
        """``param_space`` for ``tune.Tuner`` (imports Ray)."""
        return {k: p.to_ray() for k, p in self.params.items()}

    def definition(self) -> dict:
        """What defines the trials (not how many run at once): compared when a study is resumed."""
        definition = {"search": self.search, "scheduler": self.scheduler, "num_samples": self.num_samples,
                      "seed": self.seed, "params": {k: {p.kind: _plain(p.args)} for k, p in self.params.items()}}
        if self.scheduler == "asha":
            definition["asha"] = dict(self.asha)
        return definition


# ------------------------------------------------------------------------------ reading
def load_space(path) -> StudySpace:
    """Read and validate the search-space file ``path``; :class:`ConfigError` says what to fix."""
    path = os.fspath(path)
    data = _read_yaml(path)
    unknown = [k for k in data if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise _error(path, unknown[0], f"is not a search-space setting{_did_you_mean(unknown[0], TOP_LEVEL_KEYS)}. "
                     f"Allowed top-level keys: {', '.join(TOP_LEVEL_KEYS)}; put RecBole/model keys under params:")
    space = StudySpace(path=path)
    space.search = _one_of(path, "search", data.get("search", DEFAULT_SEARCH), SEARCHES)
    space.scheduler = _one_of(path, "scheduler", data.get("scheduler", DEFAULT_SCHEDULER), SCHEDULERS)
    space.num_samples = _positive_int(path, "num_samples", data.get("num_samples", DEFAULT_NUM_SAMPLES))
    space.max_concurrent_trials = _positive_int(
        path, "max_concurrent_trials", data.get("max_concurrent_trials", DEFAULT_MAX_CONCURRENT))
    space.resources = _resources(path, data.get("resources_per_trial", {}))
    space.asha = _asha(path, data.get("asha"), space.scheduler)
    space.seed = _optional_int(path, "seed", data.get("seed"))
    space.params = _params(path, data.get("params"))
    _check_search(space)
    return space


def _read_yaml(path: str) -> dict:
    from recbole_iacn.config import yaml_loader

    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(
            f"Search-space file {path!r} does not exist. Check the path given to --tune= (examples are in "
            "properties/tune/)."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Search-space file {path!r} cannot be read: {exc}.") from None
    try:
        data = yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"Search-space file {path!r} is not valid YAML{where}: {problem}.") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"Search-space file {path!r} must be a YAML mapping with at least a params: section, not "
            f"{'an empty file' if data is None else 'a ' + type(data).__name__}. See properties/tune/delta.yaml."
        )
    return data


# ------------------------------------------------------------------------------ checks
def _error(path: str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"Search-space file {path!r}: {key} {problem}.")


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _one_of(path, key, value, choices) -> str:
    if value not in choices:
        raise _error(path, key, f"is {value!r}{_did_you_mean(value, choices)}; write one of {', '.join(choices)}")
    return value


def _positive_int(path, key, value) -> int:
    if not _is_int(value) or value < 1:
        raise _error(path, key, f"is {value!r}; it must be a whole number >= 1")
    return value


def _optional_int(path, key, value) -> Optional[int]:
    if value is not None and not _is_int(value):
        raise _error(path, key, f"is {value!r}; it must be a whole number (or left out)")
    return value


def _mapping(path, key, value) -> dict:
    if not isinstance(value, dict):
        raise _error(path, key, f"is {value!r}; it must be a mapping such as {{a: 1, b: 2}}")
    return value


def _resources(path, value) -> Dict[str, float]:
    value = _mapping(path, "resources_per_trial", value or {})
    for key, amount in value.items():
        if key not in RESOURCE_KEYS:
            raise _error(path, f"resources_per_trial.{key}",
                         f"is not a resource{_did_you_mean(key, RESOURCE_KEYS)}; use cpu and gpu")
        if not _is_number(amount) or amount < 0:
            raise _error(path, f"resources_per_trial.{key}", f"is {amount!r}; it must be a number >= 0")
    resources = {**DEFAULT_RESOURCES, **value}
    if resources["cpu"] <= 0:
        raise _error(path, "resources_per_trial.cpu", "must be > 0 (each trial needs a CPU to run on)")
    return resources


def _asha(path, value, scheduler) -> Dict[str, float]:
    if value is None:
        return {"grace_period": DEFAULT_GRACE_PERIOD, "reduction_factor": DEFAULT_REDUCTION_FACTOR}
    if scheduler != "asha":
        raise _error(path, "asha", f"is given but scheduler is {scheduler!r}; set scheduler: asha or remove asha:")
    value = _mapping(path, "asha", value)
    for key, amount in value.items():
        if key not in ASHA_KEYS:
            raise _error(path, f"asha.{key}", f"is not an ASHA setting{_did_you_mean(key, ASHA_KEYS)}; "
                         f"use {', '.join(ASHA_KEYS)}")
    merged = {"grace_period": DEFAULT_GRACE_PERIOD, "reduction_factor": DEFAULT_REDUCTION_FACTOR, **value}
    for key in ("grace_period", "max_t"):
        if key in merged:
            _positive_int(path, f"asha.{key}", merged[key])
    if not _is_number(merged["reduction_factor"]) or merged["reduction_factor"] <= 1:
        raise _error(path, "asha.reduction_factor", f"is {merged['reduction_factor']!r}; it must be a number > 1")
    return merged


def _params(path, value) -> Dict[str, Param]:
    if not value:
        raise _error(path, "params", "is missing or empty; list the RecBole/model keys to tune, e.g. "
                     "params: {iacn_delta: {grid: [0.1, 0.3]}}")
    value = _mapping(path, "params", value)
    params = {}
    for name, spec in value.items():
        _check_param_name(path, str(name))
        params[str(name)] = _param(path, str(name), spec)
    return params


def _check_param_name(path, name) -> None:
    if name in FORBIDDEN_PARAMS or name.startswith(FORBIDDEN_PREFIXES):
        raise _error(path, f"params.{name}", "cannot be tuned: it defines the data, the output folders or the "
                     "objective of the study; set it once with --config_files or --KEY=VALUE (and run one study "
                     "per dataset build for ctr_* settings)")


def _param(path, name, spec) -> Param:
    key = f"params.{name}"
    if not isinstance(spec, dict):
        return Param(name, "fixed", spec)
    if len(spec) != 1:
        raise _error(path, key, f"has {len(spec)} keys ({', '.join(map(str, spec))}); write exactly one "
                     f"distribution ({', '.join(DISTRIBUTIONS)}), a plain value, or {{{FIXED_WRAPPER}: ...}} "
                     "to fix a mapping-valued parameter")
    kind, args = next(iter(spec.items()))
    if kind == FIXED_WRAPPER:
        return Param(name, "fixed", args)
    if kind not in DISTRIBUTIONS:
        raise _error(path, key, f"uses the unknown distribution {kind!r}{_did_you_mean(kind, DISTRIBUTIONS)}; "
                     f"write one of {', '.join(DISTRIBUTIONS)}, or {{{FIXED_WRAPPER}: ...}} to fix a "
                     "mapping-valued parameter")
    return Param(name, kind, _distribution_args(path, key, kind, args))


def _distribution_args(path, key, kind, args):
    arity = DISTRIBUTIONS[kind]
    if arity is None:
        if not isinstance(args, list) or not args:
            raise _error(path, key, f"{kind}: needs a non-empty list of values, e.g. {{{kind}: [0.1, 0.3]}}")
        return args
    usage = {2: "[low, high]", 3: "[low, high, q]"}[arity]
    if not isinstance(args, list) or len(args) != arity or not all(_is_number(a) for a in args):
        raise _error(path, key, f"{kind}: needs {arity} numbers {usage}, got {args!r}")
    low, high = args[0], args[1]
    if low >= high:
        raise _error(path, key, f"{kind}: low ({low}) must be smaller than high ({high})")
    if kind == "loguniform" and low <= 0:
        raise _error(path, key, f"loguniform: bounds must be > 0 (got {args!r}); use uniform for ranges from 0")
    if kind == "quniform" and args[2] <= 0:
        raise _error(path, key, f"quniform: the step q must be > 0 (got {args[2]!r})")
    if kind == "randint" and not (_is_int(low) and _is_int(high)):
        raise _error(path, key, f"randint: bounds must be whole numbers [low, high) (got {args!r})")
    return args


def _check_search(space: StudySpace) -> None:
    tuned = space.tuned()
    if not tuned:
        raise _error(space.path, "params", "has only fixed values; give at least one parameter a distribution "
                     f"({', '.join(DISTRIBUTIONS)})")
    if space.search == "optuna":
        grids = [k for k, p in tuned.items() if p.kind == "grid"]
        if grids:
            raise _error(space.path, f"params.{grids[0]}", "uses grid, which Optuna cannot search; use choice "
                         "with the same values, or search: grid")
    if space.search == "grid" and not any(p.kind == "grid" for p in tuned.values()):
        raise _error(space.path, "search", "is grid but no parameter uses grid; use search: random for "
                     f"sampled distributions ({', '.join(SAMPLED)}), or give a parameter {{grid: [...]}}")


# ------------------------------------------------------------------------------ types
def check_param_types(space: StudySpace, defaults: dict) -> None:
    """Reject values that cannot fit a parameter's default type (e.g. ``embedding_size: {uniform: ...}``)."""
    for name, param in space.params.items():
        default = defaults.get(name)
        if default is None:
            continue
        for value in _example_values(param):
            problem = _type_problem(value, default)
            if problem:
                raise _error(space.path, f"params.{name}", f"{problem} (its default is {default!r}); "
                             f"{_type_hint(param, default)}")


def _example_values(param: Param) -> list:
    if param.kind in ("uniform", "loguniform", "quniform"):
        return [float(param.args[0])]
    if param.kind == "randint":
        return [int(param.args[0])]
    return param.values()


def _type_problem(value, default) -> Optional[str]:
    if value is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"takes true or false, not {value!r}"
    if _is_int(default):
        return None if _is_int(value) else f"takes whole numbers, not {value!r}"
    if isinstance(default, float):
        return None if _is_number(value) else f"takes numbers, not {value!r}"
    if isinstance(default, list):
        return None if isinstance(value, (list, str)) else f"takes a list, not {value!r}"
    return None


def _type_hint(param: Param, default) -> str:
    if _is_int(default) and param.kind in ("uniform", "loguniform", "quniform"):
        return "use randint: [low, high) or choice: [...] for whole numbers"
    return "fix the values"


def check_unknown_keys(space: StudySpace, known) -> None:
    """Reject parameter names that no configuration file defines (typos would tune nothing)."""
    known = set(known)
    for name in space.params:
        if name not in known:
            raise _error(space.path, f"params.{name}", "is not a RecBole or model setting"
                         f"{_did_you_mean(name, known)}; check the spelling against properties/overall.yaml and "
                         "properties/model/*.yaml")


def _plain(value):
    """Numpy scalars and tuples → plain Python values (for YAML/JSON)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


plain = _plain
