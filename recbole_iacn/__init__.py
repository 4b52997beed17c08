"""recbole-iacn: the Interest-aware Capsule Network (IaCN) for RecBole click-through-rate models.

Importing this package is light: it does not import Ray, and RecBole/torch only when a model, the
configuration or the training pipeline is used.
"""

__version__ = "0.1.0"

from recbole_iacn.errors import UserError  # noqa: E402


def __getattr__(name):
    """``MODELS`` and ``model_names`` (:mod:`recbole_iacn.registry`), imported on first use: the commands
    (``python -m recbole_iacn.explain``, ...) import this package before their main can turn a Ctrl-C into exit
    130, so it imports as little as it can (the registry brings dataclasses, inspect and typing)."""
    if name in ("MODELS", "model_names"):
        from recbole_iacn import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(*args, **kwargs):
    """Train, validate and test a model; see :func:`recbole_iacn.quick_start.run`."""
    from recbole_iacn.quick_start import run as _run

    return _run(*args, **kwargs)


def load_model(*args, **kwargs):
    """Restore a trained model from a checkpoint; see :func:`recbole_iacn.quick_start.load_model`."""
    from recbole_iacn.quick_start import load_model as _load_model

    return _load_model(*args, **kwargs)


__all__ = ["MODELS", "UserError", "load_model", "model_names", "run", "__version__"]
