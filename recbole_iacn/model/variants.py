"""``X_IaCN``: a host model with the IaCN component attached through its item-embedding hook.

:func:`with_iacn` derives the variant from a host; :func:`recbole_iacn.registry.register` registers a
host and, with it, its variant, so a new host needs nothing here. Every registered host's variant is an
attribute of this module (``from recbole_iacn.model.variants import DIN_IaCN``), derived on first use.
"""

from __future__ import annotations

import torch

from recbole_iacn.model.iacn import IaCN, ConcatItemEmbedding
from recbole_iacn.registry import IACN_SUFFIX

_DERIVED: dict = {}  # host class -> its variant: one class per host, whoever asks


def with_iacn(host):
    """Return ``host`` + IaCN: item ids embed as ``E_orig ⊕ E_aux``; loss ``L_main + λ·L_IaCN``.

    The same host always gives the same class (``with_iacn(DIN) is with_iacn(DIN)``)."""
    if host in _DERIVED:
        return _DERIVED[host]

    class WithIaCN(host):
        def build_item_embedding(self, config):
            self.iacn = IaCN(config, self.schema)
            return ConcatItemEmbedding(super().build_item_embedding(config), self.iacn)

        @property
        def loss_names(self):
            return (*super().loss_names, "iacn")

        def calculate_loss(self, interaction):
            main = super().calculate_loss(interaction)
            if self.iacn.weight > 0:
                auxiliary = self.iacn.weight * self.iacn.loss(interaction)
            else:  # λ = 0 moves no parameter: the host with the wider item embedding, at its cost
                auxiliary = torch.zeros((), device=interaction[self.label_field].device)
            return (*main, auxiliary) if isinstance(main, tuple) else (main, auxiliary)

    name = f"{host.__name__}{IACN_SUFFIX}"
    WithIaCN.__name__ = WithIaCN.__qualname__ = name
    WithIaCN.__module__ = __name__  # found again through __getattr__ below (pickle, imports)
    WithIaCN.__doc__ = f"{host.__name__} with the Interest-aware Capsule Network auxiliary task."
    WithIaCN.iacn_host = host  # the registry refuses to register a variant as a host
    _DERIVED[host] = WithIaCN
    return WithIaCN


def __getattr__(name):
    """``<host>_IaCN`` of every registered host (``DIN_IaCN``, ``DIEN_IaCN``, ``WideDeep_IaCN``,
    ``DAIN_IaCN``, and a user's), derived from the host on first use."""
    if name.endswith(IACN_SUFFIX) and not name.startswith("__"):
        from recbole_iacn import registry
        from recbole_iacn.errors import UnknownModelError

        try:
            spec = registry.get_spec(name)
        except UnknownModelError:
            spec = None
        if spec is not None and spec.has_iacn:
            return spec.load()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
