"""Ray Tune on a real multi-node Ray cluster: two local nodes of 1 CPU each (``ray.cluster_utils``), a
2-trial study through ``--address``, and the shared-folder rule for clusters of several nodes.

Every node listens on 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes Ray use the loopback
address instead of the machine's). Skipped, with the reason, when Ray cannot start a cluster here.
Run alone: ``python -m pytest -q tests/test_ray_cluster.py``.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from recbole_iacn.errors import ConfigError

from tests.conftest import SYN_DATASET as DATASET, SYN_MODEL as MODEL, SYN_TINY as TINY  # noqa: E402
TWO_DELTAS = """\
search: grid
scheduler: fifo
params:
  iacn_delta: {grid_search: [0.1, 0.9]}
  iacn_lambda: 1.0
"""
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@pytest.fixture(scope="module")
def syn_root(tmp_path_factory) -> str:
    from recbole_iacn.data import build_synthetic

    root = tmp_path_factory.mktemp("cluster-data")
    build_synthetic(root / DATASET, name=DATASET, scale=0.002, max_history=10)
    return str(root)


@pytest.fixture(scope="module")
def two_node_cluster():
    """A head node and a worker node (1 CPU each) on 127.0.0.1; always shut down."""
    ray = pytest.importorskip("ray")
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(LOOPBACK_ONLY, "0")  # the nodes' processes inherit it
        patch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)  # this process imported Ray already
        cluster = None
        try:
            cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"})
            cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
            cluster.wait_for_nodes()
        except Exception as exc:  # pragma: no cover - depends on the machine
            if cluster is not None:
                cluster.shutdown()
            pytest.skip(f"Ray cannot start a local two-node cluster here: {exc}")
        try:
            yield cluster
        finally:
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()


def write_space(tmp_path: Path) -> str:
    path = tmp_path / "two.yaml"
    path.write_text(textwrap.dedent(TWO_DELTAS), encoding="utf-8")
    return str(path)


def argv(cluster, space: str, syn_root: str, *extra: str) -> list:
    return [f"--model={MODEL}", f"--dataset={DATASET}", f"--tune={space}", f"--data_path={syn_root}",
            f"--address={cluster.address}", "--tune_name=two", "--tune_max_concurrent=2", "--tune_verbose=0",
            *[f"--{k}={v}" for k, v in TINY.items()], *extra]


def test_two_trial_study_on_a_two_node_cluster(tmp_path, syn_root, two_node_cluster, capsys):
    import pandas as pd

    from recbole_iacn.cli import main
    from recbole_iacn.quick_start import load_model

    shared = tmp_path / "shared"  # every node of this cluster sees this machine's folders
    assert main(argv(two_node_cluster, write_space(tmp_path), syn_root, f"--tune_storage={shared}")) == 0
    study = shared / "two"
    assert f"study: {study}" in capsys.readouterr().out
    table = pd.read_csv(study / "results.csv")
    assert sorted(table["iacn_delta"]) == [0.1, 0.9]
    assert set(table["status"]) == {"finished"}
    for column in ("valid_auc", "test_auc"):
        assert table[column].between(0, 1).all()
    assert table["test_logloss"].between(0, math.inf).all()
    for _, row in table.iterrows():
        checkpoint = Path(row["checkpoint"])
        assert checkpoint.is_file() and shared in checkpoint.parents  # written to the shared storage
        assert load_model(checkpoint).config["iacn_delta"] == row["iacn_delta"]
    assert not list(shared.glob(".recbole-iacn-probe-*"))  # the driver's check leaves no marker


def test_default_storage_on_a_cluster_is_refused_before_any_trial(tmp_path, syn_root, two_node_cluster, capsys):
    from recbole_iacn.cli import main

    assert main(argv(two_node_cluster, write_space(tmp_path), syn_root)) == 2
    err = capsys.readouterr().err
    assert "has 2 nodes" in err and "--tune_storage=/shared/folder" in err and "ray_results" in err
    assert not (tmp_path / "ray_results").exists()  # nothing started, nothing written


def test_a_node_that_does_not_see_the_folders_is_named(tmp_path, syn_root, two_node_cluster, monkeypatch):
    """Both local nodes share this machine's disk, so a node that lacks the folders is simulated."""
    import ray

    from recbole_iacn.tune import cluster

    def second_node_misses_everything(paths, nodes):
        assert len(nodes) == 2 and all(Path(p).exists() for p in paths)  # the marker is in place meanwhile
        return {"10.0.0.7 (node abcdef12)": list(paths)}

    ray.init(address=two_node_cluster.address)
    try:
        monkeypatch.setattr(cluster, "missing_on_nodes", second_node_misses_everything)
        storage = tmp_path / "local-only"
        with pytest.raises(ConfigError, match=r"has 2 nodes, and not all of them see the study's folders: "
                                              r"10.0.0.7 \(node abcdef12\) does not see the dataset folder .* nor "
                                              r"the storage folder .*local-only \(--tune_storage\).*no trial was started"):
            cluster.check_shared_folders(str(storage), True, str(Path(syn_root) / DATASET), two_node_cluster.address)
        assert list(storage.iterdir()) == []  # the marker is removed
    finally:
        ray.shutdown()
