"""The one place that maps a model name to its class and its default YAML files.

A host model (a :class:`~recbole_iacn.model.base.CTRModel` subclass) is added with one call,
:func:`register`, which also registers its IaCN variant ``<name>_IaCN`` (derived from it by
:func:`recbole_iacn.model.variants.with_iacn`). The package's own hosts are registered at the bottom of
this module, the same way; a user's module does::

    from recbole_iacn import registry
    registry.register(MeanPool, config_files=[Path(__file__).with_name("MeanPool.yaml")])

and ``--import=my_models`` (command line) or ``import my_models`` (Python) makes ``MeanPool`` and
``MeanPool_IaCN`` known (see ``docs/adding-a-host.md``).

RecBole's context-aware models take IaCN too, through their fields: :func:`register_recbole` registers
``<Name>_IaCN`` for a RecBole model (derived by :func:`recbole_iacn.model.fields.with_iacn_fields`), and
the 1.2.1 models of :data:`RECBOLE_CONTEXT_MODELS` are registered at the bottom of this module, except
the :data:`RECBOLE_EXCEPTIONS`, each with its reason. Where our host shadows the name (WideDeep), the
variant is ``recbole.<Name>_IaCN``.

Plugin models are looked up here; any other name is handed to RecBole's own model lookup, so
``--model=BPR`` still works. Where a plugin model shadows a RecBole model of the same name (DIN, DIEN,
WideDeep), RecBole's is reachable as ``recbole.<Name>`` (e.g. ``--model=recbole.DIN``).
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Tuple, Union

from recbole_iacn.errors import AttachmentError, ConfigError, RegistrationError, UnknownModelError

RECBOLE_PREFIX = "recbole."
RECBOLE_OPTIONAL_MODELS = ("lightgbm", "xgboost")  # RecBole models that need packages we do not install
IACN_SUFFIX = "_IaCN"
#: The IaCN component's defaults, read after the host's by every ``<host>_IaCN``.
IACN_CONFIG = "model/IaCN.yaml"
#: Derives ``<host>_IaCN`` from a host class (imported on first use, as the hosts are).
VARIANT_FACTORY = "recbole_iacn.model.variants:with_iacn"
#: Plugin modules (module names or ``.py`` files, separated by ``os.pathsep``) that processes started from
#: this one import when they look up a model they do not know: :func:`register` and :func:`import_plugin`
#: add to it, so that the ranks of a multi-process run and the trials of a study find a user's hosts.
PLUGINS_ENV = "RECBOLE_IACN_PLUGINS"
#: Where the host base class lives (its subclasses are the hosts; see :func:`check_host`).
HOST_BASE = ("recbole_iacn.model.base", "CTRModel")
#: Derives ``<Name>_IaCN`` from a RecBole context-aware model class (E_aux as extra item fields).
FIELD_ATTACHMENT = "recbole_iacn.model.fields:with_iacn_fields"
#: The defaults of ``<Name>_IaCN`` for RecBole's models, read after :data:`IACN_CONFIG`.
FIELDS_CONFIG = "model/RecBoleIaCN.yaml"
#: RecBole 1.2.1's context-aware models (``recbole.model.context_aware_recommender``).
RECBOLE_CONTEXT_MODELS = ("LR", "FM", "FFM", "FwFM", "FNN", "DeepFM", "NFM", "AFM", "PNN", "DCN", "DCNV2", "xDeepFM",
                          "AutoInt", "FiGNN", "WideDeep", "DSSM", "KD_DAGFM", "EulerNet")
#: RecBole models IaCN cannot attach to through fields, each with the reason (``with_iacn_fields`` refuses them
#: and their subclasses; ``--model=<Name>_IaCN`` says why). Every other context-aware model takes the same
#: generic attachment, with no code of its own.
RECBOLE_EXCEPTIONS = {
    "LR": "LR reads every field through one first-order weight per id (FMFirstOrderLinear) and embeds none, so "
          "an item table such as E_aux has nothing to feed: LR_IaCN would be LR with two more id weights and an "
          "auxiliary task that cannot change its predictions",
    "FFM": "FFM embeds each field once per other field (field-aware vectors v_i,F(j), in its own "
           "FieldAwareFactorizationMachine tables, not through ContextRecommender's token embeddings); E_aux holds "
           "one vector per item, which has no field-aware form without code of FFM's own",
}
#: Settings of a RecBole model that its ``<Name>_IaCN`` restricts, each with the reason: ``{model: {setting:
#: (allowed values, reason)}}`` (checked when the model is built, a restored checkpoint included).
RECBOLE_RESTRICTIONS = {
    "KD_DAGFM": {
        "teacher": (("CrossNet", "CIN"), "RecBole's KD_DAGFM builds its teacher with eval(config['teacher']): only its "
                                         "two teacher classes are accepted, so that no configuration (a checkpoint's "
                                         "included) runs code"),
        "phase": (("teacher_training",), "the distillation and finetuning phases load the file named by warm_up when "
                                         "the model is built (a restore included), which a checkpoint does not carry; "
                                         "run those phases with RecBole's own KD_DAGFM"),
    },
}


@dataclass(frozen=True)
class ModelSpec:
    """A registered plugin model: a host, or a host's IaCN variant (``has_iacn``)."""

    name: str
    target: Union[str, type]  # the host class, or "module:attribute" imported on first use
    config_files: Tuple[str, ...]  # absolute, or relative to properties/
    host: str  # the host model name (itself for hosts)
    summary: str
    label: str = ""  # the name reports and tables use ("Wide&Deep", "Wide&Deep + IaCN")
    #: "host": a CTRModel host or its variant; "recbole": a RecBole context-aware model with IaCN attached
    #: through its fields (:func:`register_recbole`; ``target`` is RecBole's class or its name)
    kind: str = "host"

    @property
    def has_iacn(self) -> bool:
        return self.name != self.host

    def load(self):
        """The model class: the host's (imported on first use), or its IaCN variant derived from it."""
        if self.kind == RECBOLE_KIND:
            return _import_target(FIELD_ATTACHMENT)(_recbole_class(self.target))
        host = check_host(_import_target(self.target), self.host)
        if not self.has_iacn:
            return host
        return _import_target(VARIANT_FACTORY)(host)


RECBOLE_KIND = "recbole"


MODELS: dict = {}
_HOSTS: list = []  # host names, in the order registered
_ATTACHED: list = []  # the RecBole models' <Name>_IaCN, in the order registered


def register(host, *, name: str | None = None, label: str | None = None, summary: str | None = None,
             config_files: Iterable[Union[str, os.PathLike]] = (), settings: Iterable = ()) -> ModelSpec:
    """Register the host model ``host`` as ``name`` and its IaCN variant as ``<name>_IaCN``.

    Args:
        host: a subclass of :class:`~recbole_iacn.model.base.CTRModel` that defines ``forward(interaction)``
            (logits ``[B]``), or ``"module:attribute"`` naming one (imported, and checked, on first use).
        name: the model name (``--model=NAME``); default: the class's name. A Python identifier, not
            already registered, not ending in ``_IaCN``.
        label: how reports and tables name the host (default: ``name``); the variant's is
            ``"<label> + IaCN"``.
        summary: one line for ``--help`` (default: the first line of the class's docstring).
        config_files: YAML files with the host's defaults (it must set at least ``embedding_size``), absolute
            or relative to the package's ``properties/``; read after ``properties/overall.yaml``, and, for the
            variant, before ``properties/model/IaCN.yaml``.
        settings: :class:`~recbole_iacn.settings.Setting` declarations of the host's own settings, in the
            group ``name`` (checked like every declared setting, and listed by ``--help``).

    Returns the host's :class:`ModelSpec`. A host class given from an importable module (not ``__main__``)
    is also added to :data:`PLUGINS_ENV`, so processes started from this one find it.
    Raises :class:`~recbole_iacn.errors.RegistrationError` for a name already registered, a name ending in
    ``_IaCN``, a class that is not a host, or a missing config file.
    """
    target = _check_target(host)
    name = _check_name(target if name is None else name)
    files = tuple(_check_config_file(f, name, lazy=isinstance(target, str)) for f in config_files)
    if isinstance(target, type):
        check_host(target, name)
        summary = summary if summary is not None else _first_line(target.__doc__)
    label = label or name
    declared = tuple(settings)
    if declared:
        from recbole_iacn import settings as declarations

        declarations.declare(name, label, declared)
    host_spec = ModelSpec(name, target, files, name, summary or name, label)
    variant = name + IACN_SUFFIX
    MODELS[name] = host_spec
    MODELS[variant] = ModelSpec(variant, target, (*files, IACN_CONFIG), name,
                                f"{name} + Interest-aware Capsule Network auxiliary task", f"{label} + IaCN")
    _HOSTS.append(name)
    if isinstance(target, type) and target.__module__ not in ("__main__", "__mp_main__"):
        _remember_plugin(target.__module__)
    return host_spec


def register_recbole(model, *, name: str | None = None, label: str | None = None, summary: str | None = None,
                     config_files: Iterable[Union[str, os.PathLike]] = ()) -> ModelSpec:
    """Register ``<Model>_IaCN``: a RecBole context-aware model with IaCN attached through its fields.

    Nothing of the model's own code is needed: :func:`recbole_iacn.model.fields.with_iacn_fields` derives the
    variant, which trains on the CTR view with ``E_aux`` entering as two more item fields (the candidate's and
    the behaviours'), and ``iacn_fields`` chooses what feeds them (``iacn``; ``plain``, the width control;
    ``none``, the model itself on the CTR view).

    Args:
        model: a RecBole model name (``"DeepFM"``), a subclass of RecBole's ``ContextRecommender`` (a model of
            one's own), or ``"module:ClassName"`` naming one.
        name: the variant's name; default ``<Model>_IaCN``, or ``recbole.<Model>_IaCN`` where a registered model
            already has the name ``<Model>`` (our WideDeep shadows RecBole's).
        label: how reports name it (default: ``"<Model> + IaCN"``).
        summary: one line for ``--help``.
        config_files: YAML files with the model's defaults (absolute, or relative to properties/), read after
            RecBole's own ``properties/model/<Model>.yaml`` when RecBole has one, before
            ``properties/model/IaCN.yaml`` and ``properties/model/RecBoleIaCN.yaml``.

    Raises :class:`~recbole_iacn.errors.AttachmentError` for a model of :data:`RECBOLE_EXCEPTIONS` (with its
    reason) and :class:`~recbole_iacn.errors.RegistrationError` for a name already registered or a missing
    config file. Whether a class is a context-aware model is checked when it is built.
    """
    if isinstance(model, str) and ":" not in model:
        base = model[len(RECBOLE_PREFIX):] if model.startswith(RECBOLE_PREFIX) else model
        if not base.isidentifier():
            raise RegistrationError(f"register_recbole({model!r}): give a RecBole model name such as 'DeepFM', a "
                                    "ContextRecommender subclass, or 'module:ClassName'.")
        target = f"{RECBOLE_TARGET}{base}"
    else:
        target = _check_target(model)
        base = target.__name__ if isinstance(target, type) else target.rpartition(":")[2]
    if base in RECBOLE_EXCEPTIONS:
        raise AttachmentError(not_attachable_message(base))
    shadowed = base in MODELS and MODELS[base].kind != RECBOLE_KIND
    host = f"{RECBOLE_PREFIX}{base}" if shadowed else base
    if name is None:
        name = f"{host}{IACN_SUFFIX}"
    plain = name[len(RECBOLE_PREFIX):] if name.startswith(RECBOLE_PREFIX) else name
    if not plain.isidentifier():
        raise RegistrationError(f"Cannot register a model named {name!r}: a model name is a Python identifier, "
                                f"optionally after {RECBOLE_PREFIX!r} (it names log folders and checkpoints).")
    if name in MODELS:
        raise RegistrationError(f"Model {name!r} is already registered. Choose another name with "
                                "register_recbole(..., name=...).")
    own = tuple(_check_config_file(f, name, lazy=False) for f in config_files)
    files = (*_recbole_model_yaml(base), *own, IACN_CONFIG, FIELDS_CONFIG)
    label = label or (f"RecBole's {base} + IaCN" if shadowed else f"{base} + IaCN")
    summary = summary or f"RecBole's {base} + IaCN through two item fields (iacn_fields: iacn | plain | none)"
    spec = ModelSpec(name, target, files, host, summary, label, kind=RECBOLE_KIND)
    MODELS[name] = spec
    _ATTACHED.append(name)
    if isinstance(target, type) and target.__module__ not in ("__main__", "__mp_main__") and \
            not target.__module__.startswith("recbole."):
        _remember_plugin(target.__module__)
    return spec


RECBOLE_TARGET = "recbole:"  # a target naming a RecBole model, found by RecBole's own lookup


def not_attachable_message(base: str) -> str:
    """Why IaCN cannot attach to RecBole's ``base`` (one of :data:`RECBOLE_EXCEPTIONS`)."""
    return (f"{base}{IACN_SUFFIX} cannot be built: {RECBOLE_EXCEPTIONS[base]}. IaCN attaches to the other "
            f"context-aware models ({', '.join(attached_names()) or 'none registered'}).")


def _recbole_model_yaml(base: str) -> tuple:
    """RecBole's own defaults file of model ``base`` (absolute), if RecBole has one."""
    from recbole_iacn.properties import recbole_properties_dir

    folder = recbole_properties_dir()
    path = folder / "model" / f"{base}.yaml" if folder is not None else None
    return (str(path),) if path is not None and path.is_file() else ()


def _recbole_class(target):
    """RecBole's class for a :func:`register_recbole` target (a class, ``module:Class`` or ``recbole:Name``)."""
    if isinstance(target, str) and target.startswith(RECBOLE_TARGET):
        from recbole_iacn import compat

        compat.apply()
        from recbole.utils import get_model

        return get_model(target[len(RECBOLE_TARGET):])
    return _import_target(target)


def _check_target(host):
    if isinstance(host, str):
        module, _, attr = host.partition(":")
        if not module or not attr.isidentifier():
            raise RegistrationError(f"register({host!r}): a host given by name is 'module:ClassName', e.g. "
                                    "'my_models:MeanPool'.")
        return host
    if not isinstance(host, type):
        raise RegistrationError(f"register({host!r}): a host is a class (a subclass of "
                                f"{'.'.join(HOST_BASE)}), not a {type(host).__name__}.")
    return host


def _check_name(name) -> str:
    if isinstance(name, type):
        name = name.__name__
    elif isinstance(name, str) and ":" in name:  # "module:Class" without a name
        name = name.rpartition(":")[2]
    if not isinstance(name, str) or not name.isidentifier():
        raise RegistrationError(f"Cannot register a model named {name!r}: a model name is a Python identifier, "
                                "such as MeanPool (it names log folders and checkpoints).")
    if name.endswith(IACN_SUFFIX):
        raise RegistrationError(
            f"Cannot register a host named {name!r}: names ending in {IACN_SUFFIX} are the IaCN variants, which "
            f"register() derives from each host. Register the host itself ({name[:-len(IACN_SUFFIX)]!r}); "
            f"{name!r} comes with it.")
    if name in MODELS:
        where = MODELS[name].target
        where = f"{where.__module__}.{where.__qualname__}" if isinstance(where, type) else where
        raise RegistrationError(f"Model {name!r} is already registered (by {where}). Choose another name with "
                                "register(..., name=...), or import the module that registers it only once.")
    variant = name + IACN_SUFFIX
    if variant in MODELS:  # RecBole's model of that name, with IaCN attached through its fields
        raise RegistrationError(f"Cannot register a host named {name!r}: its variant's name {variant!r} is taken by "
                                f"{MODELS[variant].label}. Choose another name with register(..., name=...).")
    return name


def _check_config_file(path, name: str, lazy: bool) -> str:
    """``path`` as :func:`~recbole_iacn.properties.plugin_layers` reads it (absolute, or relative to
    ``properties/``); a file that is not there is an error now rather than at the first run."""
    text = os.fspath(path)
    if lazy and not os.path.isabs(text):
        return text  # the package's own files, under properties/ (found when a config is built)
    from recbole_iacn.properties import properties_dir

    found = Path(text) if os.path.isabs(text) else properties_dir() / text
    if not found.is_file():
        raise RegistrationError(
            f"Config file {text!r} of model {name!r} does not exist ({found}). Give the host's YAML defaults as an "
            "absolute path, e.g. Path(__file__).with_name('MyHost.yaml'), or one relative to properties/.")
    return text


def check_host(cls, name: str):
    """``cls`` if it can be a host: a subclass of :class:`~recbole_iacn.model.base.CTRModel` (not an IaCN
    variant already) that defines ``forward``; else a :class:`~recbole_iacn.errors.RegistrationError`.

    The base class is looked up among the loaded modules: a subclass of it has loaded it, and the registry
    (below the models in the package's layers) never imports the models itself except by name."""
    module, attr = HOST_BASE
    base = getattr(sys.modules.get(module), attr, None)
    if not isinstance(cls, type) or base is None or not issubclass(cls, base):
        raise RegistrationError(
            f"{cls!r} cannot be registered as host {name!r}: a host is a subclass of {module}.{attr} (its "
            "features, loss and item-embedding hook are what the IaCN variant builds on).")
    if getattr(cls, "iacn_host", None) is not None:
        raise RegistrationError(
            f"{cls.__qualname__} cannot be registered as host {name!r}: it already carries the IaCN component "
            f"(it is, or derives from, {cls.iacn_host.__name__}{IACN_SUFFIX}). Register {cls.iacn_host.__name__}.")
    own = cls.__mro__[: cls.__mro__.index(base)]
    if not any("forward" in vars(c) for c in own):
        raise RegistrationError(f"{cls.__qualname__} cannot be registered as host {name!r}: it does not define "
                                "forward(interaction), which returns the logits [B].")
    return cls


def _first_line(doc) -> str:
    lines = [line.strip() for line in (doc or "").strip().splitlines()]
    return lines[0] if lines else ""


def _import_target(target):
    if isinstance(target, type):
        return target
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


# ------------------------------------------------------------------------------ plugin modules
_IMPORTED: set = set()  # entries of PLUGINS_ENV this process has imported (or tried to)


def import_plugin(entry: str, where: str = "--import"):
    """Import a plugin module that registers hosts: a module name (``my_models``) or a ``.py`` file
    (``path/to/my_models.py``, imported as ``my_models`` with its folder put on ``sys.path``). The entry (a
    file as its absolute path) is added to :data:`PLUGINS_ENV`. Raises :class:`~recbole_iacn.errors.ConfigError`
    when there is no such module or file (``where`` names who asked for it); errors raised inside the module
    propagate."""
    text = str(entry).strip()
    if not text:
        raise ConfigError(f"{where} needs a module name (my_models) or a .py file (path/to/my_models.py).")
    module = text
    if text.endswith(".py") or os.sep in text or (os.altsep and os.altsep in text):
        path = Path(text).resolve()
        if not path.is_file():
            raise ConfigError(f"{where}: {text} is not a file ({path}). Give a .py file that registers hosts, or "
                              "a module name.")
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        text, module = str(path), path.stem
    _IMPORTED.add(text)
    listed = _listed_plugins()
    _remember_plugin(text)  # before the module's own register() calls add its name: files come first
    try:
        return importlib.import_module(module)
    except BaseException as exc:
        if text not in listed:  # leave the list as it was
            os.environ[PLUGINS_ENV] = os.pathsep.join(listed)
            if not listed:
                del os.environ[PLUGINS_ENV]
        if isinstance(exc, ModuleNotFoundError) and exc.name is not None and (
                module == exc.name or module.startswith(exc.name + ".")):
            raise ConfigError(f"{where}: no module named {exc.name!r} (looked on sys.path from {os.getcwd()}). "
                              "Give the module's name as `import` takes it, or the path of its .py file.") from None
        raise  # an error inside the module (or a module it imports is missing): its own, with its traceback


def import_plugins(entries: Iterable[str] | str) -> None:
    """:func:`import_plugin` for each entry (a list, or one string of names separated by spaces or commas)."""
    if isinstance(entries, str):
        entries = entries.replace(",", " ").split()
    for entry in entries:
        import_plugin(entry)


def _listed_plugins() -> list:
    return [e for e in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if e]


def _remember_plugin(entry: str) -> None:
    listed = _listed_plugins()
    if entry not in listed:
        os.environ[PLUGINS_ENV] = os.pathsep.join([*listed, entry])


def _import_listed_plugins() -> None:
    """Import the :data:`PLUGINS_ENV` modules not imported yet (a process started by one that registered a
    user's host, looking up that host)."""
    for entry in _listed_plugins():
        if entry not in _IMPORTED:
            import_plugin(entry, where=f"{PLUGINS_ENV}={os.environ.get(PLUGINS_ENV)!r}")


# ------------------------------------------------------------------------------ lookup
def model_names() -> list[str]:
    return list(MODELS)


def host_names() -> list[str]:
    """The registered host models (DIN, DIEN, WideDeep, DAIN, then any registered since): each also
    registered as ``<host>_IaCN``."""
    return list(_HOSTS)


def attached_names() -> list[str]:
    """The registered RecBole context-aware models with IaCN attached through their fields
    (``DeepFM_IaCN``, ..., ``recbole.WideDeep_IaCN``, then any registered since by :func:`register_recbole`)."""
    return list(_ATTACHED)


def host_model_names() -> list[str]:
    """The registered hosts and their variants (the models of kind ``host``), in registration order."""
    return [name for name, spec in MODELS.items() if spec.kind != RECBOLE_KIND]


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        _import_listed_plugins()
    name = _alias(name)
    if name not in MODELS:
        _refuse_exception(name)
        raise UnknownModelError(_unknown_message(name))
    return MODELS[name]


def _alias(name: str) -> str:
    """``recbole.DeepFM_IaCN`` is ``DeepFM_IaCN`` (RecBole's model with IaCN attached), where no model of ours
    shadows the name."""
    if name not in MODELS and name.startswith(RECBOLE_PREFIX):
        plain = name[len(RECBOLE_PREFIX):]
        if plain in MODELS and MODELS[plain].kind == RECBOLE_KIND:
            return plain
    return name


def _iacn_base(name: str) -> Optional[str]:
    """``Name`` of ``Name_IaCN`` or ``recbole.Name_IaCN``; None for a name without the suffix."""
    if not isinstance(name, str) or not name.endswith(IACN_SUFFIX):
        return None
    base = name[: -len(IACN_SUFFIX)]
    return base[len(RECBOLE_PREFIX):] if base.startswith(RECBOLE_PREFIX) else base


def _refuse_exception(name: str) -> None:
    """A clear error for ``<Name>_IaCN`` of a RecBole model IaCN cannot attach to."""
    base = _iacn_base(name)
    if base in RECBOLE_EXCEPTIONS:
        raise AttachmentError(not_attachable_message(base))


def _unknown_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(MODELS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return (
        f"Unknown model {name!r}.{hint} Plugin models: {', '.join(MODELS)}. Any RecBole model name "
        f"also works (e.g. BPR, DeepFM); RecBole's own DIN, DIEN and WideDeep are "
        f"'{RECBOLE_PREFIX}DIN', '{RECBOLE_PREFIX}DIEN' and '{RECBOLE_PREFIX}WideDeep'. A host of your own is "
        "known once the module that registers it is imported (--import=MODULE; docs/adding-a-host.md)."
    )


def _not_context_aware_message(name: str, get_model) -> Optional[str]:
    """For ``<Name>_IaCN`` where RecBole's ``Name`` exists but is not a context-aware model (BPR, SASRec, RecBole's
    DIN): why IaCN does not attach to it, and what does; None otherwise."""
    base = _iacn_base(name)
    if base is None:
        return None
    try:
        model_class = get_model(base)
    except (ValueError, ImportError):
        return None
    kind = getattr(getattr(model_class, "type", None), "name", "other").lower()
    ours = f" This package's own {base}_IaCN is '{base}_IaCN'." if f"{base}_IaCN" in MODELS else ""
    return (
        f"{name}: IaCN attaches to RecBole's context-aware models, through their item fields; RecBole's {base} is a "
        f"{kind} model, without such fields to feed. With IaCN: {', '.join(n for n in MODELS if n.endswith(IACN_SUFFIX))}."
        f"{ours}"
    )


def resolve(name: str):
    """Return ``(spec, cls)``: ``spec`` is the plugin ModelSpec, or None for a RecBole model."""
    if not isinstance(name, str) or not name:
        raise UnknownModelError(_unknown_message(str(name)))
    if name not in MODELS:
        _import_listed_plugins()
    name = _alias(name)
    if name in MODELS:
        spec = MODELS[name]
        return spec, spec.load()
    _refuse_exception(name)
    recbole_name = name[len(RECBOLE_PREFIX):] if name.startswith(RECBOLE_PREFIX) else name
    from recbole_iacn import compat

    compat.apply()
    from recbole.utils import get_model

    try:
        return None, get_model(recbole_name)
    except ValueError:
        raise UnknownModelError(_not_context_aware_message(name, get_model) or _unknown_message(name)) from None
    except ImportError as exc:
        # RecBole imports its LightGBM/XGBoost wrappers last, only for names it found nowhere else
        if recbole_name.lower() in RECBOLE_OPTIONAL_MODELS:
            raise UnknownModelError(f"RecBole's {recbole_name} needs an extra package: {exc}. Install it with pip.") from None
        raise UnknownModelError(_not_context_aware_message(name, get_model) or _unknown_message(name)) from None


# ------------------------------------------------------------------------------ the package's hosts
register("recbole_iacn.model.din:DIN", config_files=["model/DIN.yaml"],
         summary="Deep Interest Network: local activation unit over behaviours")
register("recbole_iacn.model.dien:DIEN", config_files=["model/DIEN.yaml"],
         summary="Deep Interest Evolution Network: GRU + AUGRU, auxiliary loss")
register("recbole_iacn.model.widedeep:WideDeep", label="Wide&Deep", config_files=["model/WideDeep.yaml"],
         summary="Wide & Deep with the behaviour sequence pooled")
register("recbole_iacn.model.dain:DAIN", config_files=["model/DAIN.yaml"],
         summary="Deep Adaptive Interest Network: user/item/context MLP")

# ------------------------------------------------------------------------------ RecBole's context-aware models
for _name in RECBOLE_CONTEXT_MODELS:
    if _name not in RECBOLE_EXCEPTIONS:
        register_recbole(_name)
del _name
