"""The run pipeline, written once: make the config, prepare the data, build the loaders, build the model,
train and evaluate.

Who calls it:

* :func:`recbole_iacn.quick_start.run` (the Python API) and the command line (:mod:`recbole_iacn.cli`) call
  :func:`run`, after checking the user's settings once (:func:`recbole_iacn.quick_start.check_settings`);
* :func:`run` trains in this process (:func:`run_one_process`) or, with ``nproc > 1`` or a ``world_size``,
  starts the ranks (:mod:`recbole_iacn.distributed.launcher`); each rank joins the process group at its
  entry and calls :func:`run_one_process`, not the public entry point;
* each Ray Tune trial (:mod:`recbole_iacn.tune.trial`) calls :func:`run_one_process`, the study's driver
  :func:`make_config` and :func:`prepare_data`;
* the benchmarks call :func:`prepare`, :func:`run`, :func:`build_model` and :func:`build_trainer`.

The loader choice (the tensor loader or RecBole's, one process or several) is made in :func:`choose_loader`
only. The multi-process settings are checked once, by
:func:`recbole_iacn.distributed.settings.pop_settings` in :func:`run`.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from logging import getLogger
from typing import Callable, Optional, Sequence

from recbole_iacn import compat, registry
from recbole_iacn.checkpoint import config_to_plain
from recbole_iacn.errors import ConfigError, DatasetNotFoundError, Interrupted


@dataclass
class Prepared:
    """A configured run with its data loaded: reusable across trials of a study."""

    config: object
    dataset: object
    train_data: object
    valid_data: object
    test_data: object
    plugin: bool
    model_class: type


# ------------------------------------------------------------------------------ the config
def make_config(model: str, dataset: str, config_file_list=None, config_dict=None):
    """``(config, spec, model_class)`` for a model name, plugin or RecBole; the config holds the loader
    choice (:func:`choose_loader`)."""
    from recbole_iacn.config import IaCNConfig  # imports RecBole
    from recbole_iacn.settings import check_dataset_name

    check_dataset_name(dataset, option="dataset", parent="data_path")
    compat.apply()
    spec, model_class = registry.resolve(model)
    plugin = spec is not None
    config = IaCNConfig(model_class, dataset, config_file_list, config_dict, plugin=plugin)
    loader = choose_loader(config, plugin)
    if plugin and config["data_loader"] != loader:  # so that the logged and stored config says what ran
        getLogger().info("Multi-process training reads batches through RecBole's loaders (data_loader: recbole): "
                         "the tensor loader is single-process.")
        config["data_loader"] = loader
    return config, spec, model_class


def choose_loader(config, plugin: bool) -> str:
    """The data loaders a run uses, ``tensor`` or ``recbole``; the one place this is decided.

    RecBole's models read RecBole's loaders. Plugin models read the ``data_loader`` setting (the tensor
    loader by default, :mod:`recbole_iacn.data.loader`), except in a rank of a multi-process run
    (``single_spec`` false): each rank reads its shard of every epoch through RecBole's
    ``DistributedSampler``, which only RecBole's loaders use."""
    if not plugin or not config["single_spec"]:
        return "recbole"
    return config["data_loader"]


# ------------------------------------------------------------------------------ the data
def prepare_data(config, logger=None) -> str:
    """A plugin model's CTR view of ``config["dataset"]``, built on first use and checked against the
    behaviour length (:mod:`recbole_iacn.data.prepare`); returns its folder. Runs once before a
    multi-process run's ranks or a study's trials start, and again (finding it built) in each of them."""
    from recbole_iacn.data.prepare import check_history_length, resolve_ctr_dataset

    logger = logger or getLogger()
    folder = resolve_ctr_dataset(config, logger)
    check_history_length(config, logger)
    return folder


def load_dataset(config, plugin: bool):
    """The run's dataset: the CTR view (plugin models, :func:`prepare_data`) or RecBole's own dataset of
    the atomic files (downloaded first when RecBole knows the name, as RecBole does)."""
    if plugin:
        from recbole_iacn.data.dataset import CTRDataset

        prepare_data(config)
        return CTRDataset(config)
    from recbole.data import create_dataset

    _check_raw_dataset(config)
    return create_dataset(config)


def _check_raw_dataset(config) -> None:
    path = os.path.join(config["data_path"], f"{config['dataset']}.inter")
    benchmark = config["benchmark_filename"]
    files = [path] if not benchmark else [path.replace(".inter", f".{b}.inter") for b in benchmark]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing and not benchmark:
        from recbole_iacn.data.download import fetch_known_dataset

        # As RecBole does: a dataset its url.yaml lists is downloaded (y/N, or --download=true).
        if fetch_known_dataset(config["dataset"], config["data_path"], config["download"]):
            missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise DatasetNotFoundError(
            f"Dataset {config['dataset']!r} not found for RecBole model {config['model']}: missing "
            f"{', '.join(missing)}. Put the RecBole atomic files there, or set --data_path."
        )
    _check_time_field(config, files[0])


def _check_time_field(config, inter_file: str) -> None:
    """RecBole's sequential models order each user's interactions by ``TIME_FIELD``: without it loaded,
    RecBole fails deep in its dataset ("[timestamp] is not exist in interaction"). Say so before."""
    from recbole.utils import ModelType

    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        return
    from recbole_iacn.data.common import read_header

    time_field = config["TIME_FIELD"]
    header = [field for field, _ in read_header(inter_file, config["field_separator"])]
    if time_field not in header:
        raise ConfigError(
            f"RecBole's {config['model']} is a sequential model: it orders each user's interactions by "
            f"TIME_FIELD {time_field!r}, which {inter_file}, line 1 (the header: {', '.join(header)}) does not "
            f"have. Add a {time_field} column to the file, or name the column that holds the time with "
            f"--TIME_FIELD=<column>."
        )
    load_col = config["load_col"]
    loaded = None if load_col is None else load_col.get("inter")
    if loaded is not None and time_field not in loaded:
        raise ConfigError(
            f"RecBole's {config['model']} is a sequential model: it orders each user's interactions by "
            f"TIME_FIELD {time_field!r}, which load_col does not load (inter: {', '.join(loaded)}). Add it, "
            f"e.g. --load_col=\"{{'inter': [{', '.join(repr(c) for c in [*loaded, time_field])}]}}\"."
        )


def build_loaders(config, dataset, plugin: bool) -> tuple:
    """``(train, valid, test)`` loaders of ``dataset``, as :func:`choose_loader` chose them: the tensor
    loaders (:func:`recbole_iacn.data.loader.tensor_loaders`) or RecBole's ``data_preparation``."""
    if choose_loader(config, plugin) == "tensor":
        from recbole_iacn.data.loader import tensor_loaders

        return tensor_loaders(config, *dataset.build())
    from recbole.data import data_preparation

    return data_preparation(config, dataset)


def prepare(model: str, dataset: str, config_file_list=None, config_dict=None) -> Prepared:
    """Configuration, dataset and dataloaders, as RecBole's ``run_recbole`` builds them."""
    from recbole.utils import init_seed

    config, spec, model_class = make_config(model, dataset, config_file_list, config_dict)
    plugin = spec is not None
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    data = load_dataset(config, plugin)
    logger.info(config)
    logger.info(data)
    train_data, valid_data, test_data = build_loaders(config, data, plugin)
    return Prepared(config, data, train_data, valid_data, test_data, plugin, model_class)


def init_logger(config) -> None:
    """RecBole's ``init_logger``, with a log file of this run's own: RecBole names it by model, dataset, the
    second and a hash of the settings, so two runs started together with the same settings appended to one
    file. The time stamp gets the process id and a random suffix, as checkpoint names do."""
    import secrets

    import recbole.utils.logger as recbole_logger

    stamp = recbole_logger.get_local_time
    suffix = f"p{os.getpid()}-{secrets.token_hex(2)}"
    recbole_logger.get_local_time = lambda *args, **kwargs: f"{stamp(*args, **kwargs)}-{suffix}"
    try:
        recbole_logger.init_logger(config)
    finally:
        recbole_logger.get_local_time = stamp


# ------------------------------------------------------------------------------ the model and its training
def build_model(prepared: Prepared):
    """The model of ``prepared``, on the config's device (seeded by the caller)."""
    config = prepared.config
    return prepared.model_class(config, prepared.train_data._dataset).to(config["device"])


def build_trainer(prepared: Prepared, net, epoch_callback: Optional[Callable] = None):
    """The trainer of ``net`` (:func:`recbole_iacn.trainer.trainer_class`); ``epoch_callback(trainer, epoch,
    valid_score, valid_result)`` runs after each validation."""
    from recbole_iacn.trainer import trainer_class

    trainer = trainer_class(prepared.config, prepared.plugin)(prepared.config, net)
    trainer.epoch_callback = epoch_callback
    return trainer


def train(prepared: Prepared, saved: bool = True, epoch_callback: Optional[Callable] = None) -> dict:
    """Build the model, train it with early stopping on ``valid_metric``, test the best epoch; the result
    dict of :func:`recbole_iacn.quick_start.run`."""
    from recbole.utils import get_environment, init_seed, set_color

    config = prepared.config
    logger = getLogger()
    logger.info(sys.argv)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = build_model(prepared)
    logger.info(net)
    trainer = build_trainer(prepared, net, epoch_callback)
    fit_started = time.perf_counter()
    try:
        best_valid_score, best_valid_result = trainer.fit(
            prepared.train_data, prepared.valid_data, saved=saved, show_progress=config["show_progress"]
        )
        fit_seconds = time.perf_counter() - fit_started
        test_result = trainer.evaluate(prepared.test_data, load_best_model=saved, show_progress=config["show_progress"])
    except KeyboardInterrupt as exc:
        if isinstance(exc, Interrupted):
            raise
        path = trainer.saved_model_file if saved else None
        raise Interrupted(path if path and os.path.isfile(path) else None) from None
    finally:
        close_tensorboard(trainer)
    logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
    logger.info(set_color("best valid ", "yellow") + f": {format_metrics(_plain_metrics(best_valid_result))}")
    logger.info(set_color("test result", "yellow") + f": {format_metrics(_plain_metrics(test_result))}")
    return {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": _plain_metrics(best_valid_result),
        "test_result": _plain_metrics(test_result),
        "model_file": trainer.saved_model_file if saved else None,
        "config": config_to_plain(config),
        "fit_seconds": fit_seconds,
        "epochs_run": len(trainer.train_loss_dict),
    }


def close_tensorboard(trainer) -> None:
    """Close the ``SummaryWriter`` RecBole's trainer opens (``trainer.tensorboard``) and never closes: each run
    would leave its writer thread and open event file behind, one more per run in a long-lived process (a
    notebook, the trials of a study, the benchmarks that train run after run)."""
    writer = getattr(trainer, "tensorboard", None)
    if writer is not None:
        writer.close()


def format_metrics(values: dict) -> str:
    """``auc : 0.7624    logloss : 0.5894``: metrics as plain numbers, 4 decimals."""
    return "    ".join(f"{k} : {v:.4f}" if isinstance(v, float) else f"{k} : {v}" for k, v in values.items())


def _plain_metrics(result) -> dict:
    """RecBole's metric dict with Python floats (it mixes in numpy scalars)."""
    return {k: float(v) for k, v in (result or {}).items()}


# ------------------------------------------------------------------------------ one process or several
def run_one_process(model: str, dataset: str, config_file_list=None, config_dict=None, saved: bool = True,
                    epoch_callback: Optional[Callable] = None, prepared: Optional[Prepared] = None) -> dict:
    """The pipeline in this process: prepare (unless ``prepared`` is given), train, validate, test. One rank
    of a multi-process run (``local_rank`` in ``config_dict``, the process group joined) and one trial of a
    study run this."""
    if prepared is None:
        prepared = prepare(model, dataset, config_file_list, config_dict)
    return train(prepared, saved, epoch_callback)


def run(model: str, dataset: str, config_file_list: Optional[Sequence[str]] = None, config_dict: Optional[dict] = None,
        saved: bool = True, epoch_callback: Optional[Callable] = None, prepared: Optional[Prepared] = None,
        **multi_process) -> Optional[dict]:
    """:func:`recbole_iacn.quick_start.run` without its check of the user's settings (the callers checked
    them, or are the package's own): the multi-process settings (``multi_process``: ``nproc``,
    ``world_size``, ``ip``, ``port``, ``group_offset``, as quick_start.run takes them) are taken out of
    ``config_dict`` and checked, then the run trains in this process or in ranks (:func:`launch_ranks`).
    With ``prepared``, in this process."""
    if prepared is not None:
        return run_one_process(model, dataset, config_file_list, config_dict, saved, epoch_callback, prepared)
    from recbole_iacn.distributed import pop_settings

    settings, config_dict = pop_settings(config_dict, **multi_process)
    if not settings.enabled:
        return run_one_process(model, dataset, config_file_list, config_dict, saved, epoch_callback)
    if epoch_callback is not None:
        raise ConfigError("epoch_callback cannot be used with nproc > 1: the ranks run in other "
                          "processes. Train in one process (e.g. one Ray Tune trial), or drop the callback.")
    return launch_ranks(model, dataset, config_file_list, config_dict, saved, settings)


def launch_ranks(model: str, dataset: str, config_file_list, config_dict: dict, saved: bool,
                 settings) -> Optional[dict]:
    """A multi-process run: the configuration is built and checked and the CTR view prepared here, once,
    then :func:`recbole_iacn.distributed.launcher.launch` starts the ranks, each of which joins the
    process group and runs :func:`run_one_process`."""
    from recbole_iacn.distributed.launcher import launch as start_ranks
    from recbole_iacn.distributed.settings import check_cpus, check_gpus, check_port

    config, spec, _ = make_config(model, dataset, config_file_list, config_dict)
    check_gpus(settings, config)
    check_cpus(settings, config)
    check_port(settings)
    if spec is not None:  # build the CTR view once, before the ranks read it
        prepare_data(config)
    return start_ranks(run_one_process, model, dataset, config_file_list, config_dict, saved, settings, config)
