"""The ``Config`` class: RecBole's ``Config`` for a model class, with this package's YAML defaults.

:func:`IaCNConfig` builds it (after the compatibility fixes); :func:`rank_device` sets a rank's device. The
default files and their order come from :mod:`recbole_iacn.properties`; the checks of the user's settings are
:mod:`recbole_iacn.settings`'s, and :func:`recbole_iacn.pipeline.make_config` builds a run's config.
"""

from __future__ import annotations

import os

from recbole.config import Config

from recbole_iacn import compat
from recbole_iacn.properties import default_layers, properties_dir, read_yaml_file
from recbole_iacn.registry import get_spec
from recbole_iacn.settings import uses_gpu


def IaCNConfig(model, dataset, config_file_list=None, config_dict=None, plugin=True):
    """A RecBole ``Config`` for ``model`` (a class): :class:`PluginConfig`.

    Plugin models (``plugin=True``) take their defaults from :func:`default_layers` rather than from
    RecBole's name-based quick-start files, and are validated against :mod:`recbole_iacn.settings`;
    RecBole models keep RecBole's own defaults."""
    compat.apply()
    return PluginConfig(model, dataset, config_file_list, config_dict, plugin)


class PluginConfig(Config):
    """RecBole's ``Config``; plugin models (``plugin=True``) read :func:`default_layers` and are
    validated with their ``validate_config`` (the declarations of :mod:`recbole_iacn.settings`)."""

    def __init__(self, model, dataset, config_file_list=None, config_dict=None, plugin=True):
        self._plugin = plugin
        super().__init__(model, dataset, config_file_list, config_dict)
        validate = getattr(self.model_class, "validate_config", None)
        if plugin and validate is not None:
            validate(self)

    def compatibility_settings(self):
        compat.install_numpy_aliases()

    def _init_device(self):
        if "local_rank" not in self.final_config_dict:
            return super()._init_device()
        rank_device(self.final_config_dict)  # a rank of a multi-process run: gloo on CPU too

    def _load_config_files(self, file_list):
        merged = {}
        for path in file_list or []:
            merged.update(read_yaml_file(path))
        return merged

    def _load_cmd_line(self):
        # The command line is parsed by recbole_iacn.cli and arrives as config_dict, so the
        # Python API never picks up a host program's argv (pytest, Ray workers).
        return {}

    def _load_internal_config_dict(self, model, model_class, dataset):
        if not self._plugin:
            return super()._load_internal_config_dict(model, model_class, dataset)
        dataset_file = properties_dir() / "dataset" / f"{dataset}.yaml"
        self.internal_config_dict = {}
        for file in default_layers(get_spec(model).config_files, dataset):
            values = read_yaml_file(file)
            self.internal_config_dict.update(values)
            if file == dataset_file:
                self.parameters["Dataset"] += [k for k in values if k not in self.parameters["Dataset"]]
        self.internal_config_dict["MODEL_TYPE"] = model_class.type

    def _set_default_parameters(self):
        data_root = self.final_config_dict["data_path"]
        super()._set_default_parameters()
        if self._plugin:
            # RecBole points ml-100k at its bundled raw files; plugin models read the CTR view
            # under data_path (recbole_iacn.data.prepare builds it on first use).
            self.final_config_dict["data_path"] = os.path.join(data_root, self.dataset)
        else:
            self._read_byte_order_marks()
            self._read_a_given_ml100k()

    def _read_a_given_ml100k(self):
        """RecBole reads its bundled ml-100k whatever data_path says: a copy under the data_path the user gave is
        read instead (the bundled files still when that folder has none, as for plugin models)."""
        if self.dataset != "ml-100k" or "data_path" not in self.external_config_dict:
            return
        folder = os.path.join(self.external_config_dict["data_path"], self.dataset)
        benchmark = self.final_config_dict.get("benchmark_filename")
        names = [f"{self.dataset}.{b}.inter" for b in benchmark] if benchmark else [f"{self.dataset}.inter"]
        if all(os.path.isfile(os.path.join(folder, n)) for n in names):
            self.final_config_dict["data_path"] = folder

    def _read_byte_order_marks(self):
        """RecBole's models read the atomic files with ``encoding`` (unset: the locale's, UTF-8 here), so a UTF-8 byte-order
        mark (editors on Windows write one) became part of the first column's name ("\\ufeffuser_id") and the run
        died in pandas with KeyError: 'user_id'. UTF-8 with an optional mark reads every UTF-8 file as before."""
        encoding = self.final_config_dict.get("encoding")
        if encoding is None or str(encoding).lower().replace("_", "-") in ("utf-8", "utf8"):
            self.final_config_dict["encoding"] = "utf-8-sig"


def rank_device(values) -> None:
    """RecBole's ``Config._init_device`` for a rank (``local_rank`` set), on CPU as well as GPU: sets
    ``device`` (``cuda:local_rank`` or ``cpu``), ``single_spec`` False, ``dist_backend``, and keeps ranks
    other than local rank 0 quiet (``state`` error, no progress bars), so that each machine logs once.
    ``values`` is the config's ``final_config_dict``. The rank joined the process group at its entry
    (:func:`recbole_iacn.distributed.settings.join_process_group`)."""
    import torch

    gpu_id = values["gpu_id"]
    values["gpu_id"] = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id)
    os.environ["CUDA_VISIBLE_DEVICES"] = values["gpu_id"]
    local_rank = int(values["local_rank"])
    gpu = uses_gpu(values)
    values["device"] = torch.device("cuda", local_rank) if gpu else torch.device("cpu")
    values["single_spec"] = False
    values["dist_backend"] = "nccl" if gpu else "gloo"
    if local_rank != 0:
        values["state"] = "error"
        values["show_progress"] = False
        values["verbose"] = False
