"""``X_IaCN``: a host model with the IaCN component attached through its item-embedding hook.

Adding IaCN to another host that derives from :class:`~recbole_iacn.model.base.CTRModel` is one
line, e.g. ``MyModel_IaCN = with_iacn(MyModel)``, plus a registry entry.
"""

from __future__ import annotations

import torch

from recbole_iacn.model.dain import DAIN
from recbole_iacn.model.dien import DIEN
from recbole_iacn.model.din import DIN
from recbole_iacn.model.iacn import IaCN, ConcatItemEmbedding
from recbole_iacn.model.widedeep import WideDeep


def with_iacn(host):
    """Return ``host`` + IaCN: item ids embed as ``E_orig ⊕ E_aux``; loss ``L_main + λ·L_IaCN``."""

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

    name = f"{host.__name__}_IaCN"
    WithIaCN.__name__ = WithIaCN.__qualname__ = name
    WithIaCN.__module__ = __name__
    WithIaCN.__doc__ = f"{host.__name__} with the Interest-aware Capsule Network auxiliary task."
    return WithIaCN


DIN_IaCN = with_iacn(DIN)
DIEN_IaCN = with_iacn(DIEN)
WideDeep_IaCN = with_iacn(WideDeep)
DAIN_IaCN = with_iacn(DAIN)
