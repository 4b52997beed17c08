"""Run a Ray Tune study: prepare once in the driver, start (or resume) the Tuner, write the report.

The driver resolves every relative path (config files, ``data_path``, ``checkpoint_dir``, the storage
folder) against its own working directory, because Ray runs each trial in a folder of its own, and it
builds the CTR view of the dataset once, before any trial starts.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

import yaml

from recbole_iacn.checkpoint import atomic_write, check_output_folder
from recbole_iacn.errors import ConfigError, MissingExtraError, UserError, skip_native_teardown
from recbole_iacn.tune.cluster import check_shared_folders
from recbole_iacn.tune.report import StudyReport, write_report
from recbole_iacn.tune.space import Param, StudySpace, check_params, load_space, plain
from recbole_iacn.tune.trial import VALID_PREFIX, TrialSetup, metric_key, train_trial

logger = logging.getLogger("recbole_iacn.tune")

DEFAULT_STORAGE = "ray_results"
STUDY_FILE = "study.yaml"
DEFAULT_VERBOSE = 1
CHECKPOINTS_TO_KEEP = 1  # only improving epochs report a checkpoint, so the latest is the best
#: Ray warns when num_to_keep forces experiment snapshots within 5 s; epochs of real runs are longer,
#: and the warning would repeat for every checkpoint of a tiny run.
SNAPSHOT_WARNING_ENV = "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"
OPTUNA_INSTALL = "pip install optuna  (or: pip install 'recbole-iacn[optuna]')"
PATH_KEYS = ("data_path", "checkpoint_dir")
LOGGING_KEYS = ("state", "show_progress")  # may differ when a study is resumed
CONTENTS_KEY = "config_file_contents"
SPACE_FILE_KEY = "space_file"
DEFAULTS_KEY = "default_file_contents"


@dataclass
class StudyOptions:
    """How a study runs (not what it searches): resources, storage, cluster. None = the space file's."""

    storage_path: Optional[str] = None
    name: Optional[str] = None
    address: Optional[str] = None
    cpus_per_trial: Optional[float] = None
    gpus_per_trial: Optional[float] = None
    max_concurrent: Optional[int] = None
    num_samples: Optional[int] = None
    verbose: int = DEFAULT_VERBOSE
    max_failures: int = 0
    callbacks: List[Any] = field(default_factory=list)  # ray.tune.Callback objects (loggers, tests)


@dataclass
class StudyResult:
    """What :func:`run_study` returns."""

    study_dir: str
    metric: str
    mode: str
    resumed: bool
    report: StudyReport
    files: dict = field(default_factory=dict)
    interrupted: bool = False  # Ctrl-C (SIGINT) stopped the driver before every trial ended
    expected_trials: Optional[int] = None  # trials the space defines (None: unknown)
    unfinished: int = 0  # trials that neither finished nor failed (not started, or stopped by the interrupt)

    @property
    def best(self) -> Optional[dict]:
        return self.report.best


# ------------------------------------------------------------------------------ preparing
def apply_options(space: StudySpace, options: StudyOptions) -> None:
    """Command-line resource settings override the space file's."""
    if options.cpus_per_trial is not None:
        space.resources["cpu"] = options.cpus_per_trial
    if options.gpus_per_trial is not None:
        space.resources["gpu"] = options.gpus_per_trial
    if options.max_concurrent is not None:
        space.max_concurrent_trials = options.max_concurrent
    if options.num_samples is not None:
        space.num_samples = options.num_samples


def require_search_backend(space: StudySpace) -> None:
    """Fail early, with the install command, when Optuna is asked for but missing."""
    if space.search != "optuna":
        return
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise MissingExtraError(
            f"Search-space file {space.path!r} uses search: optuna, but Optuna is not installed. "
            f"Install it with `{OPTUNA_INSTALL}`, or use search: random."
        ) from None


def merge_overrides(space: StudySpace, overrides: dict) -> dict:
    """Command-line ``--KEY=VALUE`` replace fixed values of the space; they may not set a tuned key."""
    rest = dict(overrides)
    for name, param in space.params.items():
        if name not in rest:
            continue
        if param.tuned:
            raise ConfigError(
                f"--{name}={rest[name]!r} conflicts with the search space {space.path!r}, which tunes {name} "
                f"({param.kind}). Remove --{name}, or write a space file that fixes it."
            )
        space.params[name] = Param("fixed", rest.pop(name))
        logger.info(f"{name} fixed to {space.params[name].args!r} from the command line.")
    return rest


def absolute_paths(overrides: dict, config_files: List[str]) -> tuple:
    """``(overrides, config_files)`` with relative paths resolved against the current directory."""
    overrides = dict(overrides)
    for key in PATH_KEYS:
        if isinstance(overrides.get(key), str):
            overrides[key] = os.path.abspath(overrides[key])
    return overrides, [os.path.abspath(f) for f in config_files]


@contextmanager
def _keep_cuda_visible_devices():
    """RecBole's Config sets CUDA_VISIBLE_DEVICES from gpu_id; the driver must not narrow Ray's view."""
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


def driver_config(model: str, dataset: str, config_files: List[str], overrides: dict):
    """``(config, plugin)``: the study's configuration without the tuned keys."""
    from recbole_iacn.pipeline import make_config

    with _keep_cuda_visible_devices():
        config, spec, _ = make_config(model, dataset, config_files, overrides)
    return config, spec is not None


def prepare_data(config, plugin: bool) -> str:
    """Build the CTR view once (plugin models) and return the absolute data root for the trials."""
    root = os.path.abspath(os.path.dirname(os.path.normpath(config["data_path"])))
    if plugin:
        from recbole_iacn import pipeline

        folder = pipeline.prepare_data(config, logger)
        logger.info(f"Dataset {config['dataset']}: CTR files in {folder} (shared by all trials).")
    return root


def objective(config) -> tuple:
    """``(metric, mode)`` from the configuration's ``valid_metric`` and ``valid_metric_bigger``."""
    metric = metric_key(VALID_PREFIX, str(config["valid_metric"]))
    return metric, "max" if config["valid_metric_bigger"] else "min"


def reports_per_trial(config) -> int:
    """How many times a full trial reports: once per validation, plus the final (test) report."""
    eval_step = config["eval_step"] or 1
    return max(1, int(config["epochs"]) // max(1, int(eval_step))) + 1


def study_name(space: StudySpace, model: str, dataset: str, options: StudyOptions) -> str:
    return options.name or f"{space.name}-{model}-{dataset}"


# ------------------------------------------------------------------------------ Ray objects
def make_scheduler(space: StudySpace, config):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if space.scheduler == "fifo":
        return FIFOScheduler()
    max_t = space.asha.get("max_t", reports_per_trial(config))
    if space.asha["grace_period"] > max_t:
        raise ConfigError(
            f"Search-space file {space.path!r}: asha.grace_period ({space.asha['grace_period']}) exceeds the "
            f"{max_t} reports a trial makes (epochs / eval_step + 1). Lower grace_period or raise --epochs."
        )
    return ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=space.asha["grace_period"],
                         reduction_factor=space.asha["reduction_factor"])


def make_search(space: StudySpace):
    """``(search_alg, max_concurrent_trials for TuneConfig)``: Ray's BasicVariantGenerator limits
    concurrency itself (TuneConfig's limit applies to Searchers such as Optuna only)."""
    if space.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=space.seed), space.max_concurrent_trials
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(max_concurrent=space.max_concurrent_trials, random_state=space.seed), None


def make_trainable(setup: TrialSetup, space: StudySpace):
    from ray import tune

    resources = {"cpu": space.resources["cpu"], "gpu": space.resources["gpu"]}
    return tune.with_resources(tune.with_parameters(train_trial, setup=setup), resources)


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def make_tuner(trainable, space, config, metric, mode, study_dir: Path, options: StudyOptions):
    from ray import tune

    search_alg, max_concurrent = make_search(space)
    tune_config = tune.TuneConfig(
        metric=metric, mode=mode, search_alg=search_alg, scheduler=make_scheduler(space, config),
        num_samples=space.num_samples, max_concurrent_trials=max_concurrent, trial_dirname_creator=_trial_dirname,
    )
    run_config = tune.RunConfig(
        name=study_dir.name, storage_path=str(study_dir.parent), callbacks=list(options.callbacks),
        verbose=options.verbose,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP),
        failure_config=tune.FailureConfig(max_failures=options.max_failures),
    )
    return tune.Tuner(trainable, param_space=space.param_space(), tune_config=tune_config, run_config=run_config)


def restore_tuner(trainable, study_dir: Path):
    from ray import tune

    return tune.Tuner.restore(str(study_dir), trainable=trainable, resume_unfinished=True, restart_errored=True)


# ------------------------------------------------------------------------------ the study record
def file_digest(path) -> str:
    """sha256 of a file's bytes ("missing" when it cannot be read)."""
    import hashlib

    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return "missing"


def config_contents(config_files) -> dict:
    """``{path: {sha256, settings}}`` of each config file: a study compares contents, not only paths."""
    from recbole_iacn.properties import read_yaml_file

    contents = {}
    for path in config_files:
        try:
            values = read_yaml_file(path)
        except UserError:
            values = {}
        contents[str(path)] = {"sha256": file_digest(path), "settings": values}
    return contents


def default_files(model: str, dataset: str) -> List[str]:
    """Every YAML default file a trial of ``model`` reads before the user's ``--config_files``: RecBole's and
    this package's (:func:`recbole_iacn.properties.default_layers`) for a plugin model, RecBole's ``overall.yaml``
    for a RecBole model."""
    from recbole_iacn.properties import default_layers, recbole_properties_dir
    from recbole_iacn.registry import MODELS

    if model in MODELS:
        return [str(p) for p in default_layers(MODELS[model].config_files, dataset)]
    recbole = recbole_properties_dir()
    return [str(recbole / "overall.yaml")] if recbole is not None else []


def study_definition(model, dataset, space: StudySpace, config_files, overrides) -> dict:
    """What must match for a stored study to be resumed (logging settings may change): the model, data,
    search space, overrides, and the contents (digest and settings) of every config file, of every default
    file (an edit of the package's or RecBole's YAML defaults) and of the search-space file."""
    overrides = {k: v for k, v in overrides.items() if k not in LOGGING_KEYS}
    return yaml.safe_load(yaml.safe_dump(plain({
        "model": model, "dataset": dataset, "space": space.definition(),
        "config_files": list(config_files), "overrides": overrides,
        CONTENTS_KEY: config_contents(config_files),
        DEFAULTS_KEY: config_contents(default_files(model, dataset)),
        SPACE_FILE_KEY: {"path": os.path.abspath(space.path), "sha256": file_digest(space.path)},
    })))


def _differences(stored: dict, wanted: dict, prefix: str = "") -> List[str]:
    """Dotted keys whose values differ between two nested mappings."""
    changed = []
    for key in sorted(set(stored) | set(wanted), key=str):
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed


def check_resumable(study_dir: Path, definition: dict) -> None:
    """Refuse to resume a study that was started with different settings."""
    stored_path = study_dir / STUDY_FILE
    if not stored_path.is_file():
        return
    stored = yaml.safe_load(stored_path.read_text(encoding="utf-8")) or {}
    changed = _differences(stored, definition)
    if changed:
        details = "; ".join(_describe(key, stored, definition) for key in changed)
        raise ConfigError(
            f"The study in {study_dir} was started with different settings ({', '.join(changed)} differ: "
            f"{details}; see {stored_path}), so it cannot be resumed: its trials would mix both settings in one "
            "table. Give the new study another name with --tune_name=NAME, restore the files as they were, or "
            "delete that folder to start over."
        )


def _lookup(mapping, dotted: str):
    """The value at a dotted key of :func:`_differences` (keys may contain dots: paths)."""
    value, rest = mapping, dotted
    while rest and isinstance(value, dict):
        key = next((k for k in sorted(value, key=lambda k: -len(str(k))) if rest == str(k) or rest.startswith(f"{k}.")),
                   None)
        if key is None:
            return None
        value, rest = value[key], rest[len(str(key)) + 1:]
    return value


def _describe(key: str, stored: dict, wanted: dict) -> str:
    """``config file a.yaml: learning_rate was 0.001, now 0.05`` for one changed key."""
    def short(value):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."

    old, new = _lookup(stored, key), _lookup(wanted, key)
    if key.startswith(SPACE_FILE_KEY + "."):
        path = (wanted.get(SPACE_FILE_KEY) or {}).get("path")
        return f"the search-space file {path} was edited since the study started"
    for contents, what in ((CONTENTS_KEY, "config file"), (DEFAULTS_KEY, "default file")):
        if not key.startswith(contents + "."):
            continue
        rest = key[len(contents) + 1:]
        path = next((p for p in sorted({**(stored.get(contents) or {}), **(wanted.get(contents) or {})},
                                       key=len, reverse=True) if rest.startswith(p)), rest)
        inner = rest[len(path) + 1:]
        if inner.startswith("settings."):
            return f"{what} {path}: {inner[len('settings.'):]} was {short(old)}, now {short(new)}"
        if inner == "sha256":
            return f"{what} {path} was edited since the study started"
        return f"{what} {path} changed"
    return f"{key} was {short(old)}, now {short(new)}"


def write_definition(study_dir: Path, definition: dict) -> None:
    study_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(study_dir / STUDY_FILE) as staging:
        Path(staging).write_text(yaml.safe_dump(definition, sort_keys=False), encoding="utf-8")


# ------------------------------------------------------------------------------ Ray
def start_ray(address: Optional[str]) -> None:
    """Connect to ``address`` (``auto``, ``ray://host:10001``) or start a local Ray (:func:`ray_session`)."""
    import ray

    skip_native_teardown()  # a command that started Ray ends without the teardown its destructors crashed
    if address:
        ray.init(address=address)
    else:
        ray.init(include_dashboard=False)


def stop_ray() -> None:
    """``ray.shutdown()``, not cut short by a Ctrl-C: one pressed meanwhile is ignored (the study is ending)."""
    import signal
    import threading

    import ray

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        ray.shutdown()
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


@contextmanager
def ray_session(address: Optional[str]):
    """Ray for one study: started (or connected to ``address``) here unless it runs already, and then shut down
    on the way out, whatever ends the study, a Ctrl-C during ``ray.init`` included."""
    import ray

    os.environ.setdefault(SNAPSHOT_WARNING_ENV, "0")
    owned = not ray.is_initialized()
    try:
        if owned:
            start_ray(address)
        yield
    finally:
        if owned:
            stop_ray()


# ------------------------------------------------------------------------------ the study
def refuse_multi_process_trials(overrides: dict) -> None:
    """A trial trains in one process (it reports to Ray after each epoch): no ``--nproc`` in a study."""
    from recbole_iacn.distributed import pop_settings

    settings, _ = pop_settings(overrides)
    if settings.enabled:
        raise ConfigError(
            f"--nproc={settings.nproc} / --world_size={settings.world_size} spread one training run over "
            "processes; in a study each trial trains in one process. Drop them, and give trials more room with "
            "--tune_cpus_per_trial=N or --tune_gpus_per_trial=N, or more trials at once with --tune_max_concurrent=N."
        )


def one_process(overrides: dict) -> dict:
    """``overrides`` without the multi-process settings (checked by :func:`refuse_multi_process_trials`): each
    trial runs the one-process pipeline, :func:`recbole_iacn.pipeline.run_one_process`."""
    from recbole_iacn.distributed import SETTING_KEYS

    return {k: v for k, v in overrides.items() if k not in SETTING_KEYS}


def run_study(model: str, dataset: str, space, config_files=None, overrides=None,
              options: Optional[StudyOptions] = None) -> StudyResult:
    """Run (or resume) the study over ``space`` (a path or a :class:`StudySpace`) and write its report.

    Results go to ``<storage_path>/<name>/``: ``results.csv``, ``results.md``, ``best_config.yaml``,
    plots, ``study.yaml`` (the study's definition) and Ray Tune's own files (one folder per trial).
    """
    refuse_multi_process_trials(overrides or {})
    space = space if isinstance(space, StudySpace) else load_space(space)
    options = options or StudyOptions()
    apply_options(space, options)
    require_search_backend(space)
    check_output_folder(options.storage_path or DEFAULT_STORAGE, "--tune_storage")
    overrides, config_files = absolute_paths(merge_overrides(space, dict(overrides or {})), list(config_files or []))
    config, plugin = driver_config(model, dataset, config_files, {**overrides, **space.fixed()})
    check_params(space, config.final_config_dict)
    overrides["data_path"] = prepare_data(config, plugin)
    metric, mode = objective(config)
    storage = os.path.abspath(options.storage_path or DEFAULT_STORAGE)
    study_dir = Path(storage) / study_name(space, model, dataset, options)
    setup = TrialSetup(model, dataset, config_files, one_process(overrides), space.resources["cpu"],
                       space.resources["gpu"])
    definition = study_definition(model, dataset, space, config_files, overrides)
    return _fit(setup, space, config, metric, mode, study_dir, definition, options)


def _fit(setup, space, config, metric, mode, study_dir: Path, definition, options) -> StudyResult:
    from ray import tune

    resumed = tune.Tuner.can_restore(str(study_dir))
    if resumed:
        check_resumable(study_dir, definition)
    with ray_session(options.address):
        data_folder = os.path.join(setup.overrides["data_path"], setup.dataset)
        check_shared_folders(str(study_dir.parent), options.storage_path is not None, data_folder, options.address)
        trainable = make_trainable(setup, space)
        if resumed:
            logger.info(f"Resuming the study in {study_dir} (finished trials are kept).")
            tuner = restore_tuner(trainable, study_dir)
        else:
            tuner = make_tuner(trainable, space, config, metric, mode, study_dir, options)
        write_definition(study_dir, definition)
        with _watch_interrupt() as interrupt:
            results = tuner.fit()
    study = {"name": study_dir.name, "model": setup.model, "dataset": setup.dataset}
    report = write_report(results, {k: p.kind for k, p in space.tuned().items()}, space.fixed(), metric, mode, study, study_dir)
    expected = expected_trials(space)
    return StudyResult(str(study_dir), metric, mode, resumed, report, dict(report.files),
                       interrupted=interrupt["interrupted"], expected_trials=expected,
                       unfinished=unfinished_trials(results, report.rows, expected, study_dir))


def expected_trials(space: StudySpace) -> int:
    """Trials the space defines: grid: num_samples x the grid's size; random/optuna: num_samples."""
    size = 1
    for param in space.tuned().values():
        if param.kind == "grid_search":
            size *= len(param.values())
    return space.num_samples * size


def unfinished_trials(results, rows, expected: int, study_dir=None) -> int:
    """Trials that neither ended (finished, stopped by the scheduler) nor failed: not started yet, or
    paused by an interrupt. Counted from the trial states Ray saved with the study (what resuming runs again),
    else from Ray's trials in memory, else from the table. After a Ctrl-C, Ray has stopped the trials in memory
    (TERMINATED, running or pending alike), while the saved states still say RUNNING and PENDING."""
    try:
        states = [t.status for t in _saved_trials(study_dir) or results._experiment_analysis.trials]
        ended = sum(state in ("TERMINATED", "ERROR") for state in states)
    except AttributeError:
        from recbole_iacn.tune.report import STATUS_ERROR, STATUS_FINISHED

        ended = sum(r["status"] in (STATUS_FINISHED, STATUS_ERROR) for r in rows)
    return max(0, expected - ended)


def _saved_trials(study_dir) -> list:
    """The trials of the study's newest experiment state (Ray's ``ExperimentAnalysis``), or [] if unreadable."""
    if study_dir is None:
        return []
    from ray.tune import ExperimentAnalysis

    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it repeats the 'Failed to fetch metrics' of trials that never reported
    try:
        return list(ExperimentAnalysis(str(study_dir)).trials)
    except Exception:  # noqa: BLE001 (an unreadable state: the trials in memory are counted instead)
        return []
    finally:
        quiet.setLevel(level)


@contextmanager
def _watch_interrupt():
    """Notice a Ctrl-C that Ray Tune catches: Ray replaces the SIGINT handler while it runs and, on the
    first SIGINT, stops the study and puts back the handler it found, ours. So the study was interrupted
    when, afterwards, ours is installed again (or ours was called: a second Ctrl-C)."""
    import signal
    import threading

    state = {"interrupted": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame):
        state["interrupted"] = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield state
        ray_catches = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") in ("", "0")
        if ray_catches and signal.getsignal(signal.SIGINT) is handler:
            state["interrupted"] = True
    finally:
        signal.signal(signal.SIGINT, previous)
