"""``compile_loss``: the training loss through ``torch.compile``, eager (with the reason logged) when that fails."""

from __future__ import annotations

import logging

import pytest
import torch

from recbole_iacn.data.loader import TensorTrainLoader
from recbole_iacn.errors import ConfigError
from recbole_iacn.trainer import CompiledLoss, trainer_class
from tests.conftest import model_config


def loss(x):
    return (x * 2).sum()


def test_a_failing_compiled_call_falls_back_to_eager_and_says_why(monkeypatch, caplog):
    def broken_compile(fn, **options):
        def compiled(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    compiled = CompiledLoss(loss)
    with caplog.at_level(logging.WARNING):
        assert compiled(torch.ones(3)).item() == 6.0
        assert compiled(torch.ones(2)).item() == 4.0  # later calls stay eager, logged once
    assert compiled.fallback_reason == "RuntimeError: InvalidCxxCompiler: No working C++ compiler found"
    assert caplog.text.count("compile_loss: torch.compile failed") == 1


def test_a_failing_compile_falls_back_too(monkeypatch):
    def unavailable(fn, **options):
        raise RuntimeError("torch.compile is not supported on this platform")

    monkeypatch.setattr(torch, "compile", unavailable)
    compiled = CompiledLoss(loss)
    assert compiled(torch.ones(3)).item() == 6.0
    assert "not supported" in compiled.fallback_reason


def test_errors_of_the_model_itself_still_surface(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda fn, **options: fn)

    def bad(x):
        raise ValueError("shape mismatch")

    with pytest.raises(ValueError, match="shape mismatch"):
        CompiledLoss(bad)(torch.ones(1))


def test_the_trainer_steps_through_the_compiled_loss_only_when_asked(ml100k, data_root, monkeypatch):
    calls = []

    def counting_compile(fn, **options):
        def compiled(interaction):
            calls.append(len(interaction))
            return fn(interaction)

        return compiled

    monkeypatch.setattr(torch, "compile", counting_compile)
    split = ml100k.train_data._dataset
    split = split.copy(split.inter_feat[0:5000])
    for flag in (False, True):
        config, model_class = model_config("DIN_IaCN", data_root, compile_loss=flag)
        trainer = trainer_class(config, plugin=True)(config, model_class(config, split))
        loader = TensorTrainLoader(config, split, shuffle=True)
        trainer._train_epoch(loader, 0)
        assert calls == ([len(b) for b in TensorTrainLoader(config, split, shuffle=True)] if flag else [])
    assert trainer.training_loss() is trainer.training_loss()  # compiled once per model


def test_compile_loss_must_be_a_boolean(data_root):
    with pytest.raises(ConfigError, match="compile_loss expects true or false"):
        model_config("DIN", data_root, compile_loss="yes")
