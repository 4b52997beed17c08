"""Studies on a Ray cluster of several machines: the folders every node must reach, checked before
any trial starts.

Ray Tune's trials write their results and checkpoints straight to the study's storage path, from
whichever node they run on, and read the dataset from ``data_path``. On one machine any folder does;
on a cluster of several nodes:

* the storage path must be given explicitly (``--tune_storage``): the default ``./ray_results`` is a
  folder of the driver's machine only. It must be a folder mounted at the same path on every node
  (NFS or similar), since the driver also writes the study's report there (cloud URIs such as
  ``s3://`` are not supported by this driver);
* a small task pinned to each node checks that it sees the storage folder (a marker file the driver
  has just written there) and the dataset folder; when a node does not, the study stops with a
  :class:`~recbole_iacn.errors.ConfigError` naming the node and the folder.
"""

from __future__ import annotations

import os
import uuid
from typing import Dict, List, Sequence

from recbole_iacn.errors import ConfigError

PROBE_PREFIX = ".recbole-iacn-probe-"
PROBE_TIMEOUT_S = 120


def alive_nodes() -> List[dict]:
    """``ray.nodes()`` entries of the live nodes of the connected cluster."""
    import ray

    return [node for node in ray.nodes() if node.get("Alive")]


def _node_name(node: dict) -> str:
    return f"{node.get('NodeManagerAddress', '?')} (node {str(node.get('NodeID', '?'))[:8]})"


def missing_on_nodes(paths: Sequence[str], nodes: Sequence[dict]) -> Dict[str, List[str]]:
    """``{node name: [paths it does not see]}`` for the nodes that miss any, one pinned task per node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0, max_retries=0)
    def missing(candidates):
        return [p for p in candidates if not os.path.exists(p)]

    pending = {
        _node_name(node): missing.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote(list(paths))
        for node in nodes
    }
    answers = dict(zip(pending, ray.get(list(pending.values()), timeout=PROBE_TIMEOUT_S)))
    return {name: lost for name, lost in answers.items() if lost}


def check_shared_folders(storage_path: str, storage_given: bool, data_folder: str, address=None) -> None:
    """Refuse, before any trial starts, a study whose folders some node of the cluster cannot reach
    (see the module docstring). One node (a local Ray): nothing to check."""
    nodes = alive_nodes()
    if len(nodes) <= 1:
        return
    where = f"The Ray cluster{f' at {address}' if address else ''} has {len(nodes)} nodes"
    if not storage_given:
        raise ConfigError(
            f"{where}, and trials on any of them write results and checkpoints to the study's storage folder, "
            f"so it must be one that every node reaches: give it with --tune_storage=/shared/folder (mounted at "
            f"the same path on every node, e.g. NFS). The default "
            f"{storage_path} is a folder of this machine only."
        )
    os.makedirs(storage_path, exist_ok=True)
    marker = os.path.join(storage_path, f"{PROBE_PREFIX}{uuid.uuid4().hex}")
    with open(marker, "w", encoding="utf-8") as f:
        f.write("written by the recbole-iacn study driver to check that every node sees this folder\n")
    try:
        lost = missing_on_nodes([data_folder, marker], nodes)
    finally:
        os.remove(marker)
    if lost:
        names = {data_folder: f"the dataset folder {data_folder} (--data_path)",
                 marker: f"the storage folder {storage_path} (--tune_storage)"}
        details = "; ".join(f"{node} does not see {' nor '.join(names[p] for p in missing)}"
                            for node, missing in sorted(lost.items()))
        raise ConfigError(
            f"{where}, and not all of them see the study's folders: {details}. Mount these folders at the same "
            "path on every node (NFS or similar) and run the study again; no trial was started."
        )
