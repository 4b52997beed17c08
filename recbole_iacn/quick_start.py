"""Train, validate and test a model; restore a trained one. The Python face of run_recbole_iacn.py."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from logging import getLogger
from typing import Callable, Optional, Sequence

from recbole_iacn import compat, registry
from recbole_iacn.checkpoint import config_to_plain, load_checkpoint
from recbole_iacn.errors import (
    CheckpointError,
    ConfigError,
    DataFormatError,
    DatasetNotFoundError,
    Interrupted,
    UserError,
)


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


def make_config(model: str, dataset: str, config_file_list=None, config_dict=None):
    """``(config, spec, model_class)`` for a model name, plugin or RecBole."""
    from recbole_iacn.config import IaCNConfig  # imports RecBole
    from recbole_iacn.settings import check_dataset_name

    check_dataset_name(dataset, option="dataset", parent="data_path")
    compat.apply()
    spec, model_class = registry.resolve(model)
    config = IaCNConfig(model_class, dataset, config_file_list, config_dict, plugin=spec is not None)
    return config, spec, model_class


def prepare(model: str, dataset: str, config_file_list=None, config_dict=None) -> Prepared:
    """Configuration, dataset and dataloaders, as RecBole's ``run_recbole`` builds them (plugin models:
    the loaders chosen by ``data_loader``, see :mod:`recbole_iacn.data.loader`)."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    config, spec, model_class = make_config(model, dataset, config_file_list, config_dict)
    plugin = spec is not None
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    if plugin:
        from recbole_iacn.data.dataset import CTRDataset
        from recbole_iacn.data.loader import data_preparation as build_loaders
        from recbole_iacn.data.prepare import check_history_length, resolve_ctr_dataset

        resolve_ctr_dataset(config, logger)
        check_history_length(config, logger)
        data = CTRDataset(config)
    else:
        _check_raw_dataset(config)
        data = create_dataset(config)
        build_loaders = data_preparation
    logger.info(config)
    logger.info(data)
    train_data, valid_data, test_data = build_loaders(config, data)
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


def _check_raw_dataset(config) -> None:
    import os

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


def run(
    model: str,
    dataset: str,
    config_file_list: Optional[Sequence[str]] = None,
    config_dict: Optional[dict] = None,
    saved: bool = True,
    epoch_callback: Optional[Callable] = None,
    prepared: Optional[Prepared] = None,
    nproc: Optional[int] = None,
    world_size: Optional[int] = None,
    ip: Optional[str] = None,
    port: Optional[int] = None,
    group_offset: Optional[int] = None,
) -> dict:
    """Train ``model`` on ``dataset``, keep the best epoch by ``valid_metric``, and test it.

    Args:
        model: a registered plugin model (``DIN``, ``DIEN_IaCN``, ...) or any RecBole model name.
        dataset: dataset name (see :mod:`recbole_iacn.data.prepare` for where it is looked up).
        config_file_list: YAML files, as RecBole's ``--config_files``.
        config_dict: overrides, as RecBole's ``--key=value``.
        saved: save the best model (a safe checkpoint) and reload it for the test.
        epoch_callback: ``f(trainer, epoch, valid_score, valid_result)`` after each validation.
        prepared: a :class:`Prepared` from :func:`prepare`, to skip loading the data again.
        nproc, world_size, ip, port, group_offset: RecBole's multi-process settings (default: from
            ``config_dict``, else one process). With ``nproc > 1`` (or a ``world_size``) the run is
            spread over processes with DistributedDataParallel (:mod:`recbole_iacn.distributed`):
            ``train_batch_size`` stays the batch of all processes together, each rank takes its share.

    Returns:
        dict with ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``,
        ``test_result``, ``model_file`` (None unless saved), ``config`` (plain dict), ``fit_seconds``
        (training with its validations) and ``epochs_run``. In a
        multi-process run, global rank 0's (the metrics are those of all ranks' predictions
        together); None on a machine that does not run rank 0.
    """
    if prepared is None:
        from recbole_iacn.distributed import pop_settings
        from recbole_iacn.settings import check_dataset_name

        check_dataset_name(dataset, option="dataset", parent="data_path")
        check_settings(model, dataset, config_file_list, config_dict)

        settings, config_dict = pop_settings(
            config_dict, nproc=nproc, world_size=world_size, ip=ip, port=port, group_offset=group_offset
        )
        if settings.enabled:
            if epoch_callback is not None:
                raise ConfigError("epoch_callback cannot be used with nproc > 1: the ranks run in other "
                                  "processes. Train in one process (e.g. one Ray Tune trial), or drop the callback.")
            return _launch(model, dataset, config_file_list, config_dict, saved, settings)
    return run_one_process(model, dataset, config_file_list, config_dict, saved, epoch_callback, prepared)


def _launch(model: str, dataset: str, config_file_list, config_dict: dict, saved: bool, settings) -> Optional[dict]:
    """A multi-process run: the configuration is built and checked and the CTR view prepared here, once,
    then :func:`recbole_iacn.distributed.launcher.launch` starts the ranks, each of which joins the
    process group and runs :func:`run_one_process`."""
    from recbole_iacn.distributed.launcher import launch
    from recbole_iacn.distributed.settings import check_cpus, check_gpus, check_port

    config, spec, _ = make_config(model, dataset, config_file_list, config_dict)
    if spec is not None and config["data_loader"] == "tensor":
        # the ranks shard each epoch with RecBole's DistributedSampler, which only RecBole's loaders use
        getLogger().info("Multi-process training reads batches through RecBole's loaders (data_loader: recbole): "
                         "the tensor loader is single-process.")
        config_dict = {**config_dict, "data_loader": "recbole"}
    check_gpus(settings, config)
    check_cpus(settings, config)
    check_port(settings)
    if spec is not None:  # build the CTR view once, before the ranks read it
        from recbole_iacn.data.prepare import check_history_length, resolve_ctr_dataset

        resolve_ctr_dataset(config, getLogger())
        check_history_length(config, getLogger())
    return launch(run_one_process, model, dataset, config_file_list, config_dict, saved, settings, config)


def run_one_process(model: str, dataset: str, config_file_list=None, config_dict=None, saved: bool = True,
                    epoch_callback: Optional[Callable] = None, prepared: Optional[Prepared] = None) -> dict:
    """The pipeline of :func:`run` in this process (one rank of a multi-process run: ``local_rank`` in
    ``config_dict``, the process group joined): prepare, train, validate, test. Settings are not checked
    again here."""
    from recbole.utils import get_environment, init_seed, set_color

    from recbole_iacn.trainer import trainer_class

    if prepared is None:
        prepared = prepare(model, dataset, config_file_list, config_dict)
    config = prepared.config
    logger = getLogger()
    logger.info(sys.argv)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = prepared.model_class(config, prepared.train_data._dataset).to(config["device"])
    logger.info(net)
    trainer = trainer_class(config, prepared.plugin)(config, net)
    trainer.epoch_callback = epoch_callback
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


def check_settings(model: str, dataset: str, config_file_list=None, config_dict=None) -> None:
    """The Python API checks a plugin model's settings as the command line does: a bad value is a
    :class:`ConfigError` naming ``config_dict`` or the file and line, an unknown key an
    :class:`~recbole_iacn.errors.UnknownSettingWarning` (RecBole would silently use the default instead)."""
    import warnings

    from recbole_iacn.settings import check_user_settings
    from recbole_iacn.errors import UnknownSettingWarning

    if model not in registry.MODELS:
        return
    if config_dict is not None and not isinstance(config_dict, dict):
        raise ConfigError(f"config_dict must be a dict of settings, not {type(config_dict).__name__}.")
    for line in check_user_settings(registry.MODELS[model].config_files, dataset, config_file_list or (), config_dict,
                                    where="in config_dict", prefix="config_dict: "):
        warnings.warn(line, UnknownSettingWarning, stacklevel=3)


def format_metrics(values: dict) -> str:
    """``auc : 0.7624    logloss : 0.5894``: metrics as plain numbers, 4 decimals."""
    return "    ".join(f"{k} : {v:.4f}" if isinstance(v, float) else f"{k} : {v}" for k, v in values.items())


def _plain_metrics(result) -> dict:
    """RecBole's metric dict with Python floats (it mixes in numpy scalars)."""
    return {k: float(v) for k, v in (result or {}).items()}


# ------------------------------------------------------------------------------ restoring
class _PlainConfig(dict):
    """A stored config dict that answers ``config[key]`` with None for unknown keys, as RecBole's does."""

    def __getitem__(self, key):
        return self.get(key)


@dataclass
class LoadedModel:
    """A trained plugin model restored for prediction."""

    model: object
    config: dict
    schema: object

    def encode(self, records):
        """Raw records (dicts or a DataFrame with token strings; behaviour lists as space-separated
        strings or lists, oldest first) → a RecBole ``Interaction`` of ids. Unknown tokens map to
        [PAD] (0); an unknown behaviour is left out of the item and the category list together (the two
        lists must be equally long, as in the atomic files); a whole number given for a token (``49.0``)
        is read as its integer token (``"49"``); the candidate's category is looked up from the item
        when absent."""
        import torch
        from recbole.data.interaction import Interaction

        frame = _records_frame(records)
        s = self.schema
        indexes = {}

        def index_of(name):
            if name not in indexes:
                vocab = s.vocab.get(name) or s.vocab.get(_vocab_owner(s, name), [])
                indexes[name] = {token: i for i, token in enumerate(vocab)}
            return indexes[name]

        data = {}
        for name, ids in self._behaviour_ids(frame, index_of).items():
            rows = torch.zeros(len(frame), s.fields[name].seq_len, dtype=torch.long)
            for r, row_ids in enumerate(ids):
                row_ids = row_ids[-s.fields[name].seq_len:]
                rows[r, : len(row_ids)] = torch.tensor(row_ids, dtype=torch.long)
            data[name] = rows
        for name, info in s.fields.items():
            if name in (s.label_field, s.history_length_field) or name not in frame:
                continue
            if info.type == "token":
                absent = [r for r, v in enumerate(frame[name]) if v is None or (isinstance(v, float) and v != v)]
                if absent:
                    raise DataFormatError(f"records[{absent[0]}] has no value for {name}; give it in every record.")
                index = index_of(name)
                data[name] = torch.tensor([index.get(_token(v, name, r), 0) for r, v in enumerate(frame[name])],
                                          dtype=torch.long)
            elif info.type == "float":
                try:
                    data[name] = torch.tensor(frame[name].astype(float).to_numpy(), dtype=torch.float)
                except (TypeError, ValueError):
                    raise DataFormatError(f"records: {name} is a float field, but holds a value that is not a "
                                          "number.") from None
        if s.history_item_field in data:
            data[s.history_length_field] = (data[s.history_item_field] > 0).sum(1)
        if s.item_category_field and s.item_category_field not in data and s.item_categories and s.item_field in data:
            table = torch.tensor(s.item_categories, dtype=torch.long)
            data[s.item_category_field] = table[data[s.item_field]]
        missing = [f for f in self.required_fields() if f not in data]
        if missing:
            raise DataFormatError(
                f"records lack the field(s) {', '.join(missing)} needed by {self.config['model']}; every record "
                f"needs {', '.join(self.required_fields())} (behaviour lists as space-separated strings or lists)."
            )
        return Interaction(data)

    def _behaviour_ids(self, frame, index_of) -> dict:
        """``{token_seq field: [ids of each record]}``. The behaviour item and category lists are read in
        pairs: they must be equally long, and a position whose item or category is unknown is left out of
        both, so the lists stay aligned."""
        s = self.schema
        names = [n for n, f in s.fields.items() if f.type == "token_seq" and n in frame]
        tokens = {n: [[_token(t, n, r) for t in _behaviours(v, n, r)] for r, v in enumerate(frame[n])] for n in names}
        paired = [n for n in (s.history_item_field, s.history_category_field) if n in tokens]
        if len(paired) == 2:
            items, cats = (tokens[n] for n in paired)
            for r, (i, c) in enumerate(zip(items, cats)):
                if len(i) != len(c):
                    raise DataFormatError(
                        f"records[{r}]: {paired[0]} has {len(i)} behaviours but {paired[1]} has {len(c)}; give "
                        "one category per behaviour item, in the same order."
                    )
        ids = {n: [[index_of(n).get(t) for t in row] for row in tokens[n]] for n in names}
        keep = None
        if paired:
            keep = [[all(ids[n][r][k] is not None for n in paired) for k in range(len(ids[paired[0]][r]))]
                    for r in range(len(frame))]
        return {
            n: [[i for k, i in enumerate(row) if (keep[r][k] if n in paired else i is not None)]
                for r, row in enumerate(ids[n])]
            for n in names
        }

    def required_fields(self):
        s = self.schema
        skip = (s.label_field, s.history_length_field)
        return [n for n, f in s.fields.items() if n not in skip and f.type in ("token", "token_seq", "float")]

    def predict(self, records):
        """Click probabilities ``[N]`` for raw records (see :meth:`encode`)."""
        import torch

        with torch.no_grad():
            return self.model.predict(self.encode(records))


def _records_frame(records):
    """Records (a list of dicts, a dict of columns or a DataFrame) as a non-empty DataFrame."""
    import pandas as pd

    if isinstance(records, pd.DataFrame):
        frame = records
    elif isinstance(records, dict):
        try:
            frame = pd.DataFrame(records)
        except ValueError as exc:
            raise DataFormatError(f"records: a mapping of columns needs lists of one length ({exc}).") from None
    elif isinstance(records, (list, tuple)):
        bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
        if bad is not None:
            raise DataFormatError(f"records[{bad}] is {records[bad]!r}; every record is a dict of field values, "
                                  "e.g. {'user_id': '1', 'item_id': '50', 'item_id_list': '12 7 50'}.")
        frame = pd.DataFrame(list(records))
    else:
        raise DataFormatError(f"records must be a list of dicts or a DataFrame, not {type(records).__name__} "
                              f"({records!r:.60}).")
    if len(frame) == 0:
        raise DataFormatError("predict got no records (an empty list); give at least one record.")
    return frame


def _behaviours(value, name, row) -> list:
    """A behaviour list given as a space-separated string or a list of tokens."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)) or (hasattr(value, "tolist") and not isinstance(value, (int, float))):
        tokens = list(value.tolist() if hasattr(value, "tolist") else value)
        if all(t is not None and not isinstance(t, (list, dict, tuple)) for t in tokens):
            return tokens
    raise DataFormatError(f"records[{row}]: {name} is {value!r}; a behaviour list is a space-separated string "
                          "('12 7 50') or a list of tokens, oldest first (an empty one is '' or []).")


def _token(value, name, row) -> str:
    """A token as the vocabulary holds it: strings as they are, whole numbers (``49``, ``49.0``) as their
    integer's digits; a fractional number cannot be a token."""
    import numbers

    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if float(value).is_integer():
            return str(int(value))
        raise DataFormatError(f"records[{row}]: {name} is {value!r}, a fractional number, but {name} is a token "
                              "field; give its token as a string (e.g. '49').")
    return str(value)


def _vocab_owner(schema, name):
    if name == schema.history_item_field:
        return schema.item_field
    if name == schema.history_category_field:
        return schema.item_category_field
    return name


def load_model(path, device: str = "cpu") -> LoadedModel:
    """Restore a plugin model from a checkpoint written by :func:`run` (``weights_only`` load)."""
    import torch

    from recbole_iacn.model.schema import FeatureSchema

    compat.apply()
    state = load_checkpoint(path, map_location=device)
    name = state["model"]
    try:
        spec, model_class = registry.resolve(str(name))
    except UserError:
        raise CheckpointError(
            f"{path!r} holds model {name!r}, which is not a registered model (the file was edited, or written "
            "by another version of recbole-iacn): it cannot be restored."
        ) from None
    if spec is None or state.get("schema") is None:
        raise CheckpointError(
            f"{path!r} holds RecBole model {name!r}; load_model restores plugin models only."
        )
    config = _PlainConfig(state["config"])
    config["device"] = torch.device(device)
    try:
        schema = FeatureSchema.from_dict(state["schema"])
        model = model_class(config, schema).to(device)
        model.load_state_dict(state["state_dict"])
    except UserError as exc:
        raise CheckpointError(f"{path!r} holds an invalid {name} configuration: {exc}") from None
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"{path!r}: the stored weights do not fit a {name} built from the stored configuration ({first}); "
            "the file was edited or mixes two models. Train again, or load the checkpoint the run printed."
        ) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise CheckpointError(
            f"{path!r}: the stored schema or configuration is incomplete or edited ({type(exc).__name__}: "
            f"{exc}); it cannot be restored. Train again to get a complete checkpoint."
        ) from None
    model.eval()
    return LoadedModel(model=model, config=config, schema=schema)
