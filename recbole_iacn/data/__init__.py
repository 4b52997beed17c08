"""Dataset preparation for recbole-iacn: CTR datasets in RecBole atomic "benchmark" files.

Public entry points (imported lazily, so ``import recbole_iacn.data`` stays light and never imports
torch or ray):

- :func:`build_from_atomic`, :func:`default_ml100k_source` (``builder``): any RecBole atomic dataset.
- :func:`import_movielens_dat`, :func:`build_movielens` (``movielens``): MovieLens ``ratings.dat``.
- :func:`build_amazon` (``amazon``): Amazon 2014 reviews + metadata, DIEN protocol.
- :func:`build_from_dien` (``dien``): DIEN's prepared ``local_{train,test}_splitByUser`` files.
- :func:`build_synthetic`, :func:`build_planted` (``synthetic``): SYNTHETIC Amazon-Books-shaped data;
  small data with planted interests.

Command line: ``python -m recbole_iacn.data {amazon,dien,recbole,movielens,synthetic} ...``.
See ``dataset/README.md`` for the output format and protocols.
"""

from importlib import import_module

_EXPORTS = {
    "build_from_atomic": "builder",
    "default_ml100k_source": "builder",
    "import_movielens_dat": "movielens",
    "build_movielens": "movielens",
    "build_amazon": "amazon",
    "build_from_dien": "dien",
    "build_synthetic": "synthetic",
    "build_planted": "synthetic",
    "format_summary": "ctr",
    "DataError": "common",
    "MalformedLineError": "common",
    "MissingFieldError": "common",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    """Import the defining submodule on first access of a public name."""
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
