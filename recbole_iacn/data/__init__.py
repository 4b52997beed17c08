"""Dataset preparation for recbole-iacn: CTR datasets in RecBole atomic "benchmark" files.

The sources are declared once, in :data:`recbole_iacn.data.sources.SOURCES`: each one's build function (its
options keyword-only), its ``python -m recbole_iacn.data`` subcommand, the raw RecBole datasets the run path
builds with it, and the names exported here. Public entry points (imported lazily, so
``import recbole_iacn.data`` stays light and never imports torch or ray):

- :func:`build_from_atomic`, :func:`default_ml100k_source` (``builder``): any RecBole atomic dataset.
- :func:`build_from_recbole_amazon` (``recbole_amazon``): RecBole's Amazon 2014 atomic files, 5-core, DIEN
  protocol (what the run path builds for ``amazon-*`` names).
- :func:`import_movielens_dat`, :func:`build_movielens` (``movielens``): MovieLens ``ratings.dat``.
- :func:`build_amazon` (``amazon``): Amazon 2014 reviews + metadata, DIEN protocol.
- :func:`build_from_dien` (``dien``): DIEN's prepared ``local_{train,test}_splitByUser`` files.
- :func:`build_synthetic`, :func:`build_planted` (``synthetic``): SYNTHETIC Amazon-Books-shaped data;
  small data with planted interests.

Command line: ``python -m recbole_iacn.data {amazon,dien,recbole,recbole-amazon,movielens,synthetic} ...``.
See ``dataset/README.md`` for the output format and protocols.
"""

from importlib import import_module

from recbole_iacn.data.sources import exports as _source_exports

_EXPORTS = {
    **_source_exports(),
    "format_summary": "ctr",
    # the errors a build raises (defined in recbole_iacn.errors, with every error of the package)
    "DataFormatError": "recbole_iacn.errors",
    "MalformedLineError": "recbole_iacn.errors",
    "MissingFieldError": "recbole_iacn.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    """Import the defining submodule on first access of a public name."""
    if name in _EXPORTS:
        module = _EXPORTS[name]
        value = getattr(import_module(module if module.startswith("recbole_iacn.") else f".{module}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
