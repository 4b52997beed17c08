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


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compile_mode_reaches_torch_compile(ml100k, data_root, monkeypatch, mode):
    options = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: options.append(kwargs) or fn)
    config, model_class = model_config("DIN", data_root, compile_loss=True, compile_mode=mode)
    trainer = trainer_class(config, plugin=True)(config, model_class(config, ml100k.train_data._dataset))
    trainer.training_loss()
    assert options == [{"mode": mode}]


def test_compile_mode_must_be_one_of_torch_compiles(data_root):
    with pytest.raises(ConfigError, match="compile_mode.*reduce-overhead"):
        model_config("DIN", data_root, compile_mode="fast")


def test_compile_loss_must_be_a_boolean(data_root):
    with pytest.raises(ConfigError, match="compile_loss expects true or false"):
        model_config("DIN", data_root, compile_loss="yes")


@pytest.mark.parametrize("model_name", ["WideDeep_IaCN"])
def test_the_compiled_loss_equals_the_eager_one_with_its_gradients(ml100k, data_root, monkeypatch, model_name):
    """A real ``torch.compile`` (no fallback): the same loss value and the same gradient of every parameter
    as eager mode, for the same weights and batch. Inductor draws random numbers with its own generator, so
    IaCN's uniform negatives are drawn as eager mode draws them here (``fallback_random``)."""
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "fallback_random", True)
    torch._dynamo.reset()
    split = ml100k.train_data._dataset
    split = split.copy(split.inter_feat[0:512])
    config, model_class = model_config(model_name, data_root, compile_loss=True)
    model = model_class(config, split)
    batch = next(iter(TensorTrainLoader(config, split, shuffle=False)))
    compiled = CompiledLoss(model.calculate_loss)

    def loss_and_grads(fn):
        model.zero_grad()
        torch.manual_seed(7)
        value = fn(batch)
        value = sum(value) if isinstance(value, tuple) else value
        value.backward()
        return value.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    eager_loss, eager_grads = loss_and_grads(model.calculate_loss)
    compiled_loss, compiled_grads = loss_and_grads(compiled)
    assert compiled.fallback_reason is None
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    assert compiled_grads.keys() == eager_grads.keys()
    assert any(name.startswith("iacn.") for name in eager_grads)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
