"""Ray Tune studies over RecBole/IaCN settings: ``run_recbole_iacn.py --tune=SPACE.yaml``.

Modules: :mod:`.space` (the YAML search-space format, strict validation; no Ray), :mod:`.trial` (one
trial, reporting after every epoch), :mod:`.driver` (prepare once, ``tune.Tuner`` / ``Tuner.restore``),
:mod:`.report` (table, best config, plots), :mod:`.cli` (``--tune_*`` flags). Ray is imported only
when a study runs, never by ``import recbole_iacn``.
"""

from recbole_iacn.tune.cli import pop_study_options, run_study_from_cli
from recbole_iacn.tune.driver import StudyOptions, StudyResult, run_study
from recbole_iacn.tune.space import StudySpace, load_space

__all__ = [
    "StudyOptions",
    "StudyResult",
    "StudySpace",
    "load_space",
    "pop_study_options",
    "run_study",
    "run_study_from_cli",
]
