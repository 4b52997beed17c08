"""Command line of ``run_recbole_iacn.py``: RecBole's conventions, clear errors, no tracebacks.

    python run_recbole_iacn.py --model=DIEN_IaCN --dataset=ml-100k
    python run_recbole_iacn.py --model=DIN --dataset=ml-100k --config_files="a.yaml b.yaml" --learning_rate=1e-4

``argparse`` reads the options of this command (``--model``, ``--dataset``, ``--config_files``,
``--import``, ``--tune``); every other ``--key=value`` is a RecBole or model setting, read as YAML and checked against
:mod:`recbole_iacn.settings`, which also writes the settings part of ``--help``.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from recbole_iacn.errors import CompatibilityError, ConfigError, CtrlC, Interrupted, UserError

USAGE = ("run_recbole_iacn.py --model=NAME --dataset=NAME [--config_files='a.yaml b.yaml'] [--import=MODULES] "
         "[--KEY=VALUE ...]")
RESERVED = ("model", "dataset", "config_files")
DEFAULT_MODEL = "DIEN_IaCN"
DEFAULT_DATASET = "ml-100k"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # a ConfigError (one paragraph, exit 2) instead of argparse's exit
        raise ConfigError(f"{message}. Usage: {USAGE}")


class _Once(argparse.Action):
    """Stores the value; the same option given twice with different values is an error."""

    def __call__(self, parser, namespace, value, option_string=None):
        previous = getattr(namespace, self.dest)
        if previous is not None and previous != value:
            raise ConfigError(f"{option_string} is given twice, with different values ({previous!r} and {value!r}).")
        setattr(namespace, self.dest, value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="run_recbole_iacn.py", usage=USAGE, add_help=False, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train, validate and test a click-through-rate model (RecBole's pipeline), print the best "
        "validation and test metrics, and save the best model as a safe checkpoint.",
    )
    parser.add_argument("--model", action=_Once, metavar="NAME",
                        help=f"model to train (default {DEFAULT_MODEL}): a registered model below, or any RecBole "
                        "model (e.g. BPR; RecBole's own DIN is recbole.DIN)")
    parser.add_argument("--dataset", action=_Once, metavar="NAME",
                        help=f"dataset (default {DEFAULT_DATASET}, bundled with RecBole); see dataset/README.md")
    parser.add_argument("--config_files", action=_Once, metavar="FILES", help="space-separated YAML files, as in RecBole")
    parser.add_argument("--import", dest="plugins", action=_Once, metavar="MODULES",
                        help="modules (or .py files), space- or comma-separated, imported first: each registers "
                        "hosts of its own with recbole_iacn.registry.register (see docs/adding-a-host.md)")
    parser.add_argument("--tune", action=_Once, metavar="SPACE.yaml",
                        help="run a Ray Tune study over the search space in SPACE.yaml instead (examples in "
                        "properties/tune/; study settings below)")
    parser.add_argument("-h", "--help", action="store_true", help="show this message (with --model=NAME: that "
                        "model's settings and defaults)")
    return parser


def help_text(model: str = DEFAULT_MODEL, dataset: str = DEFAULT_DATASET) -> str:
    """``--help``: the options, the registered models, and every declared setting of ``model`` with its
    default from the YAML files."""
    from recbole_iacn import settings
    from recbole_iacn.registry import MODELS

    width = max(len(n) for n in MODELS)
    models = "\n".join(f"  {name:<{width}}  {spec.summary}" for name, spec in MODELS.items())
    spec = MODELS.get(model, MODELS[DEFAULT_MODEL])
    try:
        values = settings.defaults(spec.config_files, dataset, with_recbole=True)
    except UserError:
        values = {}
    names = [n for n, s in settings.SETTINGS.items() if n in values or s.group in ("training", "study", "distributed")]
    return (
        build_parser().format_help()
        + f"\nregistered models:\n{models}\n\n"
        + f"settings of {spec.name} (--KEY=VALUE, read as YAML; defaults from properties/ for {dataset}):\n"
        + settings.help_table(names, values)
        + _model_file_settings(spec)
        + "\n\nAny other RecBole setting is accepted as --KEY=VALUE too (e.g. --gpu_id=0).\n"
    )


def _model_file_settings(spec) -> str:
    """The settings of the model's own YAML files that no declaration describes (a RecBole model's, such as
    DCN's cross_layer_num), with their defaults."""
    from recbole_iacn import settings
    from recbole_iacn.properties import plugin_layers, read_yaml_file

    undeclared = {}
    for path in plugin_layers(spec.config_files)[1:]:  # (not overall.yaml)
        try:
            values = read_yaml_file(path)
        except UserError:
            continue
        undeclared.update((k, v) for k, v in values.items() if k not in settings.SETTINGS)
    if not undeclared:
        return ""
    lines = "\n".join(f"  --{k}  default {v!r}" for k, v in undeclared.items())
    return f"\n{spec.name}'s other settings (its model files: {', '.join(map(str, spec.config_files))}):\n{lines}"


def parse_args(argv: List[str]) -> dict:
    """``--key=value`` arguments → ``{key: raw string}`` (``model``, ``dataset``, ``config_files`` and
    ``tune`` read by argparse), with clear errors for anything else."""
    known, rest = build_parser().parse_known_args(argv)
    parsed = {k: v for k, v in vars(known).items() if v is not None and k != "help"}
    for arg in rest:
        if not arg.startswith("--") or "=" not in arg or arg.startswith("--="):
            hint = f" Write it as {arg}=VALUE." if arg.startswith("--") and "=" not in arg else ""
            raise ConfigError(f"Unrecognised argument {arg!r}.{hint} Usage: {USAGE}")
        key, value = arg[2:].split("=", 1)
        if key in parsed and parsed[key] != value:
            raise ConfigError(f"--{key} is given twice, with different values ({parsed[key]!r} and {value!r}).")
        parsed[key] = value
    return parsed


def build_overrides(raw: dict, model: str, dataset: str, config_files=()) -> dict:
    """Typed overrides from raw strings, read as YAML; then the settings of ``--config_files`` and the overrides
    are checked, once (:func:`recbole_iacn.quick_start.check_settings`): a bad value is an error, an unknown key
    of a plugin model a warning on stderr."""
    from recbole_iacn.quick_start import check_settings
    from recbole_iacn.settings import parse_override

    overrides = {k: parse_override(k, v) for k, v in raw.items()}
    for line in check_settings(model, dataset, config_files, overrides, where="from the command line", prefix="--"):
        print(f"warning: {line}", file=sys.stderr)
    return overrides


def format_result(result: dict) -> str:
    from recbole_iacn.pipeline import format_metrics

    lines = [
        f"best valid: {format_metrics(result['best_valid_result'])}",
        f"test result: {format_metrics(result['test_result'])}",
    ]
    if result.get("model_file"):
        lines.append(f"checkpoint: {result['model_file']}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    with CtrlC() as ctrl_c:  # a Ctrl-C Python could not raise (in a finaliser) still ends the command with 130
        try:
            return _main(argv, ctrl_c)
        except KeyboardInterrupt:
            return ctrl_c.exit()


def _main(argv: Optional[List[str]], ctrl_c: CtrlC) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        raw = parse_args(argv)
        plugins = raw.pop("plugins", None)
        if plugins is not None:  # before the model is looked up: they register models
            from recbole_iacn.registry import import_plugins

            import_plugins(plugins)
        if any(a in ("-h", "--help") for a in argv):
            print(help_text(raw.get("model", DEFAULT_MODEL), raw.get("dataset", DEFAULT_DATASET)))
            return 0
        model = raw.pop("model", DEFAULT_MODEL)
        from recbole_iacn.settings import check_dataset_name

        dataset = check_dataset_name(raw.pop("dataset", DEFAULT_DATASET))
        from recbole_iacn.properties import iter_config_files

        config_files = iter_config_files(raw.pop("config_files", None))
        tune_space = raw.pop("tune", None)
        study_flags = [k for k in raw if k.startswith("tune_") or k == "address"]
        if tune_space is None and study_flags:
            raise ConfigError(f"--{study_flags[0]} is a study option: it needs --tune=SPACE.yaml.")
        overrides = build_overrides(raw, model, dataset, config_files)
        if tune_space is not None:
            from recbole_iacn.tune import run_study_from_cli

            return run_study_from_cli(model, dataset, config_files, overrides, tune_space)
        from recbole_iacn.pipeline import run  # the settings were checked above, in the command line's words

        result = run(model, dataset, config_files, overrides)
    except UserError as exc:  # (one stopped by Ctrl-C, exit 130, says 'interrupted', as below)
        ctrl_c.raise_if_pressed()
        print(f"{'' if exc.exit_code == Interrupted.exit_code else 'error: '}{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C: one line, exit 130 as shells do
        return ctrl_c.exit(exc.message() if isinstance(exc, Interrupted) else "interrupted")
    except CompatibilityError as exc:  # the stack cannot run RecBole 1.2.1; the extras are UserErrors, above
        ctrl_c.raise_if_pressed()
        print(f"error: {exc}", file=sys.stderr)  # (any other ImportError is a bug: it propagates)
        return 3
    ctrl_c.raise_if_pressed()  # one that landed in a finaliser did not stop the run
    print(format_result(result))
    return 0
