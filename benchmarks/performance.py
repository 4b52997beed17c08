"""Training/evaluation throughput and peak memory of every model, as ratios within one run.

Each model is measured in a fresh subprocess (so that peak RSS is its own): load the data, build the
model and the optimizer its trainer builds (fused Adam for plugin models, RecBole's Adam for
RecBole's), run ``--warmup`` training batches untimed, then time ``--batches`` training batches (data
loading included: the loader is part of each side's cost), then the same for evaluation (``predict``
on the validation loader, ``--eval-batches``). Throughput is samples (rows: positives and negatives)
per second. Memory: peak RSS of the subprocess (``resource.getrusage``) and its increase over the RSS
right after the imports; on CUDA also ``torch.cuda.max_memory_allocated``. A model may carry its own
settings, ``DIN_IaCN:iacn_lambda=0``: with λ = 0 no auxiliary loss is computed, so that row splits
``X_IaCN``'s overhead into the wider item embedding and the capsule network.

Common ground with RecBole's own DIN, DIEN and WideDeep (``recbole.DIN`` ...): the same raw data
(ml-100k by default), ``train_batch_size``, ``eval_batch_size``, ``embedding_size``,
``MAX_ITEM_LIST_LENGTH`` and learning rate. Our models read the package's dense CTR view (per
interaction after a user's first: a positive with its earlier history and one popularity-sampled
negative; the last two per user are valid/test). RecBole's DIN/DIEN read a SequentialDataset
(prefix augmentation of the time-sorted ``.inter``: one sample per interaction after a user's first,
with its history, leave-one-out valid/test) with one uniform negative per positive drawn by the
training loader; RecBole's WideDeep (a context model) reads the raw interactions with one uniform
negative each. The per-epoch training row counts of each side are printed in the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

HOSTS = tuple(common.host_names())
#: ``X_IaCN`` with λ = 0 computes no auxiliary loss: its cost over X is that of the wider item
#: embedding alone (E_orig ⊕ E_aux in the host's layers), the rest of X_IaCN's is the capsule network's.
WIDENING_ONLY = "iacn_lambda=0"
PLUGIN_MODELS = tuple(m for h in HOSTS for m in (h, f"{h}_IaCN:{WIDENING_ONLY}", f"{h}_IaCN"))
#: ``recbole.X@ctr``: RecBole's own X class trained on the package's CTR view, i.e. on the very samples,
#: batches and test rows ours use, so that the two sides' AUCs are comparable.
SAME_DATA = common.SAME_DATA
SAME_DATA_HOSTS = common.SAME_DATA_HOSTS
same_data_host = common.same_data_host
on_ctr_view = common.on_ctr_view
RECBOLE_MODELS = ("recbole.DIN", "recbole.DIEN", "recbole.WideDeep", *(f"recbole.{h}{SAME_DATA}" for h in SAME_DATA_HOSTS))
DEFAULT_DATASET = "ml-100k"
DEFAULT_BATCH_SIZE = 1024
DEFAULT_EVAL_BATCH_SIZE = 4096
DEFAULT_EMBEDDING_SIZE = 18
DEFAULT_MAX_LEN = 20
DEFAULT_LR = 0.001
DEFAULT_WARMUP = 5
DEFAULT_BATCHES = 50
DEFAULT_EVAL_BATCHES = 20
DEFAULT_AUC_EPOCHS = 1
DEFAULT_SYNTHETIC_BATCHES = 200
DEFAULT_SYNTHETIC_MODELS = ("DIN_IaCN", "DIEN_IaCN")
SYNTHETIC_NAME = "synthetic-books"
IACN_TARGET = 1.3  # X_IaCN epoch time / X epoch time must be <= this
#: Training samples/s through the tensor loader ÷ through RecBole's loader, per host (issue 15).
LOADER_SPEEDUP_TARGETS = {"DIN": 1.2, "WideDeep": 1.5, "DAIN": 1.5}
#: ``X:<LOADER_KEY>=<value>`` rows: the same model through each data loader, compared pairwise.
LOADER_KEY = "data_loader"
LOADERS = ("recbole", "tensor")


def with_setting(model: str, key: str, value) -> str:
    """``("DIN", "k", 1)`` → ``"DIN:k=1"``; ``("DIN:a=2", "k", 1)`` → ``"DIN:a=2,k=1"`` (the row syntax)."""
    return f"{model}{',' if ':' in model else ':'}{key}={value}"


DEFAULT_BLOCK = 5
SPEEDUP_TARGET = 2.0  # our DIN/DIEN training throughput / RecBole's must be >= this
MEMORY_LIMIT_GB = 8.0  # peak RSS on the SYNTHETIC Books-sized data
BYTES_PER_MB = 1024 ** 2
BYTES_PER_GB = 1024 ** 3
#: ru_maxrss is in kilobytes on Linux, bytes on macOS.
MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024
#: What RecBole's models load from ml-100k to match the CTR view's features (user profile, item genre).
RECBOLE_LOAD_COL = {
    "inter": ["user_id", "item_id", "timestamp"],
    "user": ["user_id", "age", "gender", "occupation", "zip_code"],
    "item": ["item_id", "class"],
}
RECBOLE_EVAL_ARGS = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "uni100"}


# ------------------------------------------------------------------------------ memory
def current_rss() -> int:
    """Resident set size of this process now, in bytes."""
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * MAXRSS_UNIT


# ------------------------------------------------------------------------------ configuration
def split_model_spec(spec: str) -> tuple[str, dict]:
    """``"DIN_IaCN:iacn_lambda=0,iacn_delta=1"`` → ``("DIN_IaCN", {"iacn_lambda": 0, "iacn_delta": 1})``."""
    name, _, settings = spec.partition(":")
    return name, common.parse_overrides(settings.split(",") if settings else [])


def model_config(model: str, args, device: str) -> dict:
    """The config of ``model`` (a name, or ``name:key=value,...``): the shared settings, plus RecBole's
    data/eval settings for its own models, then the spec's own settings."""
    model, own = split_model_spec(model)
    shared = {
        **common.QUIET, **common.device_config(device), "seed": args.seed, "data_path": args.data_path,
        "train_batch_size": args.batch_size, "eval_batch_size": args.eval_batch_size,
        "embedding_size": args.embedding_size, "MAX_ITEM_LIST_LENGTH": args.max_len,
        "learning_rate": args.learning_rate, "epochs": max(args.auc_epochs, 1),
        "checkpoint_dir": args.checkpoint_dir,
    }
    if model.startswith("recbole.") and same_data_host(model) is None:
        shared.update(load_col=RECBOLE_LOAD_COL, eval_args=RECBOLE_EVAL_ARGS, metrics=["AUC", "LogLoss"],
                      valid_metric="AUC", train_neg_sample_args={"distribution": "uniform", "sample_num": 1},
                      filter_inter_by_user_or_item=False, threshold=None)
    return {**shared, **args.overrides, **own}


def loader_rows_per_epoch(loader) -> int:
    """Rows one training epoch yields: samples × (1 + negatives) where the loader samples negatives."""
    return len(loader._dataset) * int(getattr(loader, "times", 1) or 1)


def batch_interaction(batch):
    """Evaluation loaders yield ``(interaction, ...)`` tuples; training loaders an Interaction."""
    return batch[0] if isinstance(batch, tuple) else batch


def _cycle(loader):
    while True:
        yielded = False
        for batch in loader:
            yielded = True
            yield batch
        if not yielded:
            raise RuntimeError("the data loader yields no batches")


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def time_interleaved(step, loaders: dict, warmup: int, batches: int, block: int, device: str) -> dict:
    """``step(batch) -> rows`` over ``warmup`` untimed, then ``batches`` timed batches of each loader in
    ``loaders`` ({name: loader}), alternating blocks of ``block`` batches between them (the order
    reversed every round), so that a machine shared with other work slows every loader alike.
    Returns {name: (rows, wall seconds, CPU seconds)}: CPU seconds are this process's (all its threads),
    less sensitive than wall time to other jobs on a shared machine."""
    streams = {name: _cycle(loader) for name, loader in loaders.items()}
    for stream in streams.values():
        for _ in range(warmup):
            step(next(stream))
    totals = {name: [0, 0.0, 0.0] for name in streams}
    names, done, round_index = list(streams), 0, 0
    while done < batches:
        count = min(block, batches - done)
        for name in names if round_index % 2 == 0 else names[::-1]:
            _sync(device)
            started, cpu_started = time.perf_counter(), time.process_time()
            for _ in range(count):
                totals[name][0] += step(next(streams[name]))
            _sync(device)
            totals[name][1] += time.perf_counter() - started
            totals[name][2] += time.process_time() - cpu_started
        done, round_index = done + count, round_index + 1
    return {name: tuple(total) for name, total in totals.items()}


def time_training(model, optimizer, loaders: dict, warmup: int, batches: int, device: str, loss_fn=None,
                  block: Optional[int] = None) -> dict:
    """Training (loader + forward + backward + step) through each of ``loaders`` (see
    :func:`time_interleaved`; ``block`` None: one block). ``loss_fn``: what the trainer's steps call
    (default ``model.calculate_loss``). Returns {name: result fields}."""
    model.train()
    timed = time_interleaved(lambda batch: _train_step(model, optimizer, batch, device, loss_fn), loaders,
                             warmup, batches, block or batches, device)
    return {name: {"train_rows_timed": rows, "train_seconds": seconds, "train_samples_per_s": rows / seconds,
                   "train_cpu_seconds": cpu, "train_samples_per_cpu_s": rows / cpu}
            for name, (rows, seconds, cpu) in timed.items()}


def _train_step(model, optimizer, batch, device, loss_fn=None) -> int:
    from torch.profiler import record_function

    batch = batch.to(device)
    optimizer.zero_grad()
    with record_function("## loss (forward)"):
        loss = (loss_fn or model.calculate_loss)(batch)
        if isinstance(loss, tuple):
            loss = sum(loss)
    with record_function("## backward"):
        loss.backward()
    with record_function("## optimizer step"):
        optimizer.step()
    return len(batch)


#: The phases of a profiled step (``record_function`` ranges), printed before the top operators.
PROFILE_PHASES = ("## data loader", "## loss (forward)", "## backward", "## optimizer step")


def profile_training(model, optimizer, loader, batches: int, device: str, top: int, loss_fn=None) -> dict:
    """``torch.profiler`` over ``batches`` training steps: milliseconds per step of each phase and the
    ``top`` operators by self CPU time (the table torch prints)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    model.train()
    stream = _cycle(loader)
    with profile(activities=activities) as prof:
        for _ in range(batches):
            with record_function("## data loader"):
                batch = next(stream)
            _train_step(model, optimizer, batch, device, loss_fn)
        _sync(device)
    events = prof.key_averages()
    phases = {e.key: e.cpu_time_total / 1e3 / batches for e in events if e.key in PROFILE_PHASES}
    table = events.table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=48)
    return {"profile_ms_per_step": {k: round(phases.get(k, 0.0), 3) for k in PROFILE_PHASES},
            "profile_top_ops": table, "profile_batches": batches}


def time_evaluation(model, loaders: dict, warmup: int, batches: int, device: str, block: Optional[int] = None) -> dict:
    """``predict`` over the evaluation batches of each of ``loaders`` (see :func:`time_interleaved`)."""
    import torch

    def step(batch) -> int:
        interaction = batch_interaction(batch).to(device)
        model.predict(interaction)
        return len(interaction)

    model.eval()
    with torch.no_grad():
        timed = time_interleaved(step, loaders, warmup, batches, block or batches, device)
    return {name: {"eval_rows_timed": rows, "eval_seconds": seconds, "eval_samples_per_s": rows / seconds,
                   "eval_cpu_seconds": cpu, "eval_samples_per_cpu_s": rows / cpu}
            for name, (rows, seconds, cpu) in timed.items()}


def loader_variants(prepared, interleave: bool) -> dict:
    """{data loader: prepared}: the run as configured (key None), or, with ``interleave``, the same splits
    through RecBole's loaders and through the tensor loaders (keys ``recbole``, ``tensor``)."""
    import dataclasses

    from recbole_iacn.data.loader import TensorTrainLoader, tensor_loaders

    if not interleave:
        return {None: prepared}
    if not prepared.plugin or isinstance(prepared.train_data, TensorTrainLoader):
        raise ValueError("--interleave-loaders needs plugin models prepared with data_loader=recbole.")
    config = prepared.config
    splits = [loader._dataset for loader in (prepared.train_data, prepared.valid_data, prepared.test_data)]
    train, valid, test = tensor_loaders(config, *splits)
    tensor = dataclasses.replace(prepared, train_data=train, valid_data=valid, test_data=test)
    return {"recbole": prepared, "tensor": tensor}


def measure(model_name: str, dataset: str, args) -> list[dict]:
    """Everything measured for one model (run inside the worker subprocess): one row, or with
    ``--interleave-loaders`` one per data loader."""
    import torch

    from recbole_iacn import compat
    from recbole_iacn.pipeline import build_model, build_trainer, prepare, run

    compat.apply()
    import recbole.data  # noqa: F401  (imported before the baseline RSS: both sides pay the same imports)
    import recbole.trainer  # noqa: F401

    torch.set_num_threads(args.threads)
    device = common.resolve_device(args.device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_start = current_rss()
    started = time.perf_counter()
    name, _ = split_model_spec(model_name)
    host = same_data_host(name)
    config = model_config(model_name, args, device)
    if args.interleave_loaders:
        config[LOADER_KEY] = "recbole"  # RecBole's loaders; the tensor loaders are built on the same splits
    prepared = prepare(host or name, dataset, config_dict=config)
    if host:
        prepared = on_ctr_view(prepared, host)
    load_seconds = time.perf_counter() - started
    rss_data = current_rss()
    net = build_model(prepared)
    # the optimizer and loss training uses: fused Adam for plugin models, RecBole's Adam for RecBole's models
    trainer = build_trainer(prepared, net)
    optimizer = trainer.optimizer
    loss_fn = trainer.training_loss()  # compiled with compile_loss: true
    result = {
        "model": model_name, "dataset": dataset, "device": common.device_name(device),
        "threads": torch.get_num_threads(), "train_batch_size": prepared.config["train_batch_size"],
        "embedding_size": prepared.config["embedding_size"], "max_len": prepared.config["MAX_ITEM_LIST_LENGTH"],
        "train_rows_per_epoch": loader_rows_per_epoch(prepared.train_data),
        "parameters": sum(p.numel() for p in net.parameters()), "load_seconds": round(load_seconds, 2),
    }
    batches = args.batches
    if args.full_epoch:
        batches = math.ceil(result["train_rows_per_epoch"] / prepared.config["train_batch_size"])
    variants = loader_variants(prepared, args.interleave_loaders)
    block = args.block if args.interleave_loaders else None
    training = time_training(net, optimizer, {k: v.train_data for k, v in variants.items()}, args.warmup, batches,
                             device, loss_fn, block)
    evaluation = time_evaluation(net, {k: v.valid_data for k, v in variants.items()}, args.warmup, args.eval_batches,
                                 device, block)
    results = []
    for loader, variant in variants.items():
        row_name = model_name if loader is None else with_setting(model_name, LOADER_KEY, loader)
        row = {**result, "model": row_name, **training[loader], **evaluation[loader], "timed_batches": batches}
        if args.interleave_loaders:
            row["interleaved_block"] = block
        if args.profile_batches > 0:
            row.update(profile_training(net, optimizer, variant.train_data, args.profile_batches, device,
                                        args.profile_top, loss_fn))
        if getattr(loss_fn, "fallback_reason", None):
            row["compile_fallback"] = loss_fn.fallback_reason
        row["epoch_seconds_est"] = row["train_rows_per_epoch"] / row["train_samples_per_s"]
        results.append(row)
    for row in results:  # memory: the whole process (both loaders when interleaved)
        row["rss_start_mb"] = rss_start / BYTES_PER_MB
        row["rss_after_data_mb"] = rss_data / BYTES_PER_MB
        row["peak_rss_mb"] = peak_rss() / BYTES_PER_MB
        row["peak_rss_delta_mb"] = (peak_rss() - rss_start) / BYTES_PER_MB
        if device == "cuda":
            row["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / BYTES_PER_MB
    if args.auc_epochs > 0:
        prepared.config["epochs"] = args.auc_epochs
        for row, variant in zip(results, variants.values()):
            fit = run(host or name, dataset, prepared=variant, saved=False)
            row["test_auc"] = float(fit["test_result"].get("auc", math.nan))
            row["auc_epochs"] = args.auc_epochs
    return results


# ------------------------------------------------------------------------------ orchestration
def run_worker(model: str, dataset: str, args, argv_common: list[str]) -> list[dict]:
    """Measure ``model`` in a fresh Python process; its result rows (``error`` set on failure)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_path = f.name
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", model, "--worker-dataset", dataset,
           "--worker-out", result_path, *argv_common]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=args.workdir)
    try:
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            error = lines[-1] if lines else f"exit {proc.returncode}"
            names = [with_setting(model, LOADER_KEY, loader) for loader in LOADERS] if args.interleave_loaders else [model]
            return [{"model": name, "dataset": dataset, "error": error} for name in names]
        with open(result_path, encoding="utf-8") as f:
            results = json.load(f)
    finally:
        os.unlink(result_path)
    for result in results:
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        result["error"] = ""
    return results


def synthetic_dataset(data_path: str, scale: float, name: str = SYNTHETIC_NAME) -> str:
    """Build (once) the SYNTHETIC Books-shaped dataset at ``scale``; its name."""
    from recbole_iacn.data import build_synthetic
    from recbole_iacn.data.prepare import has_ctr_files

    name = f"{name}-{scale:g}"
    folder = Path(data_path) / name
    if not has_ctr_files(folder, name):
        build_synthetic(folder, name, scale=scale)
    return name


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def ratio_rows(results: dict) -> list[dict]:
    """The target ratios: X_IaCN/X epoch time and ours/RecBole's training throughput."""
    def sps(m, key="train_samples_per_s"):
        r = results.get(m)
        return r.get(key, math.nan) if r and not r.get("error") else math.nan

    def cpu_sps(m):
        return sps(m, "train_samples_per_cpu_s")

    rows = []
    for host in HOSTS:
        for loader in (None, *LOADERS):
            plain, aux = (m if loader is None else with_setting(m, LOADER_KEY, loader) for m in (host, f"{host}_IaCN"))
            if plain in results and aux in results:
                value = ratio(sps(plain), sps(aux))  # epoch time ratio = inverse throughput ratio
                rows.append({"ratio": f"{aux} epoch time / {plain} epoch time", "value": value,
                             "cpu_value": ratio(cpu_sps(plain), cpu_sps(aux)),
                             "target": f"<= {IACN_TARGET}", "met": _met(value <= IACN_TARGET, value), "auc": ""})
            widened = f"{host}_IaCN:{WIDENING_ONLY}"
            if loader is None and plain in results and aux in results and widened in results:
                for label, part in (  # the same ratio as a product of its two causes
                    (f"... of which the wider item embedding ({widened} / {host})", ratio(sps(host), sps(widened))),
                    (f"... of which the capsule network's loss ({host}_IaCN / {widened})",
                     ratio(sps(widened), sps(f"{host}_IaCN"))),
                ):
                    rows.append({"ratio": label, "value": part, "target": "(breakdown)", "met": "", "auc": ""})
    rows += loader_rows(results, sps)
    for host in ("DIN", "DIEN", "WideDeep"):
        theirs = f"recbole.{host}"
        if host in results and theirs in results:
            value = ratio(sps(host), sps(theirs))
            target = host in ("DIN", "DIEN")
            aucs = [results[m].get("test_auc") for m in (host, theirs)]
            auc = "" if None in aucs else f"ours {aucs[0]:.4f} / RecBole {aucs[1]:.4f} (different test sets)"
            rows.append({"ratio": f"{host} training samples/s, ours / RecBole's (RecBole's own data pipeline)",
                         "value": value, "target": f">= {SPEEDUP_TARGET}" if target else "(none)",
                         "met": _met(value >= SPEEDUP_TARGET, value) if target else "", "auc": auc})
    for host in SAME_DATA_HOSTS:
        theirs = f"recbole.{host}{SAME_DATA}"
        if host in results and theirs in results:
            value = ratio(sps(host), sps(theirs))
            ours_auc, their_auc = (results[m].get("test_auc", math.nan) for m in (host, theirs))
            faster = value >= SPEEDUP_TARGET
            as_good = ours_auc >= their_auc  # NaN (not measured or failed) compares False
            met = _met(faster and as_good, value)
            if math.isnan(ours_auc) or math.isnan(their_auc):
                met = ("speed " + _met(faster, value) + ", AUC not measured") if met != "n/a" else met
            elif met == "NO":
                met += " (" + " and ".join(w for w, bad in (("speed", not faster), ("AUC", not as_good)) if bad) + ")"
            rows.append({"ratio": f"{host} training samples/s, ours / RecBole's on the same CTR data, at equal or "
                                  "better test AUC", "value": value, "target": f">= {SPEEDUP_TARGET}", "met": met,
                         "auc": f"ours {ours_auc:.4f} / RecBole {their_auc:.4f} (same test rows)"})
    return rows


def loader_rows(results: dict, sps) -> list[dict]:
    """Training samples/s through the tensor loader ÷ through RecBole's, for every model with both
    ``model:data_loader=tensor`` and ``model:data_loader=recbole`` rows (same data, same model)."""
    rows = []
    for model in results:
        name, settings = split_model_spec(model)
        old = model.replace(f"{LOADER_KEY}=tensor", f"{LOADER_KEY}=recbole")
        if settings.get(LOADER_KEY) != "tensor" or old not in results:
            continue
        name = model.replace(f",{LOADER_KEY}=tensor", "").replace(f":{LOADER_KEY}=tensor", "")
        value = ratio(sps(model), sps(old))
        target = LOADER_SPEEDUP_TARGETS.get(name)  # only the plain hosts have targets
        aucs = [results[m].get("test_auc") for m in (model, old)]
        auc = "" if None in aucs else f"tensor {aucs[0]:.4f} / recbole {aucs[1]:.4f} (same test rows)"
        rows.append({"ratio": f"{name} training samples/s, tensor loader / RecBole's loader", "value": value,
                     "target": f">= {target}" if target else "(none)",
                     "met": _met(value >= target, value) if target else "", "auc": auc})
    return rows


def _met(ok: bool, value: float) -> str:
    return "n/a" if math.isnan(value) else ("yes" if ok else "NO")


def memory_rows(results: dict, limit_gb: float = MEMORY_LIMIT_GB) -> list[dict]:
    rows = []
    for model, r in results.items():
        if r.get("error"):
            rows.append({"model": model, "peak_rss_gb": math.nan, "met": "n/a (failed)"})
            continue
        gb = r["peak_rss_mb"] * BYTES_PER_MB / BYTES_PER_GB
        rows.append({"model": model, "peak_rss_gb": gb, "met": "yes" if gb <= limit_gb else "NO"})
    return rows


def _f(value, digits: int = 1) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}" if isinstance(value, float) else str(value)


def median_rows(rounds: Sequence[dict]) -> dict:
    """``{model: row}`` whose numbers are the medians over the rounds that measured the model
    (``statistics.median``; a model that failed in any round keeps that round's row, with its error)."""
    import statistics

    merged = {}
    for model in dict.fromkeys(m for measured in rounds for m in measured):
        rows = [measured[model] for measured in rounds if model in measured]
        failed = [r for r in rows if r.get("error")]
        if failed:
            merged[model] = failed[0]
            continue
        row = dict(rows[0])
        for key, value in row.items():
            values = [r.get(key) for r in rows]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                row[key] = statistics.median(values)
        row["rounds"] = len(rows)
        merged[model] = row
    return merged


def results_markdown(results: dict, baseline: str, synthetic: dict, args, command: str, info: dict) -> str:
    """The whole report: absolute figures, ratios to ``baseline``, target ratios, synthetic memory."""
    text = common.markdown_header("recbole-iacn performance", command, info)
    text += (f"\nSettings: dataset {args.dataset}, train_batch_size {args.batch_size}, eval_batch_size "
             f"{args.eval_batch_size}, embedding_size {args.embedding_size}, MAX_ITEM_LIST_LENGTH {args.max_len}, "
             f"learning_rate {args.learning_rate}, threads {args.threads}, {args.warmup} warm-up + "
             f"{'one full epoch of' if args.full_epoch else args.batches} timed training batches, "
             f"{args.warmup} warm-up + {args.eval_batches} timed evaluation batches, AUC after "
             f"{args.auc_epochs} epoch(s) (0 = not measured). Ratios are against **{baseline}** measured in "
             "this same run. Epoch time is estimated as training rows per epoch / training samples per second."
             + (f" Every figure is the **median of {args.repeats} rounds** (each round measures every model once, "
                "in order; ratios are of the medians; performance.csv has each round's rows)."
                if args.repeats > 1 else "") + "\n\n")
    text += "## What each side trains on\n\n" + __doc__.split("\n\n", 2)[2] + "\n"
    base = results.get(baseline, {})
    cols = ["model", "train rows/epoch", "train samples/s", f"÷ {baseline}", "train samples/CPU s", f"÷ {baseline}",
            "eval samples/s", f"÷ {baseline}",
            "epoch s (est.)", "peak RSS MB", "RSS Δ MB", f"Δ ÷ {baseline}", "params", "test AUC"]
    if any("cuda_max_allocated_mb" in r for r in results.values()):
        cols.append("CUDA max alloc MB")
    body = []
    for model, r in results.items():
        if r.get("error"):
            body.append([model, f"FAILED: {r['error']}"] + [""] * (len(cols) - 2))
            continue
        row = [model, r["train_rows_per_epoch"], _f(r["train_samples_per_s"]),
               _f(ratio(r["train_samples_per_s"], base.get("train_samples_per_s", math.nan)), 2),
               _f(r.get("train_samples_per_cpu_s", math.nan)),
               _f(ratio(r.get("train_samples_per_cpu_s", math.nan), base.get("train_samples_per_cpu_s", math.nan)), 2),
               _f(r["eval_samples_per_s"]), _f(ratio(r["eval_samples_per_s"], base.get("eval_samples_per_s", math.nan)), 2),
               _f(r["epoch_seconds_est"]), _f(r["peak_rss_mb"]), _f(r["peak_rss_delta_mb"]),
               _f(ratio(r["peak_rss_delta_mb"], base.get("peak_rss_delta_mb", math.nan)), 2), r["parameters"],
               _f(r.get("test_auc"), 4)]
        if "CUDA max alloc MB" in cols:
            row.append(_f(r.get("cuda_max_allocated_mb")))
        body.append(row)
    text += f"\n## Absolute figures and ratios ({args.dataset})\n\n" + common.markdown_table(cols, body)
    text += ("\nTest AUC: each side on its own test set (ours: the CTR view's labeled test rows; RecBole's: "
             "leave-one-out, uni100, i.e. 1 positive + 100 sampled negatives per user), so the two sides' "
             "AUCs are NOT comparable with each other; they show that both sides learn.\n")
    targets = ratio_rows(results)
    text += "\n## Target ratios\n\n" + common.markdown_table(
        ["ratio", "value", "in CPU time", "target", "met", "AUC beside"],
        [[t["ratio"], _f(t["value"], 2), _f(t.get("cpu_value", math.nan), 2), t["target"], t["met"], t["auc"]]
         for t in targets])
    text += ("\n\"In CPU time\": the same ratio from this process's CPU seconds instead of wall seconds, the figure "
             "to read on a machine shared with other jobs (with one thread, CPU seconds are the time the "
             "work itself took).\n")
    text += profiles_markdown(results)
    if synthetic:
        scale = args.synthetic_scale
        bound = "one full epoch" if args.full_epoch else f"{args.synthetic_batches} training batches (not a full epoch)"
        text += (f"\n## Memory on SYNTHETIC Amazon-Books-sized data (scale {scale:g})\n\n"
                 "SYNTHETIC data (recbole_iacn.data.build_synthetic), only for size: no accuracy meaning. "
                 f"Measured over {bound}, with evaluation batches as above.\n\n")
        rows = memory_rows(synthetic)
        body = []
        for m in rows:
            r = synthetic[m["model"]]
            body.append([m["model"], r.get("train_rows_per_epoch", "n/a"), _f(r.get("peak_rss_mb")),
                         _f(m["peak_rss_gb"], 2), f"<= {MEMORY_LIMIT_GB:g}", m["met"], _f(r.get("train_samples_per_s")),
                         _f(r.get("load_seconds"))])
        text += common.markdown_table(["model", "train rows/epoch", "peak RSS MB", "peak RSS GB", "target GB",
                                       "met", "train samples/s", "load s"], body)
    return text


def csv_fields(result: dict) -> dict:
    """A result as CSV cells: the profile's phases as columns, its operator table left to the Markdown."""
    fields = {k: v for k, v in result.items() if k not in ("profile_ms_per_step", "profile_top_ops")}
    for phase, ms in result.get("profile_ms_per_step", {}).items():
        fields[f"profile_ms_{phase.strip('# ').split()[0]}"] = ms
    return fields


def profiles_markdown(results: dict) -> str:
    """Per profiled model: milliseconds per training step in each phase, then torch's top operators."""
    profiled = {m: r for m, r in results.items() if not r.get("error") and r.get("profile_top_ops")}
    if not profiled:
        return ""
    text = ("\n## Profiles (torch.profiler, training steps)\n\nMilliseconds per step in each phase (data loader: "
            "building the batch; its copy to the device, a no-op on the CPU, is outside every phase), "
            "then the operators with the most self CPU time. The profiler's own overhead inflates the small "
            "operators; compare phases within a model.\n\n")
    text += common.markdown_table(["model", *(p.strip("# ") for p in PROFILE_PHASES), "profiled steps"],
                                  [[m, *(_f(r["profile_ms_per_step"].get(p), 2) for p in PROFILE_PHASES),
                                    r["profile_batches"]] for m, r in profiled.items()])
    for model, r in profiled.items():
        text += f"\n### {model}\n\n```\n{r['profile_top_ops'].strip()}\n```\n"
    return text


# ------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Throughput and memory ratios of recbole-iacn models.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", default=[*PLUGIN_MODELS, *RECBOLE_MODELS])
    p.add_argument("--baseline", default="DIN", help="model the ratio columns divide by")
    p.add_argument("--convergence-seeds", type=int, default=0,
                   help="also train our DIN/DIEN and RecBole's on the same CTR rows to convergence over this many "
                        "seeds (early stopping, best epoch tested) and report test AUC and CPU seconds to the best "
                        "epoch beside the throughput ratios (reproduce.py --table hosts); 0 skips")
    p.add_argument("--convergence-models", nargs="+", default=list(SAME_DATA_HOSTS), choices=SAME_DATA_HOSTS)
    p.add_argument("--convergence-stopping-step", type=int, default=5)
    p.add_argument("--dataset", default=DEFAULT_DATASET)
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--eval-batch-size", type=int, default=DEFAULT_EVAL_BATCH_SIZE)
    p.add_argument("--embedding-size", type=int, default=DEFAULT_EMBEDDING_SIZE)
    p.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN, help="MAX_ITEM_LIST_LENGTH")
    p.add_argument("--learning-rate", type=float, default=DEFAULT_LR)
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed batches before timing")
    p.add_argument("--batches", "--max-batches", type=int, default=DEFAULT_BATCHES, dest="batches",
                   help="timed training batches")
    p.add_argument("--eval-batches", type=int, default=DEFAULT_EVAL_BATCHES, help="timed evaluation batches")
    p.add_argument("--full-epoch", action="store_true", help="time one full training epoch instead of --batches")
    p.add_argument("--auc-epochs", type=int, default=DEFAULT_AUC_EPOCHS,
                   help="epochs trained afterwards for the AUC column (0: skip)")
    p.add_argument("--synthetic-scale", type=float, default=0.0,
                   help="also measure peak RSS on SYNTHETIC Books-shaped data of this scale (1.0 = Books size; 0: skip)")
    p.add_argument("--synthetic-models", nargs="+", default=list(DEFAULT_SYNTHETIC_MODELS))
    p.add_argument("--synthetic-batches", type=int, default=DEFAULT_SYNTHETIC_BATCHES,
                   help="timed training batches on the synthetic data")
    p.add_argument("--interleave-loaders", action="store_true",
                   help="measure each plugin model through RecBole's and the tensor data loader in one process, "
                        "alternating blocks of --block batches (rows X:data_loader=recbole and X:data_loader=tensor)")
    p.add_argument("--block", type=int, default=DEFAULT_BLOCK, help="batches per block with --interleave-loaders")
    p.add_argument("--profile-batches", type=int, default=0,
                   help="also profile this many training steps per model (torch.profiler; 0: skip)")
    p.add_argument("--profile-top", type=int, default=15, help="operators listed per profile")
    p.add_argument("--repeats", type=int, default=1,
                   help="measure every model this many times, in rounds (model 1..n, then again), and report each "
                        "figure's median over the rounds; performance.csv keeps every round (column round)")
    p.add_argument("--seed", type=int, default=common.FIRST_SEED)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-dataset", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    return common.add_common_arguments(p, "performance", threads=os.cpu_count())


#: Options passed through to every worker unchanged.
_PASSED = ("data_path", "batch_size", "eval_batch_size", "embedding_size", "max_len", "learning_rate", "warmup",
           "eval_batches", "auc_epochs", "threads", "device", "seed", "profile_batches", "profile_top", "block")


def worker_argv(args, batches: int, auc_epochs: int) -> list[str]:
    argv = []
    for name in _PASSED:
        value = auc_epochs if name == "auc_epochs" else getattr(args, name)
        argv += [f"--{name.replace('_', '-') if name != 'data_path' else name}", str(value)]
    argv += ["--batches", str(batches)]
    if args.full_epoch:
        argv.append("--full-epoch")
    if args.interleave_loaders:
        argv.append("--interleave-loaders")
    if args.config_dict:
        argv += ["--config_dict", *args.config_dict]
    return argv


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1.")
    args.overrides = common.parse_overrides(args.config_dict)
    if args.worker:
        args.checkpoint_dir = tempfile.mkdtemp(prefix="iacn-perf-")
        try:
            result = measure(args.worker, args.worker_dataset, args)
        finally:
            shutil.rmtree(args.checkpoint_dir, ignore_errors=True)
        with open(args.worker_out, "w", encoding="utf-8") as f:
            json.dump(result, f)
        return result
    import torch

    torch.set_num_threads(args.threads)
    device = common.resolve_device(args.device)
    common.ensure_dataset(args.dataset, args.data_path)
    out = Path(args.out) if args.out else common.default_out_dir("performance") / "performance"
    out.mkdir(parents=True, exist_ok=True)
    args.workdir = tempfile.mkdtemp(prefix="iacn-perf-run-")  # RecBole writes log/ into the cwd
    command = common.command_line(None if argv is None else [sys.argv[0], *argv])
    info = common.machine_info(device)
    results, synthetic, convergence = {}, {}, []
    rounds: list[dict] = []  # with --repeats: each round's {model: row}; results holds their medians

    def write_results():
        """(Re)write the tables: after every row, so that a run cut short keeps what it measured."""
        header = common.header_lines(command, info)
        if len(rounds) > 1 or args.repeats > 1:
            rows = [{**csv_fields(r), "part": args.dataset, "round": i}
                    for i, measured in enumerate(rounds, 1) for r in measured.values()]
            rows += [{**csv_fields(r), "part": args.dataset, "round": "median"} for r in results.values()]
        else:
            rows = [{**csv_fields(r), "part": args.dataset} for r in results.values()]
        rows += [{**csv_fields(r), "part": "synthetic"} for r in synthetic.values()]
        csv_path = common.write_csv(out / "performance.csv", rows, header)
        text = results_markdown(results, args.baseline, synthetic, args, command, info)
        if convergence:
            from benchmarks import reproduce

            reproduce.write_rows(out / "convergence.csv", convergence, header)
            text += "\n" + reproduce.hosts_markdown(convergence, args.convergence_models, [args.dataset])
        md_path = common.write_text(out / "performance.md", text)
        return text, md_path, csv_path

    try:
        for _ in range(args.repeats):
            rounds.append({})
            for model in args.models:
                for row in run_worker(model, args.dataset, args, worker_argv(args, args.batches, args.auc_epochs)):
                    rounds[-1][row["model"]] = row
                    _progress(row["model"], args.dataset, row)
                results.clear()
                results.update(median_rows(rounds))
                write_results()
        if args.synthetic_scale > 0:
            name = synthetic_dataset(args.data_path, args.synthetic_scale)
            for model in args.synthetic_models:
                for row in run_worker(model, name, args, worker_argv(args, args.synthetic_batches, 0)):
                    synthetic[row["model"]] = row
                    _progress(row["model"], name, row)
                write_results()
        if args.convergence_seeds > 0:
            run_convergence(args, device, convergence, write_results)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
    text, md_path, csv_path = write_results()
    print(text)
    return {"markdown": md_path, "csv": csv_path, "results": results, "synthetic": synthetic}


def run_convergence(args, device: str, rows: list, on_row) -> list[dict]:
    """Our hosts and RecBole's classes on the same CTR rows, early-stopped (``reproduce.py --table hosts``):
    the AUC-at-convergence and time-to-best-epoch pair, in this run, beside the throughput ratios. ``rows``
    is filled as runs finish, and ``on_row()`` called after each (to rewrite the tables)."""
    from benchmarks import reproduce

    seeds = [reproduce.FIRST_SEED + i for i in range(args.convergence_seeds)]
    runs = reproduce.plan(("hosts",), args.convergence_models, [args.dataset], seeds)
    base_config = {**common.QUIET, **common.device_config(device), "data_path": args.data_path,
                   "epochs": reproduce.DEFAULT_MAX_EPOCHS, "stopping_step": args.convergence_stopping_step,
                   "train_batch_size": args.batch_size, "eval_batch_size": args.eval_batch_size,
                   "embedding_size": args.embedding_size, "MAX_ITEM_LIST_LENGTH": args.max_len,
                   "learning_rate": args.learning_rate, **args.overrides}

    def keep(done):
        rows[:] = done
        on_row()

    reproduce.run_all(runs, base_config, on_row=keep, log=lambda m: print(m, flush=True))
    return rows


def _progress(model: str, dataset: str, r: dict) -> None:
    status = r["error"] or (f"train {r['train_samples_per_s']:,.0f}/s, eval {r['eval_samples_per_s']:,.0f}/s, "
                            f"peak RSS {r['peak_rss_mb']:,.0f} MB")
    print(f"{model} on {dataset}: {status}", flush=True)


if __name__ == "__main__":
    main()
