"""The Python API: train, validate and test a model (the Python face of run_recbole_iacn.py); restore a
trained one. Training is :mod:`recbole_iacn.pipeline`'s; this module checks the user's settings first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

from recbole_iacn import compat, pipeline, registry
from recbole_iacn.checkpoint import load_checkpoint
from recbole_iacn.errors import CheckpointError, ConfigError, DataFormatError, UserError


def run(
    model: str,
    dataset: str,
    config_file_list: Optional[Sequence[str]] = None,
    config_dict: Optional[dict] = None,
    saved: bool = True,
    epoch_callback: Optional[Callable] = None,
    prepared: Optional[pipeline.Prepared] = None,
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
        prepared: a :class:`~recbole_iacn.pipeline.Prepared` from :func:`recbole_iacn.pipeline.prepare`, to
            skip loading the data again (then the settings are not checked here).
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
        import warnings

        from recbole_iacn.errors import UnknownSettingWarning
        from recbole_iacn.settings import check_dataset_name

        check_dataset_name(dataset, option="dataset", parent="data_path")
        for line in check_settings(model, dataset, config_file_list, config_dict):
            warnings.warn(line, UnknownSettingWarning, stacklevel=2)
    return pipeline.run(model, dataset, config_file_list, config_dict, saved, epoch_callback, prepared,
                        nproc=nproc, world_size=world_size, ip=ip, port=port, group_offset=group_offset)


def check_settings(model: str, dataset: str, config_file_list=None, config_dict=None, where: str = "in config_dict",
                   prefix: str = "config_dict: ") -> List[str]:
    """The one check of the user's settings of a plugin model, for the Python API and the command line
    (``where`` and ``prefix`` word its messages): every value of the ``config_file_list`` files and of
    ``config_dict`` against its declaration in :mod:`recbole_iacn.settings` (a bad one is a
    :class:`ConfigError` naming ``where``, or the file and line), or against the type of its default. Returns
    one warning line per unknown key (RecBole would silently use the default instead). The multi-process
    settings are left to :func:`recbole_iacn.distributed.settings.pop_settings`, which every run reaches."""
    from recbole_iacn.settings import check_user_settings

    if model not in registry.MODELS:
        return []
    if config_dict is not None and not isinstance(config_dict, dict):
        raise ConfigError(f"config_dict must be a dict of settings, not {type(config_dict).__name__}.")
    return check_user_settings(registry.MODELS[model].config_files, dataset, config_file_list or (), config_dict,
                               where=where, prefix=prefix)


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
