"""Command line of ``run_recbole_iacn.py``: RecBole's conventions, clear errors, no tracebacks.

    python run_recbole_iacn.py --model=DIEN_IaCN --dataset=ml-100k
    python run_recbole_iacn.py --model=DIN --dataset=ml-100k --config_files="a.yaml b.yaml" --learning_rate=1e-4
"""

from __future__ import annotations

import sys
from typing import List, Optional

from recbole_iacn.errors import ConfigError, UserError

USAGE = "run_recbole_iacn.py --model=NAME --dataset=NAME [--config_files='a.yaml b.yaml'] [--KEY=VALUE ...]"
RESERVED = ("model", "dataset", "config_files")
DEFAULT_MODEL = "DIEN_IaCN"
DEFAULT_DATASET = "ml-100k"


def help_text() -> str:
    from recbole_iacn.registry import MODELS

    width = max(len(n) for n in MODELS)
    models = "\n".join(f"  {name:<{width}}  {spec.summary}" for name, spec in MODELS.items())
    return f"""usage: {USAGE}

Train, validate and test a click-through-rate model (RecBole's pipeline), print the best validation
and test metrics, and save the best model as a safe checkpoint.

options:
  --model=NAME          model to train (default {DEFAULT_MODEL}); registered models below, or any
                        RecBole model (e.g. BPR; RecBole's own DIN is recbole.DIN)
  --dataset=NAME        dataset (default {DEFAULT_DATASET}, bundled with RecBole); see dataset/README.md
  --config_files=FILES  space-separated YAML files, as in RecBole
  --tune=SPACE.yaml     run a Ray Tune study over the search space in SPACE.yaml instead
                        (examples in properties/tune/); with it: --tune_cpus_per_trial=N,
                        --tune_gpus_per_trial=N, --tune_max_concurrent=N, --tune_num_samples=N,
                        --tune_storage=DIR (default ray_results), --tune_name=NAME, --tune_verbose=0|1|2,
                        --tune_max_failures=N, --address=auto|ray://HOST:10001 (join a Ray cluster)
  --nproc=N             train on N processes (DistributedDataParallel: gloo on CPU, NCCL on GPUs with
                        one per process, e.g. --gpu_id='0,1'); metrics over all processes' predictions;
                        across machines add --world_size=N --ip=HOST --port=N --group_offset=N (RecBole's)
  --KEY=VALUE           any RecBole or model parameter, read as YAML (e.g. --learning_rate=1e-4,
                        --iacn_delta=0.3, --mlp_hidden_size='[200, 80]', --gpu_id=0)
  -h, --help            show this message

registered models:
{models}
"""


def parse_args(argv: List[str]) -> dict:
    """``--key=value`` arguments → ``{key: raw string}``, with clear errors for anything else."""
    parsed = {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg or arg.startswith("--="):
            hint = ""
            if arg.startswith("--") and "=" not in arg:
                hint = f" Write it as {arg}=VALUE."
            raise ConfigError(f"Unrecognised argument {arg!r}.{hint} Usage: {USAGE}")
        key, value = arg[2:].split("=", 1)
        if key in parsed and parsed[key] != value:
            raise ConfigError(f"--{key} is given twice, with different values ({parsed[key]!r} and {value!r}).")
        parsed[key] = value
    return parsed


def build_overrides(raw: dict, model: str, dataset: str) -> dict:
    """Typed overrides from raw strings, checked against the defaults' types where known."""
    from recbole_iacn.config import check_override_types, load_defaults, parse_override
    from recbole_iacn.registry import MODELS

    overrides = {k: parse_override(k, v) for k, v in raw.items()}
    if model in MODELS:
        check_override_types(overrides, load_defaults(MODELS[model], dataset))
    return overrides


def format_result(result: dict) -> str:
    def metrics(values):
        return "    ".join(f"{k} : {v:.4f}" if isinstance(v, float) else f"{k} : {v}" for k, v in values.items())

    lines = [
        f"best valid: {metrics(result['best_valid_result'])}",
        f"test result: {metrics(result['test_result'])}",
    ]
    if result.get("model_file"):
        lines.append(f"checkpoint: {result['model_file']}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(help_text())
        return 0
    try:
        raw = parse_args(argv)
        model = raw.pop("model", DEFAULT_MODEL)
        dataset = raw.pop("dataset", DEFAULT_DATASET)
        from recbole_iacn.config import iter_config_files

        config_files = iter_config_files(raw.pop("config_files", None))
        tune_space = raw.pop("tune", None)
        study_flags = [k for k in raw if k.startswith("tune_") or k == "address"]
        if tune_space is None and study_flags:
            raise ConfigError(f"--{study_flags[0]} is a study option: it needs --tune=SPACE.yaml.")
        overrides = build_overrides(raw, model, dataset)
        if tune_space is not None:
            from recbole_iacn.tune import run_study_from_cli

            return run_study_from_cli(model, dataset, config_files, overrides, tune_space)
        from recbole_iacn.quick_start import run

        result = run(model, dataset, config_files, overrides)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:  # compat.CompatibilityError and missing optional extras
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(format_result(result))
    return 0
