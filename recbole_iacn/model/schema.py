"""``FeatureSchema``: what a model needs to know about a dataset, as plain data.

Models are built from a schema rather than from the dataset itself, so a checkpoint can carry the
schema (plain data) and :func:`recbole_iacn.quick_start.load_model` can rebuild a model without the
training files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

TOKEN, TOKEN_SEQ, FLOAT, FLOAT_SEQ = "token", "token_seq", "float", "float_seq"


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: str  # token | token_seq | float | float_seq
    source: str  # user | item | inter
    vocab_size: int  # number of ids including [PAD] (0 for float fields)
    seq_len: int


@dataclass
class FeatureSchema:
    user_field: str
    item_field: str
    label_field: str
    history_item_field: str
    history_length_field: str  # number of real behaviours per sample (added by CTRDataset)
    history_category_field: Optional[str]
    item_category_field: Optional[str]
    fields: Dict[str, FieldInfo] = field(default_factory=dict)
    item_categories: List[int] = field(default_factory=list)  # category id of each item id
    vocab: Dict[str, List[str]] = field(default_factory=dict)  # token of each id, per token field

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dataset(cls, dataset) -> "FeatureSchema":
        from recbole.utils import FeatureSource

        def source_of(name):
            src = dataset.field2source[name]
            value = src.value if isinstance(src, FeatureSource) else str(src)
            return {"user_id": "user", "item_id": "item"}.get(value, value)

        length_field = dataset.config["ITEM_LIST_LENGTH_FIELD"]
        fields = {}
        for name, ftype in dataset.field2type.items():
            is_token = ftype.value.startswith("token")
            fields[name] = FieldInfo(
                name=name,
                type=ftype.value,
                source=source_of(name),
                vocab_size=int(dataset.num(name)) if is_token and name != length_field else 0,
                seq_len=int(dataset.field2seqlen.get(name, 1)),
            )
        category = dataset.config["ITEM_CATEGORY_FIELD"]
        history_category = dataset.config["HISTORY_CATEGORY_FIELD"]
        item_categories = []
        if category and dataset.item_feat is not None and category in dataset.item_feat:
            item_categories = [int(c) for c in dataset.item_feat[category].tolist()]
        vocab = {
            name: [str(t) for t in dataset.field2id_token[name].tolist()]
            for name, info in fields.items()
            if info.type == TOKEN and name in dataset.field2id_token and name != length_field
        }
        return cls(
            user_field=dataset.uid_field,
            item_field=dataset.iid_field,
            label_field=dataset.label_field,
            history_item_field=dataset.config["HISTORY_ITEM_FIELD"],
            history_length_field=length_field,
            history_category_field=history_category if history_category in fields else None,
            item_category_field=category if category in fields else None,
            fields=fields,
            item_categories=item_categories,
            vocab=vocab,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureSchema":
        data = dict(data)
        data["fields"] = {k: FieldInfo(**v) for k, v in data["fields"].items()}
        return cls(**data)

    # ------------------------------------------------------------------ queries
    def num(self, name: str) -> int:
        return self.fields[name].vocab_size

    @property
    def num_items(self) -> int:
        return self.num(self.item_field)

    @property
    def history_length(self) -> int:
        return self.fields[self.history_item_field].seq_len

    def _special(self) -> set:
        return {
            self.item_field,
            self.label_field,
            self.history_item_field,
            self.history_length_field,
            self.history_category_field,
            self.item_category_field,
        }

    def feature_fields(self, source: str) -> List[str]:
        """Other feature fields of one source ('user', 'item' or 'inter'), in a stable order.

        The user id counts as a user feature; the item id, its category, the label and the behaviour
        sequences are excluded (the models read those explicitly).
        """
        special = self._special()
        names = [
            f.name
            for f in self.fields.values()
            if f.source == source and f.name not in special and f.name != self.user_field
        ]
        if source == "user" and self.user_field in self.fields:
            names.insert(0, self.user_field)
        return names

    def profile_fields(self) -> List[str]:
        """User profile token fields (the user's features other than the id itself)."""
        return [
            f for f in self.feature_fields("user") if f != self.user_field and self.fields[f].type == TOKEN
        ]
