"""Configuration: RecBole's ``Config`` built from a model class, with this plugin's YAML defaults.

Precedence, lowest to highest (as in RecBole): RecBole's ``overall.yaml`` and dataset defaults,
``properties/overall.yaml``, the model's files from the registry, ``properties/dataset/<dataset>.yaml``,
the user's ``--config_files``, then ``config_dict`` / ``--key=value`` overrides.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable

import yaml

from recbole_iacn import compat
from recbole_iacn.errors import ConfigError

_PROPERTIES_ENV = "RECBOLE_IACN_PROPERTIES"


def properties_dir() -> Path:
    """Folder holding the YAML defaults: the source checkout's ``properties/``, or the installed copy."""
    candidates = []
    if os.environ.get(_PROPERTIES_ENV):
        candidates.append(Path(os.environ[_PROPERTIES_ENV]))
    candidates.append(Path(__file__).resolve().parent.parent / "properties")
    candidates.append(Path(sys.prefix) / "share" / "recbole-iacn" / "properties")
    for candidate in candidates:
        if (candidate / "overall.yaml").is_file():
            return candidate
    raise ConfigError(
        "Cannot find recbole-iacn's properties/ folder (looked in "
        + ", ".join(str(c) for c in candidates)
        + f"). Reinstall the package, or set {_PROPERTIES_ENV} to the folder."
    )


def yaml_loader():
    """RecBole's YAML loader (which also reads ``1e-4`` as a float)."""
    from recbole.config import Config

    return Config._build_yaml_loader(None)


def read_yaml_file(path: str | os.PathLike) -> dict:
    """Read one YAML config file, with clear errors for a missing, unreadable or invalid file."""
    path = os.fspath(path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"Config file {path!r} does not exist. Check the path given to --config_files.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {path!r} cannot be read: {exc}.") from None
    try:
        data = yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"Config file {path!r} is not valid YAML{where}: {problem}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"Config file {path!r} must hold a mapping of `key: value` lines, not a {type(data).__name__}."
        )
    return data


class IaCNConfig:
    """Factory for RecBole ``Config`` objects that know plugin models.

    ``IaCNConfig(model_class, dataset, ...)`` returns an instance of a ``Config`` subclass. Plugin
    models (``plugin=True``) take their defaults from this package's ``properties/`` rather than from
    RecBole's name-based quick-start files; RecBole models keep RecBole's own defaults.
    """

    def __new__(cls, model, dataset, config_file_list=None, config_dict=None, plugin=True):
        compat.apply()
        return _config_class()(model, dataset, config_file_list, config_dict, plugin)


_CONFIG_CLASS = None


def _config_class():
    """Build the ``Config`` subclass lazily, so importing this module does not import RecBole."""
    global _CONFIG_CLASS
    if _CONFIG_CLASS is not None:
        return _CONFIG_CLASS
    from recbole.config import Config

    class _PluginConfig(Config):
        def __init__(self, model, dataset, config_file_list, config_dict, plugin):
            self._plugin = plugin
            super().__init__(model, dataset, config_file_list, config_dict)
            validate = getattr(self.model_class, "validate_config", None)
            if plugin and validate is not None:
                validate(self)

        def compatibility_settings(self):
            compat.install_numpy_aliases()

        def _init_device(self):
            if "local_rank" not in self.final_config_dict:
                return super()._init_device()
            from recbole_iacn.distributed.settings import init_rank_device

            init_rank_device(self.final_config_dict)  # a rank of a multi-process run: gloo on CPU too

        def _load_config_files(self, file_list):
            merged = {}
            for path in file_list or []:
                merged.update(read_yaml_file(path))
            return merged

        def _load_cmd_line(self):
            # The command line is parsed by recbole_iacn.cli and arrives as config_dict, so the
            # Python API never picks up a host program's argv (pytest, Ray workers).
            return {}

        def _load_internal_config_dict(self, model, model_class, dataset):
            if not self._plugin:
                return super()._load_internal_config_dict(model, model_class, dataset)
            from recbole_iacn.registry import get_spec

            recbole_props = Path(sys.modules["recbole"].__file__).parent / "properties"
            props = properties_dir()
            files = [recbole_props / "overall.yaml", recbole_props / "dataset" / "sample.yaml"]
            files += [props / "overall.yaml"]
            files += [props / name for name in get_spec(model).config_files]
            dataset_file = props / "dataset" / f"{dataset}.yaml"
            if dataset_file.is_file():
                files.append(dataset_file)
            self.internal_config_dict = {}
            for file in files:
                values = read_yaml_file(file)
                self.internal_config_dict.update(values)
                if file == dataset_file:
                    self.parameters["Dataset"] += [
                        k for k in values if k not in self.parameters["Dataset"]
                    ]
            self.internal_config_dict["MODEL_TYPE"] = model_class.type

        def _set_default_parameters(self):
            data_root = self.final_config_dict["data_path"]
            super()._set_default_parameters()
            if self._plugin:
                # RecBole points ml-100k at its bundled raw files; plugin models read the CTR view
                # under data_path (recbole_iacn.data.prepare builds it on first use).
                self.final_config_dict["data_path"] = os.path.join(data_root, self.dataset)

    _CONFIG_CLASS = _PluginConfig
    return _CONFIG_CLASS


def parse_override(key: str, text: str):
    """Parse the value of one ``--key=value`` override as YAML (numbers, booleans, lists, dicts)."""
    try:
        value = yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"Cannot parse the value of --{key}={text!r}: {problem}. Values are read as YAML, e.g. "
            f"--{key}=0.001, --{key}=true, --{key}='[64, 32]' or --{key}=\"{{'a': 1}}\"."
        ) from None
    return text if value is None and text.strip() not in ("~", "null", "None", "") else value


def check_override_types(overrides: dict, defaults: dict) -> None:
    """Reject overrides whose type cannot match the default's (e.g. ``--epochs=ten``)."""
    for key, value in overrides.items():
        default = defaults.get(key)
        if default is None or value is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
            expected = "true or false"
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
            expected = "an integer"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            expected = "a number"
        elif isinstance(default, list):
            ok = isinstance(value, (list, str))
            expected = "a list such as '[64, 32]'"
        elif isinstance(default, dict):
            ok = isinstance(value, dict)
            expected = "a mapping such as \"{'a': 1}\""
        else:
            continue
        if not ok:
            raise ConfigError(
                f"--{key}={value!r} is not valid: {key} expects {expected} (its default is {default!r})."
            )


def load_defaults(spec, dataset: str) -> dict:
    """The merged YAML defaults of a plugin model on a dataset (no RecBole import)."""
    props = properties_dir()
    merged = {}
    for file in [props / "overall.yaml", *[props / n for n in spec.config_files], props / "dataset" / f"{dataset}.yaml"]:
        if Path(file).is_file():
            merged.update(read_yaml_file(file))
    return merged


def iter_config_files(value: str | Iterable[str] | None) -> list[str]:
    """``--config_files`` as RecBole takes it: one space-separated string, or a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [p for p in value.split() if p]
    return list(value)
