"""registry.register: a host of one's own in one module and one call, its _IaCN variant derived from it
(docs/adding-a-host.md; its example is tests/fixtures/my_host/my_models.py)."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from recbole_iacn import registry, settings
from recbole_iacn.errors import ConfigError, RegistrationError
from tests.conftest import FAST, SYN_DATASET

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "tests" / "fixtures" / "my_host"
DOC = REPO / "docs" / "adding-a-host.md"


@pytest.fixture
def clean_registry(monkeypatch):
    """The registry, the declarations and the plugin list as they were before the test."""
    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))
    monkeypatch.setattr(registry, "_HOSTS", list(registry._HOSTS))
    monkeypatch.setattr(registry, "_IMPORTED", set())
    monkeypatch.setattr(settings, "SETTINGS", dict(settings.SETTINGS))
    monkeypatch.setattr(settings, "GROUPS", dict(settings.GROUPS))
    monkeypatch.setattr(settings, "MODEL_GROUPS", settings.MODEL_GROUPS)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv(registry.PLUGINS_ENV, "")  # recorded as it was (set or not), so that it is restored...
    monkeypatch.delenv(registry.PLUGINS_ENV)  # ...also when unset: a test's registration must not outlive it
    yield
    sys.modules.pop("my_models", None)  # imported from the example's file: imported afresh next time


def _host(name="Pool", **members):
    import torch
    from torch import nn

    from recbole_iacn.model.base import CTRModel

    def __init__(self, config, dataset):
        CTRModel.__init__(self, config, dataset)
        self.out = nn.Linear(self.embedder.sequence_dim, 1)

    def forward(self, interaction):
        return self.out(self.embedder(interaction).target).squeeze(-1)

    return type(name, (CTRModel,), {"__init__": __init__, "forward": forward, "__module__": "__main__",
                                    **members})


def test_the_docs_example_is_the_tested_module():
    """docs/adding-a-host.md shows the files this test module trains, as they are."""
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S)
    assert ("python", (EXAMPLE / "my_models.py").read_text(encoding="utf-8")) in blocks
    assert ("yaml", (EXAMPLE / "MeanPool.yaml").read_text(encoding="utf-8")) in blocks


def test_the_docs_example_host_and_its_variant_train_one_epoch(clean_registry, syn_root, tmp_path, capsys):
    """--import of the example's file registers MeanPool and MeanPool_IaCN; the command line trains the
    host, the Python API the variant, one epoch each, and the variant's checkpoint loads back."""
    from recbole_iacn import cli
    from recbole_iacn.quick_start import load_model, run

    settings_args = [f"--{k}={v}" for k, v in {**FAST, "checkpoint_dir": str(tmp_path / "saved")}.items()]
    status = cli.main([f"--import={EXAMPLE / 'my_models.py'}", "--model=MeanPool", f"--dataset={SYN_DATASET}",
                       f"--data_path={syn_root}", *settings_args])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "best valid: auc :" in out and "test result: auc :" in out

    host, variant = registry.get_spec("MeanPool"), registry.get_spec("MeanPool_IaCN")
    assert registry.host_names()[-1] == "MeanPool" and variant.host == "MeanPool"
    assert (host.label, variant.label) == ("Mean pooling", "Mean pooling + IaCN")
    assert variant.config_files == (*host.config_files, registry.IACN_CONFIG)
    cls = variant.load()
    assert cls.iacn_host is host.load() and cls.__name__ == "MeanPool_IaCN"
    assert pickle.loads(pickle.dumps(cls)) is cls  # found again as recbole_iacn.model.variants.MeanPool_IaCN
    assert str(EXAMPLE / "my_models.py") in os.environ[registry.PLUGINS_ENV].split(os.pathsep)

    result = run("MeanPool_IaCN", SYN_DATASET, config_dict={**FAST, "data_path": syn_root,
                                                            "checkpoint_dir": str(tmp_path / "saved")})
    assert result["epochs_run"] == 1 and 0.5 < result["test_result"]["auc"] <= 1
    loaded = load_model(result["model_file"])
    assert type(loaded.model) is cls and loaded.model.iacn.weight > 0


def test_the_docs_example_variant_reads_two_interest_vectors_more_and_trains_e_aux(clean_registry, ml100k, data_root):
    """The example host of docs/adding-a-host.md, registered by its module: the ``MeanPool_IaCN`` that
    registry.register derived from it reads 2·h more inputs than the host (the candidate's and the behaviours'
    E_aux vectors) and its auxiliary loss reaches E_aux."""
    import torch

    from tests.conftest import model_config, sample_batch

    registry.import_plugin(str(EXAMPLE / "my_models.py"))
    host_class, variant_class = registry.get_spec("MeanPool").load(), registry.get_spec("MeanPool_IaCN").load()
    assert variant_class.__name__ == "MeanPool_IaCN" and issubclass(variant_class, host_class)
    config, _ = model_config("DIN_IaCN", data_root)
    torch.manual_seed(0)
    host = host_class(config, ml100k.train_data._dataset)
    variant = variant_class(config, ml100k.train_data._dataset)
    assert variant.out.in_features == host.out.in_features + 2 * config["iacn_embedding_size"]
    main, auxiliary = variant.calculate_loss(sample_batch(ml100k, 64))
    auxiliary.backward()
    assert variant.iacn.aux_item_embedding.weight.grad.abs().sum() > 0


def test_a_process_started_later_finds_the_registered_host(clean_registry):
    """The ranks of a multi-process run and a study's trials are new processes: they import the plugin
    modules listed in RECBOLE_IACN_PLUGINS when they look up a model they do not know."""
    registry.import_plugin(str(EXAMPLE / "my_models.py"))
    code = ("from recbole_iacn import registry; spec, cls = registry.resolve('MeanPool_IaCN'); "
            "print(spec.host, cls.__name__, cls.iacn_host.__module__)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["MeanPool", "MeanPool_IaCN", "my_models"]


def test_registering_twice_a_variant_name_or_a_non_host_is_a_clear_error(clean_registry, tmp_path):
    pool = _host()
    spec = registry.register(pool, config_files=[EXAMPLE / "MeanPool.yaml"])
    assert spec.name == "Pool" and "Pool_IaCN" in registry.MODELS
    with pytest.raises(RegistrationError, match="'Pool' is already registered"):
        registry.register(_host(), config_files=[EXAMPLE / "MeanPool.yaml"])
    with pytest.raises(RegistrationError, match="'DIN' is already registered"):
        registry.register(_host(), name="DIN")
    with pytest.raises(RegistrationError, match="ending in _IaCN"):
        registry.register(_host(), name="Other_IaCN")
    with pytest.raises(RegistrationError, match="ending in _IaCN"):
        registry.register(_host("Mine_IaCN"))
    with pytest.raises(RegistrationError, match="a Python identifier"):
        registry.register(_host(), name="my/host")
    with pytest.raises(RegistrationError, match="is a class"):
        registry.register(42, name="Number")
    with pytest.raises(RegistrationError, match="'module:ClassName'"):
        registry.register("not a target")
    with pytest.raises(RegistrationError, match="subclass of recbole_iacn.model.base.CTRModel"):
        registry.register(dict, name="Dict")
    _, recbole_deepfm = registry.resolve("DeepFM")  # a RecBole model: not a host
    with pytest.raises(RegistrationError, match="subclass of recbole_iacn.model.base.CTRModel"):
        registry.register(recbole_deepfm, name="MyDeepFM")
    with pytest.raises(RegistrationError, match="already carries the IaCN component"):
        registry.register(registry.get_spec("Pool_IaCN").load(), name="Twice")
    from recbole_iacn.model.base import CTRModel

    with pytest.raises(RegistrationError, match="does not define forward"):
        registry.register(type("NoForward", (CTRModel,), {}))
    with pytest.raises(RegistrationError, match="does not exist"):
        registry.register(_host("Other"), config_files=[tmp_path / "missing.yaml"])
    with pytest.raises(RegistrationError):  # a RegistrationError is a ConfigError: exit status 2 on the command line
        registry.register(_host(), name="DIN")
    assert issubclass(RegistrationError, ConfigError)
    assert not {"Other", "Twice", "NoForward", "Number"} & set(registry.MODELS)  # nothing half-registered


def test_a_host_declares_its_own_settings_once(clean_registry, tmp_path):
    """settings=[Setting(...)]: checked like the package's settings, and listed by --help under the host."""
    from recbole_iacn import cli
    from recbole_iacn.settings import Setting

    defaults = tmp_path / "Pool.yaml"
    defaults.write_text("embedding_size: 8\npool_dropout: 0.1\n", encoding="utf-8")
    dropout = Setting("pool_dropout", "float", "Pool", "dropout before the output layer", low=0, high=1, open="high")
    registry.register(_host(), label="Pooling", config_files=[defaults], settings=[dropout])
    assert cli.build_overrides({"pool_dropout": "0.5"}, "Pool_IaCN", "ml-100k") == {"pool_dropout": 0.5}
    with pytest.raises(ConfigError, match=r"pool_dropout=1 .*is not valid: pool_dropout expects a number in \[0, 1\)"):
        cli.build_overrides({"pool_dropout": "1"}, "Pool", "ml-100k")
    with pytest.raises(ConfigError, match="pool_dropout"):
        settings.validate({"pool_dropout": 2.0})
    text = cli.help_text("Pool", "ml-100k")
    assert "\nPooling:\n  --pool_dropout" in text and "default 0.1" in text
    with pytest.raises(ConfigError, match="in group 'model'"):
        registry.register(_host("Other"), config_files=[defaults],
                          settings=[Setting("other_size", "int", "model", "a size")])
    with pytest.raises(ConfigError, match="already declared"):
        registry.register(_host("Other"), config_files=[defaults],
                          settings=[Setting("embedding_size", "int", "Other", "a size")])
    assert "Other" not in registry.MODELS


def test_an_import_that_is_not_there_is_one_line_exit_2(clean_registry, capsys):
    from recbole_iacn import cli

    assert cli.main(["--import=no_such_plugin_module", "--model=DIN", "--help"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --import: no module named 'no_such_plugin_module'") and "\n" not in err
    assert registry.PLUGINS_ENV not in os.environ
    assert cli.main(["--import=missing/my_models.py", "--help"]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_the_package_hosts_are_registered_by_the_same_call():
    from recbole_iacn.model import variants

    assert registry.host_names() == ["DIN", "DIEN", "WideDeep", "DAIN"]
    assert registry.host_model_names() == ["DIN", "DIN_IaCN", "DIEN", "DIEN_IaCN", "WideDeep", "WideDeep_IaCN",
                                           "DAIN", "DAIN_IaCN"]
    assert registry.model_names() == [*registry.host_model_names(), *registry.attached_names()]
    assert registry.get_spec("WideDeep").label == "Wide&Deep"
    assert registry.get_spec("WideDeep_IaCN").label == "Wide&Deep + IaCN"
    assert registry.get_spec("DIEN_IaCN").config_files == ("model/DIEN.yaml", "model/IaCN.yaml")
    din_iacn = registry.get_spec("DIN_IaCN").load()
    assert din_iacn is variants.DIN_IaCN is variants.with_iacn(registry.get_spec("DIN").load())
    with pytest.raises(AttributeError):
        variants.NotAHost_IaCN
