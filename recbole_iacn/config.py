"""Configuration files: where the YAML defaults are, the order they are read in, how they are parsed.

The order of the default files is written once, in :func:`default_layers`; RecBole's ``Config``
(:mod:`recbole_iacn.plugin_config`) then applies the user's ``--config_files`` and ``--key=value``
overrides, in that order, as RecBole does. Importing this module does not import RecBole.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Iterable, List, Optional

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


def read_yaml_file(path: str | os.PathLike, what: str = "Config file") -> dict:
    """Read one YAML config file, with clear errors for a missing, unreadable or invalid file
    (``what`` names the kind of file in them)."""
    path = os.fspath(path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path!r} does not exist. Check the path given to --config_files.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path!r} cannot be read: {exc}.") from None
    try:
        data = yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{what} {path!r} is not valid YAML{where}: {problem}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{what} {path!r} must hold a mapping of `key: value` lines, not a {type(data).__name__}."
        )
    return data


def recbole_properties_dir() -> Optional[Path]:
    """RecBole's own ``properties/`` folder, found without importing RecBole (None if not installed)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "properties"


def plugin_layers(model_files: Iterable[str], dataset: Optional[str] = None) -> List[Path]:
    """This package's default files of a plugin model, lowest precedence first: ``overall.yaml``, the
    model's files (relative to ``properties/``), then the dataset's file if there is one."""
    props = properties_dir()
    files = [props / "overall.yaml", *[props / name for name in model_files]]
    if dataset and (props / "dataset" / f"{dataset}.yaml").is_file():
        files.append(props / "dataset" / f"{dataset}.yaml")
    return files


def default_layers(model_files: Iterable[str], dataset: Optional[str] = None) -> List[Path]:
    """Every default file of a plugin model, lowest precedence first (the order of the module
    docstring): RecBole's ``overall.yaml`` and dataset defaults, then :func:`plugin_layers`. The user's
    ``--config_files`` and ``--key=value`` overrides come after these (RecBole's ``Config`` adds them)."""
    recbole = recbole_properties_dir()
    return [recbole / "overall.yaml", recbole / "dataset" / "sample.yaml", *plugin_layers(model_files, dataset)]


def IaCNConfig(model, dataset, config_file_list=None, config_dict=None, plugin=True):
    """A RecBole ``Config`` for ``model`` (a class): :class:`recbole_iacn.plugin_config.PluginConfig`.

    Plugin models (``plugin=True``) take their defaults from :func:`default_layers` rather than from
    RecBole's name-based quick-start files, and are validated against :mod:`recbole_iacn.settings`;
    RecBole models keep RecBole's own defaults."""
    compat.apply()
    from recbole_iacn.plugin_config import PluginConfig

    return PluginConfig(model, dataset, config_file_list, config_dict, plugin)


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
    """Check ``--key=value`` overrides with :func:`recbole_iacn.settings.check` (kept for callers)."""
    check_overrides(overrides, defaults)


def check_overrides(overrides: dict, defaults: dict, where: str = "from the command line", prefix: str = "",
                    known: Optional[set] = None) -> List[str]:
    """Check every override (``--key=value`` or the Python API's ``config_dict``) with
    :func:`recbole_iacn.settings.check`: declared settings against their declaration, RecBole's other keys
    against the type of their default. Returns one warning per key that nothing knows (``prefix`` before
    it, e.g. ``--``): RecBole accepts those silently and uses its default instead."""
    from recbole_iacn import settings

    for key, value in overrides.items():
        settings.check(str(key), value, defaults.get(key), where=where)
    unknown = [str(k) for k in overrides if k not in defaults]
    return [prefix + line for line in settings.unknown_key_warnings(unknown, known)]


def check_user_settings(model_files: Iterable[str], dataset: str, config_files: Iterable[str] = (),
                        overrides: Optional[dict] = None, where: str = "in config_dict", prefix: str = "") -> List[str]:
    """Check a plugin model's ``config_files`` and ``overrides`` against its defaults (the files of
    :func:`default_layers`); raises :class:`ConfigError` on a bad value, returns the unknown-key warnings."""
    from recbole_iacn import settings

    defaults = settings.defaults(model_files, dataset, with_recbole=True)
    known = settings.known_keys()
    lines = check_config_files(iter_config_files(config_files), defaults, known)
    return lines + check_overrides(dict(overrides or {}), defaults, where, prefix, known)


def load_defaults(spec, dataset: str) -> dict:
    """The merged YAML defaults of a plugin model on a dataset (no RecBole import)."""
    from recbole_iacn import settings

    return settings.defaults(spec.config_files, dataset)


def iter_config_files(value: str | Iterable[str] | None) -> list[str]:
    """``--config_files`` as RecBole takes it: one space-separated string, or a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [p for p in value.split() if p]
    return list(value)


def key_lines(path: str | os.PathLike) -> dict:
    """``{key: line number}`` of the top-level keys of a YAML mapping file (empty when unreadable)."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            node = yaml.compose(f, Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(key.value): key.start_mark.line + 1 for key, _ in node.value}


def check_config_files(files: Iterable[str], defaults: dict, known: Optional[set] = None) -> List[str]:
    """Check every setting of the user's ``--config_files`` as a ``--key=value`` one is checked (type, range,
    finiteness; :func:`recbole_iacn.settings.check`), naming the file and line of a bad value. Returns one
    warning per key that nothing knows (RecBole accepts those silently and uses its default instead)."""
    from recbole_iacn import settings

    warnings = []
    for path in files:
        values = read_yaml_file(path)
        lines = key_lines(path)
        for key, value in values.items():
            where = f"{path}, line {lines[str(key)]}" if str(key) in lines else str(path)
            settings.check(str(key), value, defaults.get(key), where=where)
        unknown = [k for k in map(str, values) if k not in defaults]
        for line in settings.unknown_key_warnings(unknown, known):
            key = line.split(" ", 1)[0]
            where = f"{path}, line {lines[key]}" if key in lines else str(path)
            warnings.append(f"{where}: {line}")
    return warnings
