"""The YAML layer lookup: where the default files are, the order they are read in, how a file is parsed.

The order of the default files is written once, in :func:`default_layers`; the ``Config`` class
(:mod:`recbole_iacn.config`) then applies the user's ``--config_files`` and ``--key=value`` overrides, in
that order, as RecBole does. Importing this module imports neither torch nor RecBole.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Iterable, List, Optional

import yaml

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


def defaults(config_files: Iterable[str], dataset: Optional[str] = None, with_recbole: bool = False) -> dict:
    """The merged YAML defaults of ``properties/overall.yaml``, the given model files (relative to
    ``properties/``) and the dataset's file, as a plugin model's config reads them (no RecBole import);
    ``with_recbole``: RecBole's own default files first."""
    merged = {}
    for file in (default_layers if with_recbole else plugin_layers)(config_files, dataset):
        merged.update(read_yaml_file(file))
    return merged


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
