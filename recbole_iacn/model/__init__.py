"""CTR host models, the IaCN component and their combinations (see ``recbole_iacn.registry``)."""
