"""Search-space files in Ray Tune's own terms, checked with the settings' declarations.

A parameter ``{FUNCTION: ARGUMENTS}`` is ``ray.tune.FUNCTION`` (one of :data:`SAMPLERS`) called with a list
(positional arguments; for ``grid_search`` and ``choice``, the values) or a mapping (keyword arguments), e.g.
``iacn_delta: {grid_search: [0.1, 0.3]}`` or ``embedding_size: {randint: {lower: 8, upper: 33}}``. Any other
value is fixed for every trial (a mapping as ``{value: {...}}``). The file format: ``properties/tune/delta.yaml``.
"""

from __future__ import annotations

import inspect
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
#: Keys a study may not tune (nor ctr_* keys): they define the data, the output folders or the objective.
FORBIDDEN_PARAMS = ("model", "dataset", "data_path", "checkpoint_dir", "valid_metric", "valid_metric_bigger",
                    "benchmark_filename")
TOP_LEVEL = ("search", "scheduler", "num_samples", "max_concurrent_trials", "seed", "resources_per_trial", "asha",
             "params")
#: The space's own keys; those that a study flag overrides share the flag's declaration.
CHECKED = {s.name: s for s in (
    Setting("search", "str", "space", "search algorithm", choices=("grid", "random", "optuna")),
    Setting("scheduler", "str", "space", "trial scheduler", choices=("fifo", "asha")),
    Setting("seed", "int", "space", "seed of the sampler", null=True),
    Setting("grace_period", "int", "space", "reports before ASHA may stop a trial", low=1),
    Setting("max_t", "int", "space", "reports of a full trial", low=1),
    Setting("reduction_factor", "float", "space", "ASHA's halving rate", low=1, open="low"),
)} | {key: settings.SETTINGS[f"tune_{flag}"] for key, flag in (
    ("num_samples", "num_samples"), ("max_concurrent_trials", "max_concurrent"), ("cpu", "cpus_per_trial"),
    ("gpu", "gpus_per_trial"))}


@dataclass(frozen=True)
class Param:
    """One entry of ``params``: a Ray Tune function (``kind`` in SAMPLERS) or ``kind == 'fixed'``."""

    kind: str
    args: Any

    @property
    def tuned(self) -> bool:
        return self.kind != "fixed"

    def values(self) -> list:
        """The values of a grid_search, choice or fixed entry (empty for the other functions)."""
        return list(self.args) if self.kind in VALUE_LISTS else [] if self.tuned else [self.args]

    def to_ray(self):
        """The Ray Tune object (the plain value when fixed)."""
        from ray import tune

        if not self.tuned:
            return self.args
        function = getattr(tune, self.kind)
        if isinstance(self.args, dict):
            return function(**self.args)
        return function(list(self.args)) if self.kind in VALUE_LISTS else function(*self.args)


@dataclass
class StudySpace:
    """A validated search-space file (the defaults are those of a file that omits a key)."""

    path: str
    search: str = "grid"
    scheduler: str = "fifo"
    num_samples: int = 1
    max_concurrent_trials: int = 1
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
        return {**definition, "asha": dict(self.asha)} if self.scheduler == "asha" else definition


def _error(path: str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"Search-space file {path!r}: {key} {problem}.")


def _section(path: str, name: str, section, allowed) -> dict:
    """``section`` (``name``: "" for the whole file) if it maps ``allowed`` keys to values that fit CHECKED."""
    if not isinstance(section, dict):
        raise _error(path, name, f"is {section!r}; it must be a mapping such as {{a: 1, b: 2}}")
    for key, value in section.items():
        where = f"{name}.{key}" if name else str(key)
        if key not in allowed:
            raise _error(path, where, f"is not allowed{did_you_mean(key, allowed)}; use {', '.join(allowed)}"
                         + ("" if name else " (RecBole/model keys go under params:)"))
        if key in CHECKED and not CHECKED[key].ok(value):
            raise _error(path, where, f"is {value!r}; it must be {CHECKED[key].expects()}")
    return section


def load_space(path) -> StudySpace:
    """Read and validate the search-space file ``path``; :class:`ConfigError` says what to fix."""
    from recbole_iacn.properties import read_yaml_file

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"Search-space file {path!r} does not exist. Check the path given to --tune= (examples "
                          "are in properties/tune/).")
    data = _section(path, "", read_yaml_file(path, what="Search-space file"), TOP_LEVEL)
    space = StudySpace(path, **{k: v for k, v in data.items() if k in CHECKED})
    resources = data.get("resources_per_trial") or {}
    space.resources.update(_section(path, "resources_per_trial", resources, ("cpu", "gpu")))
    if data.get("asha") is not None:
        if space.scheduler != "asha":
            raise _error(path, "asha", f"is given but scheduler is {space.scheduler!r}; set scheduler: asha or "
                         "remove asha:")
        space.asha.update(_section(path, "asha", data["asha"], ("grace_period", "reduction_factor", "max_t")))
    params = data.get("params")
    if not params or not isinstance(params, dict):
        raise _error(path, "params", f"is {repr(params) if params else 'missing or empty'}; list the RecBole/model "
                     "keys to tune as a mapping, e.g. params: {iacn_delta: {grid_search: [0.1, 0.3]}}")
    space.params = {str(k): _param(path, str(k), v) for k, v in params.items()}
    grids = [k for k, p in space.tuned().items() if p.kind == "grid_search"]
    if not space.tuned():
        raise _error(path, "params", f"has only fixed values; give at least one parameter a Ray Tune function "
                     f"({', '.join(SAMPLERS)})")
    if space.search == "optuna" and grids:
        raise _error(path, f"params.{grids[0]}", "uses grid_search, which Optuna cannot search; use choice with the "
                     "same values, or search: grid")
    if space.search == "grid" and not grids:
        raise _error(path, "search", "is grid but no parameter uses grid_search; use search: random for sampled "
                     "parameters, or give a parameter {grid_search: [...]}")
    return space


def _param(path: str, name: str, spec) -> Param:
    key, setting = f"params.{name}", settings.get(name)
    if name in FORBIDDEN_PARAMS or name.startswith("ctr_"):
        raise _error(path, key, "cannot be tuned: it defines the data, the output folders or the objective; set it "
                     "once with --config_files or --KEY=VALUE (one study per dataset build for ctr_* settings)")
    spec = spec if isinstance(spec, dict) else {"value": spec}
    if len(spec) != 1:
        raise _error(path, key, f"has {len(spec)} keys ({', '.join(map(str, spec))}); write one Ray Tune function "
                     f"({', '.join(SAMPLERS)}), a plain value, or {{value: ...}} to fix a mapping")
    (kind, args), = spec.items()
    if kind == "grid":
        raise _error(path, key, f"uses grid:, the form before Ray Tune's names; write {{grid_search: {plain(args)}}} "
                     "(ray.tune.grid_search)")
    if kind not in (*SAMPLERS, "value"):
        raise _error(path, key, f"uses {kind!r}, which is not a Ray Tune sampling function"
                     f"{did_you_mean(kind, SAMPLERS)}; write one of {', '.join(SAMPLERS)}, or {{value: ...}} for a "
                     "fixed mapping")
    if kind in VALUE_LISTS and not (isinstance(args, list) and args):
        raise _error(path, key, f"{kind}: needs a non-empty list of values, e.g. {{{kind}: [0.1, 0.3]}}")
    param = Param("fixed" if kind == "value" else kind, args)
    if param.tuned and kind not in VALUE_LISTS:
        _check_domain(path, key, setting, param)
    for value in param.values():
        if setting is not None and not setting.ok(value):
            raise _error(path, key, f"takes {setting.expects()}, not {value!r}")
    return param


def _check_domain(path: str, key: str, setting: Optional[Setting], param: Param) -> None:
    """Build Ray's object (its own argument checks), then bounds and type against the declaration."""
    from ray import tune

    usage = f"ray.tune.{param.kind}({', '.join(inspect.signature(getattr(tune, param.kind)).parameters)})"
    if not isinstance(param.args, (list, dict)):
        raise _error(path, key, f"{param.kind}: needs a list of arguments or a mapping of keyword arguments ({usage})")
    try:
        domain = param.to_ray()
    except (TypeError, ValueError, AssertionError) as exc:
        raise _error(path, key, f"{param.kind}: {exc} ({usage}; got {plain(param.args)})") from None
    low, high, whole = domain.lower, domain.upper, isinstance(domain, tune.search.sample.Integer)  # randn: -inf, inf
    if whole and not all(isinstance(b, int) and not isinstance(b, bool) for b in (low, high)):
        raise _error(path, key, f"{param.kind}: bounds must be whole numbers (got {plain(param.args)})")
    if not low < high:
        raise _error(path, key, f"{param.kind}: lower ({low}) must be smaller than upper ({high})")
    if setting is None:
        return
    if setting.kind == "int" and not whole:
        raise _error(path, key, f"takes whole numbers ({setting.expects()}), not {param.kind} values; use randint: "
                     "[lower, upper) or choice: [...] for whole numbers")
    for bound in (low, high - 1 if whole else high):
        if math.isfinite(bound) and not setting.ok(bound):
            raise _error(path, key, f"{param.kind} reaches {bound}; {setting.name} takes {setting.expects()}")


def check_params(space: StudySpace, config: dict) -> None:
    """Against the study's configuration: every parameter is a known key (a typo would tune nothing), and the
    values of an undeclared setting's grid_search, choice or fixed entry fit the type of its default."""
    for name, param in space.params.items():
        if name not in config:
            raise _error(space.path, f"params.{name}", f"is not a RecBole or model setting"
                         f"{did_you_mean(name, config)}; check the spelling against properties/overall.yaml and "
                         "properties/model/*.yaml")
        for value in param.values():
            try:
                settings.check(name, value, config[name])
            except ConfigError as exc:
                raise _error(space.path, f"params.{name}", str(exc).rstrip(".")) from None


def plain(value):
    """Numpy scalars and tuples → plain Python values (for YAML/JSON)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value
