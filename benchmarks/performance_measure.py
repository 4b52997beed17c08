"""What one ``performance.py`` worker measures, in its own process: the model and the optimizer its trainer
builds, then training and evaluation batches timed (wall and CPU seconds; with ``--interleave-loaders`` through
both data loaders in alternating blocks), an optional ``torch.profiler`` of training steps, the peak RSS, and the
test AUC after ``--auc-epochs``. A row is named by its model spec, ``name`` or ``name:key=value,...``.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from typing import Optional

from benchmarks import common

# ------------------------------------------------------------------------------ model specs
#: ``X:<LOADER_KEY>=<value>`` rows: the same model through each data loader, compared pairwise.
LOADER_KEY = "data_loader"
LOADERS = ("recbole", "tensor")


def with_setting(model: str, key: str, value) -> str:
    """A model spec with one more setting (the row syntax).

    >>> with_setting("DIN", "data_loader", "tensor"), with_setting("DIN_IaCN:iacn_lambda=0", "data_loader", "tensor")
    ('DIN:data_loader=tensor', 'DIN_IaCN:iacn_lambda=0,data_loader=tensor')
    """
    return f"{model}{',' if ':' in model else ':'}{key}={value}"


def split_model_spec(spec: str) -> tuple[str, dict]:
    """A model spec's name and settings (values read as YAML).

    >>> split_model_spec("DIN_IaCN:iacn_lambda=0,iacn_delta=1"), split_model_spec("recbole.DIN")
    (('DIN_IaCN', {'iacn_lambda': 0, 'iacn_delta': 1}), ('recbole.DIN', {}))
    """
    name, _, settings = spec.partition(":")
    return name, common.parse_overrides(settings.split(",") if settings else [])


BYTES_PER_MB = 1024 ** 2
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
    if model.startswith("recbole.") and common.same_data_host(model) is None:
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
    from recbole_iacn.pipeline import build_model, build_trainer, close_tensorboard, prepare, run

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
    host = common.same_data_host(name)
    config = model_config(model_name, args, device)
    if args.interleave_loaders:
        config[LOADER_KEY] = "recbole"  # RecBole's loaders; the tensor loaders are built on the same splits
    prepared = prepare(host or name, dataset, config_dict=config)
    if host:
        prepared = common.on_ctr_view(prepared, host)
    load_seconds = time.perf_counter() - started
    rss_data = current_rss()
    net = build_model(prepared)
    # the optimizer and loss training uses: fused Adam for plugin models, RecBole's Adam for RecBole's models
    trainer = build_trainer(prepared, net)
    optimizer = trainer.optimizer
    loss_fn = trainer.training_loss()  # compiled with compile_loss: true
    close_tensorboard(trainer)  # only its optimizer and loss are used; its writer would stay open to the end
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
