"""Multi-process training on one machine: samples/s and test metrics for 1, 2, ... processes.

Trains a plugin model (default DIN_IaCN on ml-100k) with ``run(..., nproc=N)`` for each N in
``--nprocs``, same seed, same effective batch (``train_batch_size`` is the batch of all processes
together: each of N ranks takes ``train_batch_size / N`` rows per step), and records

* ``fit_samples_per_s``: training rows × epochs run / seconds of ``trainer.fit`` on rank 0 (training
  plus the per-epoch validation, which is gathered across ranks);
* ``wall_s``: the whole run (process start, data loading, training, test);
* test AUC and LogLoss (over all ranks' predictions), and the AUC difference to the first N.

Each process gets ``--threads`` torch threads (default 1: N processes use N cores). On CPU the ranks
talk over gloo; with ``--device cuda`` (one GPU per process, NCCL) it needs N GPUs.

    python benchmarks/distributed.py --nprocs 1 2 --epochs 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

COLUMNS = ["device", "nproc", "threads_per_process", "train_batch_size", "per_rank_batch", "epochs_run",
           "train_rows", "fit_s", "fit_samples_per_s", "wall_s", "test_auc", "test_logloss", "auc_minus_first",
           "error"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="DIN_IaCN")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-path", default=str(common.DEFAULT_DATA_PATH))
    parser.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--device", default="cpu", choices=common.DEVICE_CHOICES)
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results/<today>/distributed)")
    parser.add_argument("--config_dict", nargs="*", default=[], help="key=value overrides (YAML values)")
    return parser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(args, nproc: int, device: str, overrides: dict, scratch: Path) -> dict:
    from recbole_iacn.pipeline import run

    config = {**common.QUIET, **common.device_config(device), "seed": args.seed, "epochs": args.epochs,
              "data_path": args.data_path, "checkpoint_dir": str(scratch / f"saved-{nproc}"), **overrides}
    if device == "cuda" and nproc > 1:
        config["gpu_id"] = ",".join(str(i) for i in range(nproc))
    started = time.perf_counter()
    result = run(args.model, args.dataset, config_dict=config, nproc=nproc, ip="127.0.0.1", port=free_port())
    wall = time.perf_counter() - started
    final = result["config"]
    return {"result": result, "wall_s": wall, "batch": final["train_batch_size"]}


def main(argv: Optional[Sequence[str]] = None) -> list:
    import torch

    args = build_parser().parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # spawned ranks read it when they import torch
    torch.set_num_threads(args.threads)
    device = common.resolve_device(args.device)
    common.ensure_dataset(args.dataset, args.data_path)
    overrides = common.parse_overrides(args.config_dict)
    out = Path(args.out) if args.out else common.default_out_dir("distributed") / "distributed"
    command = common.command_line(None if argv is None else [sys.argv[0], *argv])
    info = common.machine_info(device)
    rows, train_rows = [], None
    scratch = Path(tempfile.mkdtemp(prefix="iacn-distributed-"))
    for nproc in args.nprocs:
        row = {"device": device, "nproc": nproc, "threads_per_process": args.threads}
        try:
            done = one_run(args, nproc, device, overrides, scratch)
        except Exception as exc:  # recorded, the other rows still run
            row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            print(row, flush=True)
            continue
        result = done["result"]
        if train_rows is None:
            from recbole_iacn.pipeline import prepare

            prepared = prepare(args.model, args.dataset, config_dict={
                **common.QUIET, "data_path": args.data_path, "checkpoint_dir": str(scratch / "count"), **overrides})
            train_rows = len(prepared.train_data._dataset)
        samples = train_rows * result["epochs_run"]
        row.update({
            "train_batch_size": done["batch"], "per_rank_batch": done["batch"] // nproc,
            "epochs_run": result["epochs_run"], "train_rows": train_rows, "fit_s": round(result["fit_seconds"], 2),
            "fit_samples_per_s": round(samples / result["fit_seconds"], 1), "wall_s": round(done["wall_s"], 2),
            "test_auc": result["test_result"].get("auc"), "test_logloss": result["test_result"].get("logloss"),
        })
        first = next((r for r in rows if r.get("test_auc") is not None), None)
        row["auc_minus_first"] = round(row["test_auc"] - first["test_auc"], 4) if first else 0.0
        rows.append(row)
        print(row, flush=True)
    stem = out / f"distributed-{device}"
    header = common.header_lines(command, info)
    common.write_csv(stem.with_suffix(".csv"), rows, header, COLUMNS)
    table = common.markdown_table(COLUMNS[:-1], [[r.get(c, "") for c in COLUMNS[:-1]] for r in rows])
    common.write_text(stem.with_suffix(".md"),
                      common.markdown_header(f"{args.model} on {args.dataset}: 1 vs N processes ({device})",
                                             command, info) + "\n" + table)
    print(f"wrote {stem}.csv and {stem}.md")
    shutil.rmtree(scratch, ignore_errors=True)
    return rows


if __name__ == "__main__":
    common.run_main(main)
