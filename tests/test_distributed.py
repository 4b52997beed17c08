"""Multi-process training (``--nproc``, DDP over gloo on CPU) and exact metrics across processes.

Two CPU processes on a tiny synthetic dataset; run alone: ``python -m pytest -q tests/test_distributed.py``.
Every test that starts processes checks that none is left behind (processes are found by a token in
their environment, which spawned ranks inherit). NCCL (GPU) paths cannot run here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from recbole_iacn.distributed.processes import processes_with_env
from recbole_iacn.errors import ConfigError

from tests.conftest import SYN_DATASET as DATASET, SYN_MODEL as MODEL, SYN_TINY

REPO_ROOT = Path(__file__).resolve().parents[1]
#: metric_decimal_place 10 so metrics compare to float tolerance, not to 4 decimals.
TINY = {**SYN_TINY, "eval_batch_size": 64, "reproducibility": True, "metric_decimal_place": 10}
TOKEN_ENV = "RECBOLE_IACN_TEST_PROCESS_TOKEN"
#: Holds the sitecustomize.py that makes the rank named by RECBOLE_IACN_TEST_FAIL_RANK fail mid-epoch.
RANK_FAULT = Path(__file__).resolve().parent / "fixtures" / "rank_fault"


@pytest.fixture(scope="module")
def syn_root(tmp_path_factory) -> str:
    """A tiny SYNTHETIC CTR dataset whose test split has an odd number of rows, so that two ranks'
    shards are padded by DistributedSampler (one row repeated) and the gathering must drop it."""
    from recbole_iacn.data import build_synthetic

    root = tmp_path_factory.mktemp("ddp-data")
    build_synthetic(root / DATASET, name=DATASET, scale=0.002, max_history=10)
    test_file = root / DATASET / f"{DATASET}.test.inter"
    lines = test_file.read_text(encoding="utf-8").splitlines(keepends=True)
    if (len(lines) - 1) % 2 == 0:  # header + rows
        test_file.write_text("".join(lines[:-1]), encoding="utf-8")
        # edited on purpose: without its build.json the dataset is read as it is, not refused as changed
        (root / DATASET / f"{DATASET}.build.json").unlink()
    return str(root)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_with_token(token: str) -> list:
    """Pids of live processes whose environment holds ``TOKEN_ENV=token`` (Linux /proc)."""
    return processes_with_env(TOKEN_ENV, token)


def stop_everything(launcher, token: str) -> None:
    """Kill ``launcher`` and every process holding ``token``: never leave anything behind, even when failing."""
    if launcher.poll() is None:
        launcher.kill()
        launcher.wait(10)
    for pid in processes_with_token(token):
        os.kill(pid, signal.SIGKILL)


def wait_until(predicate, timeout_s: float, step_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def cli_command(syn_root: str, port: int, **overrides) -> list:
    args = {**TINY, "data_path": syn_root, "nproc": 2, "port": port, "ip": "127.0.0.1", **overrides}
    return [sys.executable, str(REPO_ROOT / "run_recbole_iacn.py"), f"--model={MODEL}", f"--dataset={DATASET}",
            *[f"--{k}={v}" for k, v in args.items()]]


def cli_env(token: str, **extra) -> dict:
    env = {**os.environ, TOKEN_ENV: token, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), **extra}
    return env


needs_proc = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")


# ------------------------------------------------------------------------------ training
def test_two_processes_train_like_one_and_gather_exact_metrics(tmp_path, syn_root):
    """DIN_IaCN with 2 gloo processes (per-rank batch 128) against 1 process (batch 256); then the
    2-process run's checkpoint evaluated in one process gives the same AUC and LogLoss as the
    2-process (gathered) test evaluation of the same weights."""
    from recbole_iacn.pipeline import prepare
    from recbole_iacn.quick_start import run
    from recbole_iacn.trainer import trainer_class

    two_dir, one_dir = tmp_path / "two", tmp_path / "one"
    two = run(MODEL, DATASET, config_dict={**TINY, "data_path": syn_root, "checkpoint_dir": str(two_dir)},
              nproc=2, ip="127.0.0.1", port=free_port())
    assert [p.name for p in two_dir.iterdir()] == [Path(two["model_file"]).name]  # written once, by rank 0
    assert two["config"]["world_size"] == 2 and two["config"]["single_spec"] is False

    one = run(MODEL, DATASET, config_dict={**TINY, "data_path": syn_root, "checkpoint_dir": str(one_dir)})
    assert abs(two["test_result"]["auc"] - one["test_result"]["auc"]) < 0.01

    prepared = prepare(MODEL, DATASET, config_dict={**TINY, "data_path": syn_root, "checkpoint_dir": str(one_dir)})
    assert len(prepared.test_data._dataset) % 2 == 1  # the shards were padded
    trainer = trainer_class(prepared.config, True)(prepared.config, prepared.model_class(
        prepared.config, prepared.train_data._dataset))
    same_weights = trainer.evaluate(prepared.test_data, load_best_model=True, model_file=two["model_file"])
    assert same_weights["auc"] == pytest.approx(two["test_result"]["auc"], abs=1e-9)
    assert same_weights["logloss"] == pytest.approx(two["test_result"]["logloss"], abs=1e-6)


# ------------------------------------------------------------------------------ failures
@needs_proc
def test_a_failing_rank_stops_the_run_and_leaves_no_process(tmp_path, syn_root):
    """Rank 1 raises mid-epoch (tests/fixtures/rank_fault/sitecustomize.py, on the processes' PYTHONPATH):
    the launcher exits non-zero, names the rank and the error, and neither rank is left running. λ = 0 also
    checks that the unused IaCN parameters do not upset DDP in the first step."""
    token = uuid.uuid4().hex
    command = cli_command(syn_root, free_port(), iacn_lambda=0.0, checkpoint_dir=tmp_path / "saved")
    env = cli_env(token, RECBOLE_IACN_TEST_FAIL_RANK="1",
                  PYTHONPATH=os.pathsep.join([str(RANK_FAULT), str(REPO_ROOT)]))
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Rank 1 of 2 failed with RuntimeError: fault injected"), done.stderr[-3000:]
    assert "stopped the other 1 local process(es)" in last
    assert wait_until(lambda: not processes_with_token(token), 10), processes_with_token(token)


@needs_proc
def test_a_killed_launcher_takes_its_ranks_with_it(tmp_path, syn_root):
    """SIGKILL to the launcher while its ranks train (after rank 0 saved its first checkpoint, in the
    next epoch): the kernel stops the ranks (PR_SET_PDEATHSIG)."""
    token = uuid.uuid4().hex
    saved = tmp_path / "saved"
    command = cli_command(syn_root, free_port(), epochs=50, checkpoint_dir=saved)
    launcher = subprocess.Popen(command, cwd=tmp_path, env=cli_env(token), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    try:
        training = wait_until(lambda: any(saved.glob("*.pth")) or launcher.poll() is not None, 120)
        assert training and launcher.poll() is None, f"the ranks did not train: {launcher.stderr.read()[-2000:]}"
        assert len(processes_with_token(token)) >= 3  # launcher, 2 ranks (and multiprocessing's resource tracker)
        time.sleep(0.5)
        launcher.kill()
        launcher.wait(10)
        assert wait_until(lambda: not processes_with_token(token), 15), processes_with_token(token)
    finally:
        stop_everything(launcher, token)


def test_port_in_use_is_a_clear_error(tmp_path, syn_root, capsys):
    from recbole_iacn.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = [f"--model={MODEL}", f"--dataset={DATASET}", f"--data_path={syn_root}", "--nproc=2",
                "--ip=127.0.0.1", f"--port={port}", *[f"--{k}={v}" for k, v in TINY.items()]]
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: Port {port} on 127.0.0.1 is already in use" in err and "--port=N" in err


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    import torch

    from recbole_iacn.distributed.settings import DistributedSettings, check_gpus

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    values = {"gpu_id": "0,1", "use_gpu": True}
    check_gpus(DistributedSettings(nproc=2), values)
    with pytest.raises(ConfigError, match=r"--nproc=4 starts 4 processes on GPUs.*only 2 GPU\(s\).*--gpu_id='0,1,2,3'"):
        check_gpus(DistributedSettings(nproc=4), values)
    check_gpus(DistributedSettings(nproc=4), {**values, "use_gpu": False})  # CPU processes: no limit


@pytest.mark.parametrize("settings, message", [
    ({"nproc": 0}, r"nproc=0 \(--nproc\) is not valid: nproc expects an integer >= 1"),
    ({"port": 70000}, r"port=70000 \(--port\) is not valid: port expects an integer in \[1, 65535\]"),
    ({"nproc": 2, "world_size": 3, "group_offset": 2}, r"needs ranks up to 3, but --world_size=3 has ranks 0 to 2"),
    ({"world_size": 0}, r"--world_size=0 is not valid"),
])
def test_bad_settings_are_config_errors(settings, message):
    from recbole_iacn.distributed import pop_settings

    with pytest.raises(ConfigError, match=message):
        pop_settings(settings)


def test_settings_come_from_arguments_or_overrides():
    from recbole_iacn.distributed import pop_settings

    settings, rest = pop_settings({"nproc": 2, "port": "6000", "epochs": 1}, ip="10.0.0.1")
    assert (settings.nproc, settings.port, settings.ip, settings.total, settings.enabled) == (2, 6000, "10.0.0.1", 2, True)
    assert rest == {"epochs": 1}
    assert settings.rank_config() == {"nproc": 2, "world_size": 2, "ip": "10.0.0.1", "port": 6000, "offset": 0}
    assert not pop_settings({})[0].enabled
    assert pop_settings({"world_size": 2, "group_offset": 1})[0].enabled  # one process per machine


def test_a_study_refuses_multi_process_trials_before_starting_ray(tmp_path):
    from recbole_iacn.tune import run_study

    space = tmp_path / "s.yaml"
    space.write_text("params: {iacn_delta: {grid_search: [0.1, 0.9]}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"--nproc=2 .* in a study each trial trains in one process"):
        run_study(MODEL, DATASET, str(space), overrides={"nproc": 2})


# ------------------------------------------------------------------------------ gathering
def test_first_occurrences_drop_padding_and_restore_order():
    import torch

    from recbole_iacn.distributed.gather import first_occurrences

    # rank 0 saw positions 0, 2, 4; rank 1 saw 1, 3 and the padding repeat of 0
    positions = torch.tensor([0, 2, 4, 1, 3, 0])
    keep = first_occurrences(positions)
    assert positions[keep].tolist() == [0, 1, 2, 3, 4]
    assert keep.tolist() == [0, 3, 1, 4, 2]


def _gather_uneven(rank, port, out_dir):
    import torch
    import torch.distributed as dist

    from recbole_iacn.distributed.gather import all_gather_rows

    dist.init_process_group("gloo", rank=rank, world_size=2, init_method=f"tcp://127.0.0.1:{port}")
    try:
        mine = torch.arange(3 if rank == 0 else 1, dtype=torch.float).unsqueeze(1) + 10 * rank  # [3, 1] / [1, 1]
        parts = all_gather_rows(mine)
        torch.save([p.tolist() for p in parts], os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_all_gather_rows_handles_uneven_shards(tmp_path):
    import torch
    import torch.multiprocessing as mp

    mp.start_processes(_gather_uneven, args=(free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    for rank in (0, 1):
        assert torch.load(tmp_path / f"rank{rank}.pt") == [[[0.0], [1.0], [2.0]], [[10.0]]]
