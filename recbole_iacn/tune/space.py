"""Search-space files in Ray Tune's own terms, checked with the settings' declarations.

A parameter is ``{FUNCTION: ARGUMENTS}``: ``ray.tune.FUNCTION`` (one of :data:`SAMPLERS`) called with a
list (positional arguments; for ``grid_search`` and ``choice``, the values) or a mapping (keyword
arguments). Any other value is fixed for every trial (a mapping as ``{value: {...}}``). The other keys
(search, scheduler, asha, num_samples, ...) are documented in ``properties/tune/delta.yaml``::

    params:
      iacn_delta: {grid_search: [0.1, 0.3]}              # tune.grid_search([0.1, 0.3])
      embedding_size: {randint: {lower: 8, upper: 33}}   # tune.randint(lower=8, upper=33)
      iacn_lambda: 1.0
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from recbole_iacn import settings
from recbole_iacn.errors import ConfigError
from recbole_iacn.settings import Setting, did_you_mean

SAMPLERS = ("grid_search", "choice", "uniform", "quniform", "loguniform", "qloguniform", "randn", "qrandn",
            "randint", "qrandint", "lograndint", "qlograndint")
VALUE_LISTS = ("grid_search", "choice")  # a list is the values, not positional arguments
OLD_NAMES = {"grid": "grid_search"}  # the format before Ray's names
FIXED_WRAPPER = "value"
#: Keys a study may not tune: they define the data, where things are written, or the objective.
FORBIDDEN_PARAMS = ("model", "dataset", "data_path", "checkpoint_dir", "valid_metric", "valid_metric_bigger",
                    "benchmark_filename")
FORBIDDEN_PREFIXES = ("ctr_",)
TOP_LEVEL = ("search", "scheduler", "num_samples", "max_concurrent_trials", "resources_per_trial", "asha", "seed",
             "params")
CHECKED = {s.name: s for s in (
    Setting("search", "str", "space", "search algorithm", choices=("grid", "random", "optuna")),
    Setting("scheduler", "str", "space", "trial scheduler", choices=("fifo", "asha")),
    Setting("num_samples", "int", "space", "repeats of the grid, or trials drawn", low=1),
    Setting("max_concurrent_trials", "int", "space", "trials running at once", low=1),
    Setting("seed", "int", "space", "seed of the sampler", null=True),
    Setting("cpu", "float", "space", "CPUs of one trial", low=0, open="low"),
    Setting("gpu", "float", "space", "GPUs of one trial", low=0),
    Setting("grace_period", "int", "space", "reports before ASHA may stop a trial", low=1),
    Setting("max_t", "int", "space", "reports of a full trial", low=1),
    Setting("reduction_factor", "float", "space", "ASHA's halving rate", low=1, open="low"),
)}
DEFAULTS = {"search": "grid", "scheduler": "fifo", "num_samples": 1, "max_concurrent_trials": 1, "seed": None}


@dataclass(frozen=True)
class Param:
    """One entry of ``params``: a Ray Tune function (``kind`` in SAMPLERS) or ``kind == 'fixed'``."""

    name: str
    kind: str
    args: Any

    @property
    def tuned(self) -> bool:
        return self.kind != "fixed"

    def values(self) -> list:
        """The values of a grid_search, choice or fixed entry (empty for the other functions)."""
        return list(self.args) if self.kind in VALUE_LISTS else [self.args] if self.kind == "fixed" else []

    def to_ray(self):
        """The Ray Tune object (the plain value when fixed)."""
        from ray import tune

        if self.kind == "fixed":
            return self.args
        if self.kind in VALUE_LISTS and isinstance(self.args, list):
            return getattr(tune, self.kind)(list(self.args))
        return getattr(tune, self.kind)(**self.args) if isinstance(self.args, dict) else getattr(tune, self.kind)(*self.args)


@dataclass
class StudySpace:
    """A validated search-space file."""

    path: str
    search: str = DEFAULTS["search"]
    scheduler: str = DEFAULTS["scheduler"]
    num_samples: int = DEFAULTS["num_samples"]
    max_concurrent_trials: int = DEFAULTS["max_concurrent_trials"]
    resources: Dict[str, float] = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    asha: Dict[str, float] = field(default_factory=lambda: {"grace_period": 1, "reduction_factor": 2})
    seed: Optional[int] = None
    params: Dict[str, Param] = field(default_factory=dict)

    @property
    def name(self) -> str:
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
                      "seed": self.seed, "params": {k: {p.kind: plain(p.args)} for k, p in self.params.items()}}
        if self.scheduler == "asha":
            definition["asha"] = dict(self.asha)
        return definition


def _error(path: str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"Search-space file {path!r}: {key} {problem}.")


def _checked(path: str, key: str, setting: Setting, value):
    if not setting.ok(value):
        raise _error(path, key, f"is {value!r}; it must be {setting.expects()}")
    return value


def _mapping(path: str, key: str, value, allowed) -> dict:
    if not isinstance(value, dict):
        raise _error(path, key, f"is {value!r}; it must be a mapping such as {{a: 1, b: 2}}")
    for name in value:
        if name not in allowed:
            raise _error(path, f"{key}.{name}", f"is not allowed{did_you_mean(name, allowed)}; use {', '.join(allowed)}")
    return {k: _checked(path, f"{key}.{k}", CHECKED[k], v) for k, v in value.items()}


def load_space(path) -> StudySpace:
    """Read and validate the search-space file ``path``; :class:`ConfigError` says what to fix."""
    from recbole_iacn.config import read_yaml_file

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"Search-space file {path!r} does not exist. Check the path given to --tune= (examples "
                          "are in properties/tune/).")
    data = read_yaml_file(path, what="Search-space file")
    for key in data:
        if key not in TOP_LEVEL:
            raise _error(path, key, f"is not a search-space setting{did_you_mean(key, TOP_LEVEL)}. Allowed top-level "
                         f"keys: {', '.join(TOP_LEVEL)}; put RecBole/model keys under params:")
    space = StudySpace(path=path)
    for key in DEFAULTS:
        setattr(space, key, _checked(path, key, CHECKED[key], data.get(key, DEFAULTS[key])))
    space.resources.update(_mapping(path, "resources_per_trial", data.get("resources_per_trial") or {}, ("cpu", "gpu")))
    if data.get("asha") is not None:
        if space.scheduler != "asha":
            raise _error(path, "asha", f"is given but scheduler is {space.scheduler!r}; set scheduler: asha or remove asha:")
        space.asha.update(_mapping(path, "asha", data["asha"], ("grace_period", "reduction_factor", "max_t")))
    if not data.get("params"):
        raise _error(path, "params", "is missing or empty; list the RecBole/model keys to tune, e.g. "
                     "params: {iacn_delta: {grid_search: [0.1, 0.3]}}")
    if not isinstance(data["params"], dict):
        raise _error(path, "params", f"is {data['params']!r}; it must be a mapping such as {{iacn_delta: 0.3}}")
    space.params = {str(k): _param(path, str(k), v) for k, v in data["params"].items()}
    _check_search(space)
    return space


def _param(path: str, name: str, spec) -> Param:
    key = f"params.{name}"
    if name in FORBIDDEN_PARAMS or name.startswith(FORBIDDEN_PREFIXES):
        raise _error(path, key, "cannot be tuned: it defines the data, the output folders or the objective of the "
                     "study; set it once with --config_files or --KEY=VALUE (and run one study per dataset build for "
                     "ctr_* settings)")
    setting = settings.get(name)
    if not isinstance(spec, dict):
        return Param(name, "fixed", _check_value(path, key, setting, spec))
    if len(spec) != 1:
        raise _error(path, key, f"has {len(spec)} keys ({', '.join(map(str, spec))}); write one Ray Tune function "
                     f"({', '.join(SAMPLERS)}), a plain value, or {{{FIXED_WRAPPER}: ...}} to fix a mapping")
    kind, args = next(iter(spec.items()))
    if kind == FIXED_WRAPPER:
        return Param(name, "fixed", args)
    if kind in OLD_NAMES:
        raise _error(path, key, f"uses {kind}:, the form before Ray Tune's names; write {{{OLD_NAMES[kind]}: "
                     f"{plain(args)}}} (ray.tune.{OLD_NAMES[kind]})")
    if kind not in SAMPLERS:
        raise _error(path, key, f"uses {kind!r}, which is not a Ray Tune sampling function{did_you_mean(kind, SAMPLERS)}; "
                     f"write one of {', '.join(SAMPLERS)}, or {{{FIXED_WRAPPER}: ...}} to fix a mapping")
    param = Param(name, kind, args)
    if kind in VALUE_LISTS:
        if not isinstance(args, list) or not args:
            raise _error(path, key, f"{kind}: needs a non-empty list of values, e.g. {{{kind}: [0.1, 0.3]}}")
        for value in args:
            _check_value(path, key, setting, value)
        return param
    _check_domain(path, key, setting, param)
    return param


def _check_value(path, key, setting: Optional[Setting], value):
    if setting is not None and not setting.ok(value):
        raise _error(path, key, f"takes {setting.expects()}, not {value!r}")
    return value


def _check_domain(path, key, setting: Optional[Setting], param: Param) -> None:
    """Build Ray's object (its own argument checks), then bounds and type against the declaration."""
    import inspect

    from ray import tune

    function = getattr(tune, param.kind)
    usage = f"ray.tune.{param.kind}({', '.join(inspect.signature(function).parameters)})"
    if not isinstance(param.args, (list, dict)):
        raise _error(path, key, f"{param.kind}: needs a list of arguments or a mapping of keyword arguments ({usage})")
    try:
        domain = param.to_ray()
    except (TypeError, ValueError, AssertionError) as exc:
        raise _error(path, key, f"{param.kind}: {exc} ({usage}; got {plain(param.args)})") from None
    low, high = getattr(domain, "lower", None), getattr(domain, "upper", None)
    whole = type(domain).__name__ == "Integer"
    if whole and not all(isinstance(b, int) and not isinstance(b, bool) for b in (low, high)):
        raise _error(path, key, f"{param.kind}: bounds must be whole numbers (got {plain(param.args)})")
    if low is not None and high is not None and not low < high:
        raise _error(path, key, f"{param.kind}: lower ({low}) must be smaller than upper ({high})")
    if setting is None or low is None:
        return
    if setting.kind == "int" and not whole:
        raise _error(path, key, f"takes whole numbers ({setting.expects()}), not {param.kind} values; use randint: "
                     "[lower, upper) or choice: [...] for whole numbers")
    for bound in (low, high - 1 if whole else high):
        if math.isfinite(bound) and not setting.ok(bound):
            raise _error(path, key, f"{param.kind} reaches {bound}; {setting.name} takes {setting.expects()}")


def _check_search(space: StudySpace) -> None:
    tuned = space.tuned()
    if not tuned:
        raise _error(space.path, "params", f"has only fixed values; give at least one parameter a Ray Tune function "
                     f"({', '.join(SAMPLERS)})")
    grids = [k for k, p in tuned.items() if p.kind == "grid_search"]
    if space.search == "optuna" and grids:
        raise _error(space.path, f"params.{grids[0]}", "uses grid_search, which Optuna cannot search; use choice "
                     "with the same values, or search: grid")
    if space.search == "grid" and not grids:
        raise _error(space.path, "search", "is grid but no parameter uses grid_search; use search: random for "
                     "sampled parameters, or give a parameter {grid_search: [...]}")


def check_param_types(space: StudySpace, defaults: dict) -> None:
    """Undeclared settings: the values of a grid_search, choice or fixed entry must fit the default's type."""
    for name, param in space.params.items():
        for value in param.values():
            try:
                settings.check(name, value, defaults.get(name))
            except ConfigError as exc:
                raise _error(space.path, f"params.{name}", str(exc).rstrip(".")) from None


def check_unknown_keys(space: StudySpace, known) -> None:
    """Reject parameter names that no configuration file defines (typos would tune nothing)."""
    for name in space.params:
        if name not in known:
            raise _error(space.path, f"params.{name}", f"is not a RecBole or model setting{did_you_mean(name, known)}; "
                         "check the spelling against properties/overall.yaml and properties/model/*.yaml")


def plain(value):
    """Numpy scalars and tuples → plain Python values (for YAML/JSON)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value

