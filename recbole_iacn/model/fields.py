"""``<Name>_IaCN`` for RecBole's context-aware models: ``E_aux`` enters as two more item fields.

One generic attachment, :func:`with_iacn_fields`, derives the variant from any subclass of RecBole's
``ContextRecommender`` (DeepFM, DCN, AutoInt, ...); no model has code of its own here. The models IaCN cannot
attach to are declared, each with its reason, in :data:`recbole_iacn.registry.RECBOLE_EXCEPTIONS`.

How the fields reach the model
------------------------------
RecBole's context-aware models size their layers from the fields they count in ``__init__``
(``num_feature_field``, ``token_field_names``, ``token_seq_field_names``, the double tower's user and item
counts). The variant hands RecBole's ``__init__`` a view of the CTR view's fields (:class:`SchemaFields`, built
from the :class:`~recbole_iacn.model.schema.FeatureSchema`, so that a checkpoint restores the same model) with
two more item fields:

* ``<ITEM_ID_FIELD>_iacn`` (``item_id_iacn``), a token field of the item source: the candidate's id;
* ``<HISTORY_ITEM_FIELD>_iacn`` (``item_id_list_iacn``), a token_seq field beside the behaviour list: the
  behaviours' ids.

Both hold the same ids as ``item_id`` and ``item_id_list`` (the batch gets the two columns in
:meth:`iacn_inputs`) and are counted, stacked, crossed and pooled as every token and token_seq field is:
every layer sized from the field count sees them. Only their embedding vectors come from elsewhere:

* ``iacn_fields: iacn`` (the default): from ``E_aux``, through :meth:`~recbole_iacn.model.iacn.IaCN.host_view`
  (its gradient reaches ``E_aux`` scaled by δ); the loss is RecBole's plus ``λ·L_IaCN``;
* ``iacn_fields: plain``: from a plain item table of the same shape and initialisation, with no auxiliary task:
  the width control (what our hosts' ``item_embedding_size = d + d_aux`` is to ``X_IaCN``);
* ``iacn_fields: none``: no extra fields; RecBole's model itself on the CTR view (the screen's baseline).

The token field's vectors replace the field's column of :meth:`embed_token_fields` (RecBole's token lookup; the
rows RecBole allocates for the field in its shared token table are never read), the token_seq field's table in
``token_seq_embedding_table`` is replaced by the lookup, and RecBole pools it as it pools every token_seq
field (the mean over the non-[PAD] ids). RecBole's first-order part (``FMFirstOrderLinear``) keeps its own
per-id weights for both fields, as for any field: the width control has them too.

Other things the attachment does for every model
-----------------------------------------------
* The behaviour lists (items, categories, and the extra one) are zeroed past each row's ``item_length`` before
  RecBole reads them, so a model never sees what sits in padded positions (RecBole masks by id 0 only).
* ``item_length`` (a count the CTR view adds) is not a feature: RecBole's models do not see it.
* Plain tensors a model holds outside its parameters (FwFM's field-pair weights, ``torch.randn`` never trained)
  are registered as buffers, so that a checkpoint restores them.
* Settings a model would turn into code or a file read are restricted
  (:data:`~recbole_iacn.registry.RECBOLE_RESTRICTIONS`: KD_DAGFM's ``teacher`` and ``phase``).
* At the first forward, every extra field the model counted must have been read through RecBole's token
  lookups: a model that embeds its fields some other way (FFM), or not at all (LR), is a clear error rather
  than an ``E_aux`` that silently never reaches it.

Where a model counts no extra field (none at all: an error) or only one (DSSM's double tower reads user and
item fields, and the behaviour lists, its own included, are interaction fields it never reads), the variant
attaches to what it counts and logs which fields those are.
"""

from __future__ import annotations

from logging import getLogger

import torch
from recbole.data.interaction import Interaction
from recbole.model.abstract_recommender import ContextRecommender
from recbole.utils import FeatureSource, FeatureType
from torch import nn

from recbole_iacn import settings
from recbole_iacn.errors import AttachmentError, ConfigError
from recbole_iacn.model.embedding import Embedding, init_embedding_
from recbole_iacn.model.iacn import IaCN
from recbole_iacn.model.layers import length_mask
from recbole_iacn.model.schema import FeatureSchema
from recbole_iacn.registry import (
    IACN_SUFFIX,
    RECBOLE_EXCEPTIONS,
    RECBOLE_PREFIX,
    RECBOLE_RESTRICTIONS,
    not_attachable_message,
)

#: the extra fields are named after the item and behaviour fields with this suffix
FIELD_SUFFIX = "_iacn"
IACN, PLAIN, NONE = settings.IACN_FIELDS

_SOURCES = {"user": FeatureSource.USER, "item": FeatureSource.ITEM, "inter": FeatureSource.INTERACTION}


# ---------------------------------------------------------------------------- what RecBole reads
class RecBoleConfigView:
    """A stored configuration (a plain mapping, as :func:`~recbole_iacn.quick_start.load_model` gives it) with
    the face of RecBole's ``Config``: ``config[key]`` (None when absent), ``config.key``, ``key in config``,
    ``config[key] = value`` and ``final_config_dict``, which RecBole's models use (EulerNet reads
    ``config.embedding_size``, KD_DAGFM ``config.final_config_dict``)."""

    def __init__(self, values):
        self.__dict__["final_config_dict"] = values

    def __getitem__(self, key):
        return self.final_config_dict.get(key)

    def __setitem__(self, key, value):
        self.final_config_dict[key] = value

    def __contains__(self, key):
        return key in self.final_config_dict

    def __getattr__(self, key):
        values = self.__dict__["final_config_dict"]
        if key in values:
            return values[key]
        raise AttributeError(f"the configuration has no setting {key!r}")

    def __deepcopy__(self, memo):
        import copy

        return RecBoleConfigView(copy.deepcopy(dict(self.final_config_dict), memo))


def recbole_config(config):
    """``config`` as RecBole's models read it: a RecBole ``Config`` as it is, a plain mapping wrapped."""
    return config if hasattr(config, "final_config_dict") else RecBoleConfigView(config)


class SchemaFields:
    """The dataset as RecBole's ``ContextRecommender.__init__`` reads it (``fields``, ``field2type``,
    ``field2source``, ``field2seqlen``, ``num``), from a :class:`FeatureSchema` plus the ``extra`` fields.

    ``extra`` maps a field name to ``(FeatureType, FeatureSource, vocabulary size, sequence length)``. The
    history length field is left out (a count, not a feature). Anything else RecBole's model asks of the
    dataset is a clear error naming it."""

    def __init__(self, schema: FeatureSchema, config, extra: dict):
        self.schema = schema
        self.config = config
        self.field2type, self.field2source, self.field2seqlen, self._num = {}, {}, {}, {}
        for name, info in schema.fields.items():
            if name == schema.history_length_field:
                continue
            if name == schema.user_field:
                source = FeatureSource.USER_ID
            elif name == schema.item_field:
                source = FeatureSource.ITEM_ID
            else:
                source = _SOURCES[info.source]
            self._add(name, FeatureType(info.type), source, info.vocab_size, info.seq_len)
        for name, (ftype, source, vocab, seq_len) in extra.items():
            if name in self.field2type:
                raise AttachmentError(f"The dataset already has a field {name!r}, the name of one of the fields "
                                      "IaCN adds; rename that field.")
            self._add(name, ftype, source, vocab, seq_len)
        self.uid_field, self.iid_field, self.label_field = schema.user_field, schema.item_field, schema.label_field

    def _add(self, name, ftype, source, vocab, seq_len):
        self.field2type[name] = ftype
        self.field2source[name] = source
        self.field2seqlen[name] = seq_len
        self._num[name] = vocab

    def fields(self, ftype=None, source=None):
        """As RecBole's ``Dataset.fields``: the field names of the given types and sources, in order."""
        ftype = set(ftype) if ftype is not None else set(FeatureType)
        source = set(source) if source is not None else set(FeatureSource)
        return [f for f, t in self.field2type.items() if t in ftype and self.field2source[f] in source]

    def num(self, field):
        """As RecBole's ``Dataset.num``: the vocabulary size of a token field, 2 (value, bucket) for a float
        field of ``numerical_features``, else its sequence length."""
        if field not in self.field2type:
            raise ValueError(f"Field [{field}] not defined in dataset.")
        ftype = self.field2type[field]
        if ftype in (FeatureType.TOKEN, FeatureType.TOKEN_SEQ):
            return self._num[field]
        if field in (self.config["numerical_features"] or ()):
            return 2
        return self.field2seqlen[field]

    def __getattr__(self, name):
        raise AttachmentError(
            f"RecBole's model read dataset.{name}, which the IaCN attachment does not give it: RecBole's context-aware "
            "models are built from the fields alone (fields, field2type, field2source, field2seqlen, num), so that a "
            "checkpoint can rebuild them without the data. A model that needs more cannot take IaCN this way.")


# ---------------------------------------------------------------------------- the extra fields' vectors
class ItemLookup(nn.Module):
    """Item ids ``[...]`` → vectors ``[..., d]`` from a table the model owns elsewhere (E_aux read through δ,
    or the width control's plain table): it holds no parameter of its own, so the table is stored once."""

    def __init__(self, source: nn.Module, host_view: bool):
        super().__init__()
        self._source = (source,)  # a tuple: not registered a second time
        self._host_view = host_view
        self.reads = 0  # how often the model read it (checked after the first forward)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.reads += 1
        source = self._source[0]
        return source.host_view(ids) if self._host_view else source(ids)

    def extra_repr(self) -> str:
        return "E_aux (gradient scaled by δ)" if self._host_view else "plain item table"


class _CTRInputs(Interaction):
    """A batch prepared by :meth:`iacn_inputs` (padding zeroed, the extra fields added)."""


# ---------------------------------------------------------------------------- the attachment
_DERIVED: dict = {}


def with_iacn_fields(recbole_class, name: str | None = None):
    """``recbole_class`` (a subclass of RecBole's ``ContextRecommender``) with IaCN attached through two extra
    item fields (this module's docstring). The same class always gives the same variant.

    Raises :class:`~recbole_iacn.errors.AttachmentError` for a class that is not a context-aware model, or that
    is (or derives from) one of :data:`~recbole_iacn.registry.RECBOLE_EXCEPTIONS`, naming the reason."""
    if recbole_class in _DERIVED:
        return _DERIVED[recbole_class]
    check_attachable(recbole_class)
    variant_name = name or _variant_name(recbole_class)

    class WithIaCNFields(recbole_class):
        iacn_base = recbole_class

        def __init__(self, config, dataset):
            config = recbole_config(config)
            self.check_attachment(config)
            schema = dataset if isinstance(dataset, FeatureSchema) else FeatureSchema.from_dataset(dataset)
            mode = config["iacn_fields"] or IACN
            extra = extra_fields(schema) if mode != NONE else {}
            super().__init__(config, SchemaFields(schema, config, extra))
            self.schema = schema
            self.iacn_fields = mode
            self.label_field = schema.label_field
            _keep_plain_tensors(self)
            self.iacn = None
            self._iacn_lookups = {}
            if mode != NONE:
                self._attach(config, schema, list(extra), mode)
            self._fields_checked = mode == NONE

        # ------------------------------------------------------------------ building
        def _attach(self, config, schema, extra, mode):
            counted = [f for f in extra if f in self.token_field_names or f in self.token_seq_field_names]
            if not counted:
                raise AttachmentError(
                    f"{type(self).__name__}: {recbole_class.__name__} counted none of the fields IaCN adds "
                    f"({', '.join(extra)}), so E_aux cannot reach it.")
            if len(counted) < len(extra):
                getLogger().info(f"{type(self).__name__}: {recbole_class.__name__} reads the extra field(s) "
                                 f"{', '.join(counted)} only (not {', '.join(f for f in extra if f not in counted)}).")
            if mode == IACN:
                self.iacn = IaCN(config, schema)
                source, host_view = self.iacn, True
            else:  # the width control: the same fields from a plain item table, initialised as E_aux is
                self.iacn_item_table = Embedding(schema.num_items, config["embedding_size"], padding_idx=0)
                init_embedding_(self.iacn_item_table.weight, config["embedding_init"], config["embedding_init_std"], 0)
                source, host_view = self.iacn_item_table, False
            self._iacn_token_index = None
            for field in counted:
                lookup = ItemLookup(source, host_view)
                self._iacn_lookups[field] = lookup
                if field in self.token_seq_field_names:
                    self.token_seq_embedding_table[self.token_seq_field_names.index(field)] = lookup
                else:
                    self._iacn_token_index = self.token_field_names.index(field)
                    self.iacn_token_lookup = lookup

        @classmethod
        def validate_config(cls, config) -> None:
            """Every declared setting (as for every plugin model), the loader's, and :meth:`check_attachment`;
            called when the configuration is built, before any data is loaded."""
            settings.validate(config)
            settings.check_loader_config(config)
            cls.check_attachment(config)

        @classmethod
        def check_attachment(cls, config) -> None:
            """What the attachment needs (checked again when the model is built, a restore included): a known
            ``iacn_fields``, E_aux as wide as every field, and the model's restricted settings."""
            mode = settings.SETTINGS["iacn_fields"].check(config["iacn_fields"] or IACN)
            if not isinstance(config["embedding_size"], int):
                raise ConfigError(f"{cls.__name__} needs embedding_size (the width of every field, E_aux's "
                                  "included); give it with --embedding_size or in the model's YAML file.")
            width = config["iacn_embedding_size"]
            if mode == IACN and width is not None and width != config["embedding_size"]:
                raise ConfigError(
                    f"iacn_embedding_size={width} but embedding_size={config['embedding_size']}: RecBole's "
                    f"{recbole_class.__name__} embeds every field as one embedding_size vector, E_aux's fields "
                    "included. Leave iacn_embedding_size null (it then follows embedding_size), or set both alike.")
            for base, restricted in RECBOLE_RESTRICTIONS.items():
                if not _derives_from(recbole_class, base):
                    continue
                for key, (allowed, reason) in restricted.items():
                    if config[key] not in allowed:
                        raise AttachmentError(f"{cls.__name__} takes {key} in {', '.join(allowed)} only, not "
                                              f"{config[key]!r}: {reason}.")

        # ------------------------------------------------------------------ the batch
        def iacn_inputs(self, interaction):
            """The batch RecBole's model reads: the behaviour lists zeroed past ``item_length``, and the extra
            fields (the candidate's and the behaviours' ids) added. Idempotent."""
            if isinstance(interaction, _CTRInputs):
                return interaction
            s = self.schema
            data = dict(interaction.interaction)
            history = data.get(s.history_item_field)
            if history is not None and s.history_length_field in data:
                mask = length_mask(data[s.history_length_field], history.shape[1]).to(history.dtype)
                for name in (s.history_item_field, s.history_category_field):
                    if name and name in data:
                        data[name] = data[name] * mask
            if self.iacn_fields != NONE:  # every module that counted them reads the columns (first-order part too)
                data[s.item_field + FIELD_SUFFIX] = data[s.item_field]
                if history is not None:
                    data[s.history_item_field + FIELD_SUFFIX] = data[s.history_item_field]
            return _CTRInputs(data)

        # ------------------------------------------------------------------ RecBole's API
        def embed_token_fields(self, token_fields):
            """RecBole's token lookup, the candidate's extra field read from E_aux (or the plain table)."""
            vectors = super().embed_token_fields(token_fields)
            index = getattr(self, "_iacn_token_index", None)
            if vectors is None or index is None:
                return vectors
            extra = self.iacn_token_lookup(token_fields[:, index]).unsqueeze(1)  # [B, 1, d]
            return torch.cat([vectors[:, :index], extra, vectors[:, index + 1:]], dim=1)

        def forward(self, interaction):
            return super().forward(self.iacn_inputs(interaction))

        def predict(self, interaction):
            inputs = self.iacn_inputs(interaction)
            reads = self._reads()
            scores = super().predict(inputs)
            self._check_fields_read(reads)
            if scores.dim() > 1 and scores[0].numel() == 1:  # one score per sample, [B] (KD_DAGFM gives [B, 1])
                scores = scores.reshape(scores.shape[0])
            return scores

        @property
        def loss_names(self):
            return ("main", "iacn") if self.iacn is not None else ("main",)

        def calculate_loss(self, interaction):
            inputs = self.iacn_inputs(interaction)
            reads = self._reads()
            main = super().calculate_loss(inputs)
            self._check_fields_read(reads)
            if self.iacn is None:
                return main
            if self.iacn.weight > 0:
                auxiliary = self.iacn.weight * self.iacn.loss(inputs)
            else:  # λ = 0 moves no parameter: the model with the extra fields, at its cost
                auxiliary = torch.zeros((), device=inputs[self.label_field].device)
            return (*main, auxiliary) if isinstance(main, tuple) else (main, auxiliary)

        # ------------------------------------------------------------------ the check that E_aux is read
        def _reads(self):
            return None if self._fields_checked else {f: l.reads for f, l in self._iacn_lookups.items()}

        def _check_fields_read(self, before):
            if before is None:
                return
            unread = [f for f, lookup in self._iacn_lookups.items() if lookup.reads == before[f]]
            if unread:
                raise AttachmentError(
                    f"{type(self).__name__}: {recbole_class.__name__} counted the field(s) {', '.join(unread)} but "
                    "its forward never read their embeddings through ContextRecommender's token lookups "
                    "(embed_token_fields, token_seq_embedding_table): it embeds its fields another way, or not at "
                    "all, so E_aux would never reach it.")
            self._fields_checked = True

    WithIaCNFields.__name__ = WithIaCNFields.__qualname__ = variant_name
    WithIaCNFields.__module__ = __name__
    WithIaCNFields.__doc__ = (f"RecBole's {recbole_class.__name__} with IaCN attached through two item fields "
                              "(recbole_iacn.model.fields).")
    _DERIVED[recbole_class] = WithIaCNFields
    return WithIaCNFields


def extra_fields(schema: FeatureSchema) -> dict:
    """The two fields the attachment adds: ``{name: (type, source, vocabulary size, sequence length)}``."""
    return {
        schema.item_field + FIELD_SUFFIX: (FeatureType.TOKEN, FeatureSource.ITEM, schema.num_items, 1),
        schema.history_item_field + FIELD_SUFFIX: (FeatureType.TOKEN_SEQ, FeatureSource.INTERACTION,
                                                   schema.num_items, schema.history_length),
    }


def check_attachable(recbole_class) -> None:
    """Raise :class:`~recbole_iacn.errors.AttachmentError` unless IaCN can attach to ``recbole_class``."""
    if not isinstance(recbole_class, type) or not issubclass(recbole_class, ContextRecommender):
        raise AttachmentError(
            f"{recbole_class!r} cannot take IaCN through fields: it is not a RecBole context-aware model (a subclass "
            "of recbole.model.abstract_recommender.ContextRecommender, whose token and token_seq embeddings the "
            "extra fields go through). Our own hosts take IaCN through registry.register.")
    if getattr(recbole_class, "iacn_base", None) is not None:
        raise AttachmentError(f"{recbole_class.__name__} already carries IaCN (it is a variant of "
                              f"{recbole_class.iacn_base.__name__}); attach to {recbole_class.iacn_base.__name__}.")
    for base in RECBOLE_EXCEPTIONS:
        if _derives_from(recbole_class, base):
            raise AttachmentError(not_attachable_message(base))


def _derives_from(cls, recbole_name: str) -> bool:
    from recbole.utils import get_model

    try:
        return issubclass(cls, get_model(recbole_name))
    except (ValueError, ImportError):
        return False


def _variant_name(recbole_class) -> str:
    """The registered name of ``recbole_class``'s variant (``DeepFM_IaCN``, ``recbole.WideDeep_IaCN``), else
    ``<Class>_IaCN``."""
    from recbole_iacn import registry

    for spec in registry.MODELS.values():
        if spec.kind == registry.RECBOLE_KIND and _target_is(spec.target, recbole_class):
            return spec.name
    return f"{recbole_class.__name__}{IACN_SUFFIX}"


def _target_is(target, cls) -> bool:
    if isinstance(target, type):
        return target is cls
    module, _, attr = str(target).partition(":")
    if module == RECBOLE_PREFIX.rstrip("."):
        return cls.__module__.startswith("recbole.model.") and cls.__name__ == attr
    return cls.__module__ == module and cls.__qualname__ == attr


def _keep_plain_tensors(model: nn.Module) -> None:
    """Tensors a module holds as plain attributes (FwFM's field-pair weights, drawn by ``torch.randn`` and never
    trained; DAGFM's adjacency) become buffers: a checkpoint then restores them and ``.to(device)`` moves them."""
    for module in model.modules():
        for key, value in list(vars(module).items()):
            if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter) and not key.startswith("_"):
                delattr(module, key)  # (detached: no optimizer ever held it, so its gradient went nowhere)
                module.register_buffer(key, value.detach())


def __getattr__(name):
    """``<Name>_IaCN`` of every registered RecBole model (``DeepFM_IaCN``), derived on first use; found again
    by name (pickle, imports). ``recbole.WideDeep_IaCN`` is ``getattr(fields, "recbole.WideDeep_IaCN")``."""
    if name.endswith(IACN_SUFFIX) and not name.startswith("__"):
        from recbole_iacn import registry

        spec = registry.MODELS.get(name)
        if spec is not None and spec.kind == registry.RECBOLE_KIND:
            return spec.load()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
