"""``run_recbole_iacn.py --tune=SPACE.yaml``: study options from the command line, and the summary."""

from __future__ import annotations

import logging
import sys

from recbole_iacn import settings
from recbole_iacn.errors import ConfigError
from recbole_iacn.tune.driver import StudyOptions, StudyResult, run_study
from recbole_iacn.tune.report import STATUS_FINISHED

#: --flag -> StudyOptions field (types and ranges: recbole_iacn.settings, group "study")
OPTION_FLAGS = {
    "tune_cpus_per_trial": "cpus_per_trial",
    "tune_gpus_per_trial": "gpus_per_trial",
    "tune_max_concurrent": "max_concurrent",
    "tune_num_samples": "num_samples",
    "tune_storage": "storage_path",
    "tune_name": "name",
    "tune_verbose": "verbose",
    "tune_max_failures": "max_failures",
    "address": "address",
}
EXIT_OK = 0
EXIT_NO_RESULT = 1
EXIT_INTERRUPTED = 130


def pop_study_options(overrides: dict) -> StudyOptions:
    """Remove the ``--tune_*`` and ``--address`` flags from ``overrides`` into :class:`StudyOptions`."""
    options = StudyOptions()
    for flag, attr in OPTION_FLAGS.items():
        if flag not in overrides:
            continue
        value, setting = overrides.pop(flag), settings.SETTINGS[flag]
        if not setting.ok(value):
            raise ConfigError(f"--{flag}={value!r} is not valid: it takes {setting.expects()} ({setting.meaning}).")
        setattr(options, attr, value)
    unknown = [k for k in overrides if k.startswith("tune_")]
    if unknown:
        raise ConfigError(f"--{unknown[0]} is not a study option{settings.did_you_mean(unknown[0], OPTION_FLAGS)}; "
                          "use one of " + ", ".join(f"--{f}" for f in OPTION_FLAGS) + ".")
    return options


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced after setup)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _setup_logging() -> None:
    log = logging.getLogger("recbole_iacn.tune")
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[recbole-iacn tune] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def summary(result: StudyResult) -> str:
    """What the command prints when the study ends."""
    rows = result.report.rows
    done = sum(r["status"] == STATUS_FINISHED for r in rows)
    lines = [
        f"study: {result.study_dir} ({'resumed, ' if result.resumed else ''}{done}/{len(rows)} trials finished; "
        f"metric {result.metric}, mode {result.mode})",
        "",
        open(result.files["markdown"], encoding="utf-8").read().rstrip(),
        "",
    ]
    lines += [f"{kind}: {path}" for kind, path in result.files.items()]
    if result.interrupted:
        total = result.expected_trials if result.expected_trials is not None else len(rows)
        lines.append(f"interrupted: {result.unfinished} of {total} trials are unfinished (the table lists only "
                     "the trials that started); run the same command again to resume the study (finished trials "
                     "are kept).")
    elif done < len(rows) or result.unfinished:
        lines.append("Some trials did not finish: run the same command again to resume the study.")
    return "\n".join(lines)


def exit_status(result: StudyResult) -> int:
    """130 when the study was interrupted (as shells report Ctrl-C), 1 when no trial reported, else 0."""
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_NO_RESULT if result.best is None else EXIT_OK


def run_study_from_cli(model: str, dataset: str, config_files, overrides: dict, tune_space: str) -> int:
    """Entry point of ``--tune=FILE`` (see :mod:`recbole_iacn.cli`); returns the exit status."""
    _setup_logging()
    overrides = dict(overrides)
    options = pop_study_options(overrides)
    result = run_study(model, dataset, tune_space, config_files, overrides, options)
    print(summary(result))
    status = exit_status(result)
    if status == EXIT_NO_RESULT:
        print("error: no trial reported a validation result; see the error column of "
              f"{result.files['csv']} and the trial logs under {result.study_dir}.", file=sys.stderr)
    elif status == EXIT_INTERRUPTED:
        print(f"interrupted; {result.unfinished} trial(s) unfinished. Resume with the same command.", file=sys.stderr)
    return status
