"""Every setting this package reads, declared once: name, type, range and meaning.

The declarations are the one description used by the models' validation (:func:`validate`), the
command-line ``--key=value`` check and its help text (:mod:`recbole_iacn.cli`), the study flags
(:mod:`recbole_iacn.tune.cli`) and the search-space check (:mod:`recbole_iacn.tune.space`). Defaults are
not written here: they live in the YAML files under ``properties/`` (:func:`defaults` reads them), so a
default is written once. A new setting is one :class:`Setting` line below plus its default in YAML.

This module imports neither torch, nor RecBole, nor Ray.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, List, Optional, Tuple

import yaml

from recbole_iacn.errors import ConfigError
from recbole_iacn.properties import defaults, iter_config_files, key_lines, properties_dir, read_yaml_file
from recbole_iacn.properties import recbole_properties_dir, yaml_loader

# choices shared with the modules that implement them
ACTIVATIONS = ("relu", "prelu", "dice", "sigmoid", "tanh", "none")
EMBEDDING_INITS = ("normal", "xavier_normal")
HISTORY_POOLINGS = ("mean", "sum")
GRU_TYPES = ("AUGRU", "AGRU", "AIGRU", "GRU")
AUX_CLASSIFIERS = ("mlp", "inner_product")
LOSS_TYPES = ("BCE", "MSE")
NEGATIVE_SAMPLERS = ("uniform", "in_batch")
#: What feeds the extra item fields of a RecBole model's ``<Name>_IaCN`` (:mod:`recbole_iacn.model.fields`).
IACN_FIELDS = ("iacn", "plain", "none")
CTR_PROTOCOLS = ("dense", "dien")
NEG_SAMPLINGS = ("popularity", "uniform")
#: Values of the ``data_loader`` setting (:mod:`recbole_iacn.data.loader`).
DATA_LOADERS = ("tensor", "recbole")
#: torch.compile's modes (``torch.compile(mode=...)``).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

#: ``group`` of a setting: who reads it (the help text lists settings by group).
GROUPS = {
    "training": "training (RecBole's keys, with ranges checked here)",
    "data": "data and the CTR view",
    "model": "every plugin model",
    "DIN": "DIN",
    "DIEN": "DIEN",
    "DAIN": "DAIN",
    "IaCN": "IaCN (X_IaCN models)",
    "RecBole": "RecBole's context-aware models with IaCN through their fields (<Name>_IaCN, e.g. DeepFM_IaCN)",
    "study": "Ray Tune studies (with --tune=SPACE.yaml)",
    "distributed": "multi-process training (RecBole's names; DistributedDataParallel)",
}


@dataclass(frozen=True)
class Setting:
    """One setting. ``kind``: int, float, bool, str or sizes (a list of integers >= 1).

    ``low``/``high`` bound numbers (``open`` names the bounds that are excluded: "low", "high" or
    "both"); ``choices`` lists the values of a str setting (compared after ``case`` folding, "lower"
    or "upper"); ``null`` allows None; ``empty`` allows an empty sizes list. Numbers must be finite.
    """

    name: str
    kind: str
    group: str
    meaning: str
    low: Optional[float] = None
    high: Optional[float] = None
    open: str = ""
    choices: Tuple[str, ...] = ()
    case: str = ""
    null: bool = False
    empty: bool = False
    words: Tuple[str, ...] = ()  # words a number setting also takes (e.g. "auto")

    def expects(self) -> str:
        """What the setting takes, in words (``an integer >= 1``, ``a number in [0, 1]``)."""
        if self.kind == "bool":
            text = "true or false"
        elif self.kind == "str":
            text = f"one of {', '.join(self.choices)}" if self.choices else "a string"
        elif self.kind == "sizes":
            text = "a list of integers >= 1 such as [200, 80]" + (" (may be empty)" if self.empty else "")
        else:
            text = ("an integer" if self.kind == "int" else "a number") + self._range()
        text += "".join(f" or {word}" for word in self.words)
        return text + (" or null" if self.null else "")

    def _range(self) -> str:
        lo_open, hi_open = self.open in ("low", "both"), self.open in ("high", "both")
        if self.low is not None and self.high is not None:
            return f" in {'(' if lo_open else '['}{self.low:g}, {self.high:g}{')' if hi_open else ']'}"
        if self.low is not None:
            return f" {'>' if lo_open else '>='} {self.low:g}"
        if self.high is not None:
            return f" {'<' if hi_open else '<='} {self.high:g}"
        return ""

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.null
        if isinstance(value, str) and value in self.words:
            return True
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            if not self.choices:
                return isinstance(value, str) and value != ""
            folded = value.lower() if self.case == "lower" else value.upper() if self.case == "upper" else value
            return isinstance(value, str) and folded in self.choices
        if self.kind == "sizes":
            return isinstance(value, (list, tuple)) and (bool(value) or self.empty) and all(
                _is_int(v) and v >= 1 for v in value)
        if not (_is_int(value) if self.kind == "int" else _is_number(value)) or not math.isfinite(value):
            return False
        return self.in_range(value)

    def in_range(self, value: float) -> bool:
        lo_open, hi_open = self.open in ("low", "both"), self.open in ("high", "both")
        if self.low is not None and (value < self.low or (lo_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (hi_open and value == self.high))

    def check(self, value: Any, where: str = "") -> Any:
        """``value`` if valid; else a :class:`ConfigError` naming the setting, the value and the fix."""
        if not self.ok(value):
            where = f" ({where})" if where else ""
            raise ConfigError(f"{self.name}={value!r}{where} is not valid: {self.name} expects {self.expects()}. "
                              f"{self.name}: {self.meaning}.")
        return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _declare(*settings: Setting) -> dict:
    return {s.name: s for s in settings}


S = Setting
SETTINGS = _declare(
    # ---- training: RecBole's own keys (defaults in RecBole's and our overall.yaml)
    S("epochs", "int", "training", "maximum number of training epochs", low=1),
    S("train_batch_size", "int", "training", "training batch size", low=1),
    S("eval_batch_size", "int", "training", "evaluation batch size", low=1),
    S("learning_rate", "float", "training", "learning rate of the optimizer", low=0, open="low"),
    S("weight_decay", "float", "training", "L2 penalty of the optimizer", low=0),
    S("stopping_step", "int", "training", "validations without improvement before training stops", low=1),
    S("seed", "int", "training", "random seed"),
    S("reproducibility", "bool", "training", "deterministic torch kernels"),
    S("show_progress", "bool", "training", "progress bars per epoch"),
    S("fused_optimizer", "bool", "training", "Adam/AdamW with torch's fused kernels (CPU, CUDA); false: RecBole's loop"),
    S("compile_loss", "bool", "training", "run the training loss through torch.compile (eager, with the reason "
      "logged, where compiling fails)"),
    S("compile_mode", "str", "training", "torch.compile's mode for compile_loss: reduce-overhead also captures the "
      "loss's forward and backward as CUDA graphs on a GPU", choices=COMPILE_MODES),
    S("data_loader", "str", "data", "tensor: each split's columns become tensors once, a batch is an index slice; "
      "recbole: RecBole's loaders", choices=DATA_LOADERS),
    S("data_device_memory_fraction", "float", "data", "share of the free accelerator memory the tensor loader's "
      "data may take (0: keep it in host memory)", low=0, high=1),
    # ---- data
    S("MAX_ITEM_LIST_LENGTH", "int", "data", "behaviour length l: the most recent l behaviours are used", low=1),
    S("ctr_protocol", "str", "data", "CTR view of a raw dataset: dense (every interaction after a user's first), "
      "dien (one sample per user), or auto (dien for amazon-*, else dense)", choices=(*CTR_PROTOCOLS, "auto")),
    S("ctr_max_history", "int", "data", "behaviours stored per sample (>= any MAX_ITEM_LIST_LENGTH used); auto: "
      "100 under dien (as DIEN's training), 50 under dense", low=1, words=("auto",)),
    S("download", "bool", "data", "a dataset RecBole can download (its url.yaml) but not yet here: false asks y/N "
      "on a terminal; true downloads without asking"),
    S("ctr_neg_sampling", "str", "data", "negatives of the CTR view: by popularity (as DIEN's preprocessing) or "
      "uniform", choices=NEG_SAMPLINGS),
    S("ctr_seed", "int", "data", "seed of the CTR view's negative samples and user split"),
    # ---- every plugin model
    S("embedding_size", "int", "model", "size of each field embedding (item and category each)", low=1),
    S("item_embedding_size", "int", "model", "width of the host's item-id table E_orig (null: embedding_size)",
      low=1, null=True),
    S("embedding_init", "str", "model", "xavier_normal: per table, as RecBole; normal: every id table N(0, std^2)",
      choices=EMBEDDING_INITS),
    S("embedding_init_std", "float", "model", "std of the normal init and of the float-field vectors",
      low=0, open="low"),
    S("host_user_features", "bool", "model", "the host reads the user id and profile fields (RecBole's DIN "
      "reads none)", null=True),
    S("history_pooling", "str", "model", "pooled behaviours beside the interest: mean, or sum (DIEN authors' "
      "code)", choices=HISTORY_POOLINGS, null=True),
    S("mlp_hidden_size", "sizes", "model", "hidden sizes of the final DNN (DAIN: the NCF MLP; WideDeep: the deep "
      "part)"),
    S("dnn_activation", "str", "model", "activation of the final DNN", choices=ACTIVATIONS, case="lower"),
    S("dnn_batch_norm", "bool", "model", "batch norm after each DNN layer"),
    S("dropout_prob", "float", "model", "dropout after each DNN layer", low=0, high=1, open="high"),
    # ---- DIN and DIEN
    S("attention_mlp_sizes", "sizes", "DIN", "hidden sizes of the attention (local activation unit) MLP"),
    S("attention_activation", "str", "DIN", "activation of the attention MLP", choices=ACTIVATIONS, case="lower"),
    S("attention_softmax", "bool", "DIN", "normalise DIN's attention over the real behaviours"),
    S("gru_hidden_size", "int", "DIEN", "GRU state size (null: the host's item + category size)", low=1,
      null=True),
    S("gru_type", "str", "DIEN", "interest evolving layer", choices=GRU_TYPES, case="upper"),
    S("aux_loss_weight", "float", "DIEN", "weight of DIEN's auxiliary next-behaviour loss (alpha)", low=0),
    S("aux_classifier", "str", "DIEN", "mlp: MLP over [h_t, e] (DIEN authors' code); inner_product: "
      "sigmoid(h_t . e) (paper eq. 2)", choices=AUX_CLASSIFIERS, case="lower", null=True),
    S("aux_mlp_sizes", "sizes", "DIEN", "hidden sizes of the auxiliary network (with aux_classifier: mlp)"),
    # ---- DAIN
    S("loss_type", "str", "DAIN", "BCE on the logit, or MSE on the probability (the paper's)",
      choices=LOSS_TYPES, case="upper"),
    # ---- IaCN
    S("iacn_delta", "float", "IaCN", "delta, gradient mixing: E_aux's gradient = (1-delta) aux + delta main; 0 lets "
      "only the auxiliary loss move E_aux, 1 only the main loss", low=0, high=1),
    S("iacn_lambda", "float", "IaCN", "lambda, weight of the auxiliary loss", low=0),
    S("iacn_embedding_size", "int", "IaCN", "h: size of E_aux and of each interest capsule (null: embedding_size, "
      "which RecBole's models need: each of their fields is one embedding_size vector)", low=1, null=True),
    S("iacn_max_interests", "int", "IaCN", "K_max: K_u = max(1, min(K_max, ceil(log2 n)))", low=1),
    S("iacn_routing_iterations", "int", "IaCN", "dynamic routing iterations r", low=1),
    S("iacn_routing_stop_gradient", "bool", "IaCN", "refine routing logits without gradient (MIND's and "
      "ComiRec's code)"),
    S("iacn_routing_scale", "float", "IaCN", "s: behaviours enter the routing as s c/|c|, so that content can "
      "overturn the start logits at any catalogue size (0: c as it is, as MIND)", low=0),
    S("iacn_routing_logit_std", "float", "IaCN", "standard deviation of the fixed random start logits b0 (MIND: 1)",
      low=0, open="low"),
    S("iacn_attention_power", "int", "IaCN", "p of label-aware attention (0: mean of interests)", low=0),
    S("iacn_num_negatives", "int", "IaCN", "sampled negatives per positive in the sampled softmax", low=1),
    S("iacn_select_rows", "bool", "IaCN", "true: gather the auxiliary loss's rows first; false: compute every row, "
      "weight the others 0 (same result, no host sync)"),
    S("iacn_fused_loss", "bool", "IaCN", "true: the auxiliary loss's routing, squash and attention + softmax as "
      "autograd Functions with hand-derived backwards; false: autograd over the plain ops (same value and "
      "gradients up to rounding)"),
    S("iacn_negative_sampler", "str", "IaCN", "uniform (sampled items) or in_batch (other samples' items)",
      choices=NEGATIVE_SAMPLERS),
    S("iacn_mlp_hidden_size", "sizes", "IaCN", "hidden sizes of the ReLU MLP after routing (MIND's H layers)",
      empty=True),
    S("iacn_profile_embedding_size", "int", "IaCN", "size of each user-profile field embedding fed to that MLP",
      low=1),
    # ---- RecBole's context-aware models with IaCN (<Name>_IaCN)
    S("iacn_fields", "str", "RecBole", "what feeds the two extra item fields (the candidate's, the behaviours'): "
      "iacn (E_aux, trained by the host through delta and by the capsule task through lambda), plain (a plain item "
      "table of the same width, no auxiliary task: the width control), none (no extra fields: the RecBole model "
      "itself on the CTR view)", choices=IACN_FIELDS),
    # ---- study flags (command line only)
    S("tune_cpus_per_trial", "float", "study", "CPUs of one trial (torch uses as many threads)", low=0,
      open="low"),
    S("tune_gpus_per_trial", "float", "study", "GPUs of one trial", low=0),
    S("tune_max_concurrent", "int", "study", "trials running at once", low=1),
    S("tune_num_samples", "int", "study", "grid: repeats of the whole grid; random/optuna: number of trials",
      low=1),
    S("tune_storage", "str", "study", "folder of the studies (default ray_results)"),
    S("tune_name", "str", "study", "name of the study (default SPACE-MODEL-DATASET)"),
    S("tune_verbose", "int", "study", "Ray Tune's verbosity", low=0, high=2),
    S("tune_max_failures", "int", "study", "retries of a failed trial", low=0),
    S("address", "str", "study", "join a Ray cluster: auto or ray://HOST:10001"),
    # ---- multi-process training (defaults: RecBole's run(); recbole_iacn.distributed)
    S("nproc", "int", "distributed", "processes on this machine (gloo on CPU, NCCL on GPUs, one GPU each)", low=1),
    S("world_size", "int", "distributed", "processes on all machines together (-1: nproc)", low=-1),
    S("ip", "str", "distributed", "host name or address of the machine that runs rank 0"),
    S("port", "int", "distributed", "port of the rendezvous on that machine", low=1, high=65535),
    S("group_offset", "int", "distributed", "global rank of this machine's first process (0 on rank 0's machine)",
      low=0),
)
del S

#: settings read by the models (validated when a plugin model's config is built); :func:`declare` adds the
#: groups of settings that every plugin model reads (the others: only the models of that group)
SHARED_GROUPS = ("training", "data", "model")
#: group of each registered host that declares settings of its own
MODEL_GROUPS = ("training", "data", "model", "DIN", "DIEN", "DAIN", "IaCN", "RecBole")


def declare(group: str, heading: str, declarations: Iterable[Setting]) -> None:
    """Declare the settings of a host that :func:`recbole_iacn.registry.register` registers: each a
    :class:`Setting` of ``group`` (the host's name) with a name not declared yet; ``heading`` names the group
    in ``--help``. They are then checked, and listed, as the package's own are."""
    global MODEL_GROUPS
    declarations = list(declarations)
    for s in declarations:
        if not isinstance(s, Setting):
            raise ConfigError(f"settings of {group}: {s!r} is not a recbole_iacn.settings.Setting; declare each "
                              f"as Setting(name, kind, {group!r}, meaning, ...).")
        if s.group != group:
            raise ConfigError(f"Setting {s.name!r} is declared in group {s.group!r}, but registered with host "
                              f"{group!r}: a host's own settings are in the group named after it.")
        if s.name in SETTINGS:
            raise ConfigError(f"Setting {s.name!r} of {group} is already declared (group {SETTINGS[s.name].group!r}); "
                              "a host reads the shared settings as they are and declares only new names.")
    if len({s.name for s in declarations}) < len(declarations):
        raise ConfigError(f"settings of {group}: a name is declared twice.")
    GROUPS.setdefault(group, heading)
    if group not in MODEL_GROUPS:
        MODEL_GROUPS = (*MODEL_GROUPS, group)
    SETTINGS.update((s.name, s) for s in declarations)


def get(name: str) -> Optional[Setting]:
    return SETTINGS.get(name)


def check(key: str, value: Any, default: Any = None, where: str = "") -> Any:
    """Check one value: against its declaration, or, for an undeclared key, against the type of its
    YAML ``default`` (e.g. ``eval_step: ten`` where the default is an integer)."""
    setting = SETTINGS.get(key)
    if setting is not None:
        return setting.check(value, where)
    if default is None or value is None:
        return value
    for kind, expected in ((bool, "true or false"), (int, "an integer"), (float, "a number"),
                           (list, "a list such as '[64, 32]' (or one value)"), (dict, "a mapping such as \"{'a': 1}\"")):
        if isinstance(default, kind):
            ok = {bool: isinstance(value, bool), int: _is_int(value), float: _is_number(value),
                  list: isinstance(value, (list, str)) or _is_int(value), dict: isinstance(value, dict)}[kind]
            if ok and kind in (int, float) and not isinstance(default, bool) and not math.isfinite(value):
                ok, expected = False, "a finite number"
            if not ok:
                where = f" ({where})" if where else ""
                raise ConfigError(f"{key}={value!r}{where} is not valid: {key} expects {expected} "
                                  f"(its default is {default!r}).")
            break
    return value


def validate(config, groups: Optional[Iterable[str]] = None) -> None:
    """Check every declared setting of ``groups`` (default :data:`MODEL_GROUPS`) that ``config`` (a RecBole
    ``Config`` or a dict) holds."""
    groups = set(MODEL_GROUPS if groups is None else groups)
    for name, setting in SETTINGS.items():
        if setting.group in groups and name in config:
            setting.check(config[name])


def check_loader_config(config) -> None:
    """Reject settings the tensor loader (:mod:`recbole_iacn.data.loader`) cannot honour, before any data is
    loaded (``data_loader`` and ``data_device_memory_fraction`` themselves are checked by their
    declarations above). Which loader a run reads is :func:`recbole_iacn.pipeline.choose_loader`'s choice."""
    choice = config["data_loader"]
    if choice != "tensor":
        return
    unsupported = []
    if _samples_negatives(config["train_neg_sample_args"]):
        unsupported.append("negative sampling by the training loader (train_neg_sample_args)")
    for phase in ("valid", "test"):
        if _samples_negatives(config[f"{phase}_neg_sample_args"]):
            unsupported.append(f"negative sampling by the {phase} loader (eval_args mode)")
    if config["transform"]:
        unsupported.append(f"transform {config['transform']!r}")
    if config["save_dataloaders"]:
        unsupported.append("save_dataloaders")
    if unsupported:
        raise ConfigError(
            "data_loader: tensor reads labeled CTR rows as they are stored and does not support "
            + "; ".join(unsupported) + ". Set data_loader: recbole to use RecBole's loaders for that."
        )


def _samples_negatives(args) -> bool:
    return bool(args) and args.get("distribution", "none") != "none" and args.get("sample_num", "none") != "none"


def known_keys() -> set:
    """Every key RecBole or this package knows: RecBole's ``overall.yaml`` and dataset keys, every YAML
    file under ``properties/`` (except search spaces) and the declarations."""
    keys = set(SETTINGS)
    folders = [properties_dir()]
    recbole = recbole_properties_dir()
    if recbole is not None:
        folders.append(recbole)
    for folder in folders:
        for path in Path(folder).rglob("*.yaml"):
            if "tune" in path.relative_to(folder).parts:
                continue
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(data, dict):
                keys.update(str(k) for k in data)
    return keys


def uses_gpu(values) -> bool:
    """Whether a run with these config values trains on GPUs (RecBole's rule, plus ``use_gpu``)."""
    import torch

    gpu_id = str(values["gpu_id"] if values["gpu_id"] is not None else "")
    return bool(gpu_id.strip()) and values["use_gpu"] is not False and torch.cuda.is_available()


def check_dataset_name(name: Any, option: str = "--dataset", parent: str = "--data_path") -> str:
    """``name`` if it can name a dataset: one plain folder name, since it names the folder ``<name>/`` under
    ``parent`` and the files ``<name>.train.inter`` ... in it. Empty, ``.``, ``..``, a path (``a/b``,
    ``../x``, ``/abs``) or a name starting with ``.`` (hidden files) is a :class:`ConfigError`."""
    import os

    text = str(name) if name is not None else ""
    separators = [sep for sep in ("/", os.sep, os.altsep) if sep]
    problem = None
    if not text.strip():
        problem = "it is empty"
    elif any(sep in text for sep in separators):
        problem = "it is a path, not a name"
    elif text.startswith("."):
        problem = "it starts with '.' ('.' and '..' are folders, other such names make hidden files)"
    elif "\0" in text or text != text.strip():
        problem = "it holds a NUL character or starts or ends with white space"
    if problem:
        raise ConfigError(
            f"{option}={text!r} is not a valid dataset name: {problem}. The name is one plain folder name (it names "
            f"the folder <name>/ and the files <name>.train.inter ... in it), e.g. {option}=ml-100k; choose where "
            f"that folder is with {parent}."
        )
    return text


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key_warnings(keys: Iterable[str], known: Optional[set] = None) -> list:
    """One warning line per key that no YAML file and no declaration knows (RecBole would silently
    accept it and use the default instead), and per key declared for other models only (``iacn_lambda`` given
    to DIN, ``iacn_fields`` to DIN_IaCN): ``keys`` are those the model's defaults lack."""
    known = known_keys() if known is None else known
    lines = []
    for key in keys:
        group = getattr(SETTINGS.get(key), "group", None)
        if group in MODEL_GROUPS and group not in SHARED_GROUPS:  # declared, for other models than this one
            lines.append(f"{key} is a setting of {GROUPS[group]}, which this model does not read: it has no effect "
                         f"here.")
        elif key not in known:
            lines.append(f"{key} is not a known setting{did_you_mean(key, known)}; RecBole accepts it but nothing "
                         f"reads it.")
    return lines


# ------------------------------------------------------------------------------ the user's settings
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


def check_overrides(overrides: dict, defaults: dict, where: str = "from the command line", prefix: str = "",
                    known: Optional[set] = None) -> List[str]:
    """Check every override (``--key=value`` or the Python API's ``config_dict``) with
    :func:`check`: declared settings against their declaration, RecBole's other keys
    against the type of their default. Returns one warning per key that nothing knows (``prefix`` before
    it, e.g. ``--``): RecBole accepts those silently and uses its default instead. The multi-process settings
    (group ``distributed``) are skipped: :func:`recbole_iacn.distributed.settings.pop_settings` checks them, with
    how they combine, in every run."""
    for key, value in overrides.items():
        if getattr(SETTINGS.get(str(key)), "group", None) == "distributed":
            continue
        check(str(key), value, defaults.get(key), where=where)
    unknown = [str(k) for k in overrides if k not in defaults]
    return [prefix + line for line in unknown_key_warnings(unknown, known)]


def check_user_settings(model_files: Iterable[str], dataset: str, config_files: Iterable[str] = (),
                        overrides: Optional[dict] = None, where: str = "in config_dict", prefix: str = "") -> List[str]:
    """Check a plugin model's ``config_files`` and ``overrides`` against its defaults (the files of
    :func:`recbole_iacn.properties.default_layers`); raises :class:`ConfigError` on a bad value, returns the unknown-key warnings."""
    values = defaults(model_files, dataset, with_recbole=True)
    known = known_keys()
    lines = check_config_files(iter_config_files(config_files), values, known)
    return lines + check_overrides(dict(overrides or {}), values, where, prefix, known)


def check_config_files(files: Iterable[str], defaults: dict, known: Optional[set] = None) -> List[str]:
    """Check every setting of the user's ``--config_files`` as a ``--key=value`` one is checked (type, range,
    finiteness; :func:`check`), naming the file and line of a bad value. Returns one
    warning per key that nothing knows (RecBole accepts those silently and uses its default instead)."""
    warnings = []
    for path in files:
        values = read_yaml_file(path)
        lines = key_lines(path)
        for key, value in values.items():
            where = f"{path}, line {lines[str(key)]}" if str(key) in lines else str(path)
            check(str(key), value, defaults.get(key), where=where)
        unknown = [k for k in map(str, values) if k not in defaults]
        for line in unknown_key_warnings(unknown, known):
            key = line.split(" ", 1)[0]
            where = f"{path}, line {lines[key]}" if key in lines else str(path)
            warnings.append(f"{where}: {line}")
    return warnings


def help_table(names: Iterable[str], values: dict) -> str:
    """``--name=TYPE  meaning (default ...)`` lines, grouped, for ``--help``."""
    lines = []
    by_group = {}
    for name in names:
        by_group.setdefault(SETTINGS[name].group, []).append(SETTINGS[name])
    for group, settings in by_group.items():
        lines.append(f"{GROUPS[group]}:")
        for s in settings:
            default = f"; default {values[s.name]!r}" if s.name in values else ""
            lines.append(f"  --{s.name}  {s.expects()}{default}\n      {s.meaning}")
    return "\n".join(lines)
