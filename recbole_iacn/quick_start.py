"""Train, validate and test a model; restore a trained one. The Python face of run_recbole_iacn.py."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from logging import getLogger
from typing import Callable, Optional, Sequence

from recbole_iacn import compat, registry
from recbole_iacn.checkpoint import config_to_plain, load_checkpoint
from recbole_iacn.config import IaCNConfig
from recbole_iacn.errors import CheckpointError, ConfigError, DatasetNotFoundError


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
    compat.apply()
    spec, model_class = registry.resolve(model)
    config = IaCNConfig(model_class, dataset, config_file_list, config_dict, plugin=spec is not None)
    return config, spec, model_class


def prepare(model: str, dataset: str, config_file_list=None, config_dict=None) -> Prepared:
    """Configuration, dataset and dataloaders, as RecBole's ``run_recbole`` builds them (plugin models:
    the loaders chosen by ``data_loader``, see :mod:`recbole_iacn.data.loader`)."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_logger, init_seed

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
    from recbole.utils import get_environment, init_seed, set_color

    from recbole_iacn.trainer import trainer_class

    if prepared is None and "local_rank" not in (config_dict or {}):  # not already a rank
        from recbole_iacn.distributed import launch, pop_settings

        settings, config_dict = pop_settings(
            config_dict, nproc=nproc, world_size=world_size, ip=ip, port=port, group_offset=group_offset
        )
        if settings.enabled:
            if epoch_callback is not None:
                raise ConfigError("epoch_callback cannot be used with nproc > 1: the ranks run in other "
                                  "processes. Train in one process (e.g. one Ray Tune trial), or drop the callback.")
            return launch(model, dataset, config_file_list, config_dict, saved, settings)
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
    best_valid_score, best_valid_result = trainer.fit(
        prepared.train_data, prepared.valid_data, saved=saved, show_progress=config["show_progress"]
    )
    fit_seconds = time.perf_counter() - fit_started
    test_result = trainer.evaluate(prepared.test_data, load_best_model=saved, show_progress=config["show_progress"])
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
        [PAD] (0) and are left out of behaviour lists; the candidate's category is looked up from the
        item when absent."""
        import pandas as pd
        import torch
        from recbole.data.interaction import Interaction

        frame = pd.DataFrame(records)
        s = self.schema
        data = {}
        for name, info in s.fields.items():
            if name in (s.label_field, s.history_length_field):
                continue
            vocab = s.vocab.get(name) or s.vocab.get(_vocab_owner(s, name), [])
            index = {token: i for i, token in enumerate(vocab)}
            if info.type == "token":
                if name not in frame:
                    continue
                data[name] = torch.tensor([index.get(str(v), 0) for v in frame[name]], dtype=torch.long)
            elif info.type == "token_seq" and name in frame:
                rows = torch.zeros(len(frame), info.seq_len, dtype=torch.long)
                for r, value in enumerate(frame[name]):
                    tokens = value.split() if isinstance(value, str) else list(value)
                    ids = [index[str(t)] for t in tokens if str(t) in index][-info.seq_len:]
                    rows[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                data[name] = rows
            elif info.type == "float" and name in frame:
                data[name] = torch.tensor(frame[name].astype(float).to_numpy(), dtype=torch.float)
        if s.history_item_field in data:
            data[s.history_length_field] = (data[s.history_item_field] > 0).sum(1)
        if s.item_category_field and s.item_category_field not in data and s.item_categories:
            table = torch.tensor(s.item_categories, dtype=torch.long)
            data[s.item_category_field] = table[data[s.item_field]]
        missing = [f for f in self.required_fields() if f not in data]
        if missing:
            raise ValueError(f"records lack the field(s) {', '.join(missing)} needed by {self.config['model']}.")
        return Interaction(data)

    def required_fields(self):
        s = self.schema
        skip = (s.label_field, s.history_length_field)
        return [n for n, f in s.fields.items() if n not in skip and f.type in ("token", "token_seq", "float")]

    def predict(self, records):
        """Click probabilities ``[N]`` for raw records (see :meth:`encode`)."""
        import torch

        with torch.no_grad():
            return self.model.predict(self.encode(records))


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
    spec, model_class = registry.resolve(state["model"])
    if spec is None or state.get("schema") is None:
        raise CheckpointError(
            f"{path!r} holds RecBole model {state['model']!r}; load_model restores plugin models only."
        )
    config = _PlainConfig(state["config"])
    config["device"] = torch.device(device)
    schema = FeatureSchema.from_dict(state["schema"])
    model = model_class(config, schema).to(device)
    model.load_state_dict(state["state_dict"])
    model.eval()
    return LoadedModel(model=model, config=config, schema=schema)
