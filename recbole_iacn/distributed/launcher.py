"""Start the ranks of a multi-process run (``torch.multiprocessing`` spawn, as RecBole's ``run``), wait
for them, and leave none behind.

* Settings and the configuration are checked, and the CTR view of the dataset is built, by the caller
  (:func:`recbole_iacn.pipeline.launch_ranks`) before any rank starts: a bad setting is one
  :class:`~recbole_iacn.errors.ConfigError`.
* Each rank joins the process group at its entry, then runs the one-process pipeline it is given
  (:func:`recbole_iacn.pipeline.run_one_process`), not the public entry point.
* When a rank fails, the launcher stops the others (SIGTERM, then SIGKILL) and raises
  :class:`RankFailedError` naming the rank and its error (the rank's traceback goes to stderr).
* When the launcher is stopped (Ctrl+C, SIGTERM) it stops the ranks first; when it is killed
  (SIGKILL), each rank gets SIGKILL from the kernel (Linux ``PR_SET_PDEATHSIG``, armed before the rank
  runs any Python: :func:`~recbole_iacn.distributed.processes.children_die_with_this_process`) or,
  elsewhere, exits within a second when it sees its parent gone.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from logging import getLogger
from typing import List, Optional

from recbole_iacn.distributed.processes import children_die_with_this_process, set_parent_death_signal
from recbole_iacn.distributed.settings import DistributedSettings, join_process_group, process_group
from recbole_iacn.errors import LaunchInterrupted, RankFailedError, UserError

#: Seconds a rank has to exit after SIGTERM before it gets SIGKILL.
STOP_GRACE_S = 5.0
POLL_S = 0.5


# ------------------------------------------------------------------------------ the launcher
def launch(target, model: str, dataset: str, config_file_list, config_dict: dict, saved: bool,
           settings: DistributedSettings, config) -> Optional[dict]:
    """Train on ``settings.nproc`` local processes; returns global rank 0's result (None on the
    machines without rank 0), as :func:`recbole_iacn.pipeline.run` returns it.

    ``config`` is the run's configuration, built and checked by the caller (with the CTR view prepared);
    each rank joins the process group and then calls ``target(model, dataset, config_files,
    config_dict, saved=saved)`` (a module-level function: it is pickled by name), with ``local_rank`` in
    ``config_dict``."""
    import torch.multiprocessing as mp

    rank_dict = {**config_dict, **settings.rank_config()}
    # RecBole's init_logger and Trainer make ./log/<model> and checkpoint_dir with an exists-then-makedirs
    # check: ranks starting together race on it (FileExistsError), so the folders are made once here
    os.makedirs(os.path.join("log", str(config["model"])), exist_ok=True)
    os.makedirs(config["checkpoint_dir"], exist_ok=True)
    context = mp.get_context("spawn")
    results, errors = context.SimpleQueue(), context.SimpleQueue()
    group = process_group(settings, config)
    args = (target, group, model, dataset, list(config_file_list or []), rank_dict, saved, results, errors,
            os.getpid())
    with children_die_with_this_process():  # a launcher killed while its ranks start leaves no orphan
        ranks = mp.start_processes(_rank_main, args=args, nprocs=settings.nproc, join=False, start_method="spawn")
    result = None
    try:
        with _stop_ranks_on_signal(ranks.processes):
            try:
                while not ranks.join(timeout=POLL_S, grace_period=STOP_GRACE_S):
                    result = _receive(results, result)
            except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
                raise _failure(exc, errors, settings) from None
    finally:
        stop_processes(ranks.processes)
    return _receive(results, result)


def _receive(results, current):
    """Read rank 0's result as soon as it is sent (a large one would otherwise block its pipe)."""
    return results.get() if not results.empty() else current


def stop_processes(processes: List, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every live process, SIGKILL those still alive after ``grace_s``, and reap them all."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
        process.join()


@contextmanager
def _stop_ranks_on_signal(processes):
    """While the ranks run, SIGINT/SIGTERM to the launcher stop the ranks, then raise
    :class:`LaunchInterrupted` (only in the main thread, where Python delivers signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        stop_processes(processes)
        raise LaunchInterrupted(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _failure(exc, errors, settings: DistributedSettings) -> RankFailedError:
    """One paragraph on which rank failed and how (its traceback, if any, goes to stderr)."""
    import torch.multiprocessing as mp

    reported = []
    while not errors.empty():
        reported.append(errors.get())
    # the first error raised is the cause; a rank whose peer vanished fails later in a collective
    item = min(reported, key=lambda r: r["time"]) if reported else None
    local = item["local_rank"] if item else exc.error_index
    rank = local + settings.group_offset
    stopped = f"the launcher stopped the other {settings.nproc - 1} local process(es)"
    if item is None and isinstance(exc, mp.ProcessExitedException):
        if exc.signal_name:
            how = f"signal {exc.signal_name} (killed from outside, or out of memory?)"
        else:
            how = f"exit code {exc.exit_code} before it could report an error (see its output above)"
        return RankFailedError(f"Rank {rank} of {settings.total} ended with {how}; {stopped}.")
    if item and item["user_error"]:
        return RankFailedError(f"Rank {rank} of {settings.total}: {item['message']} ({stopped}.)", item["exit_code"])
    sys.stderr.write(str(exc).strip() + "\n")
    what = f"{item['type']}: {item['message']}" if item else "an error"
    return RankFailedError(f"Rank {rank} of {settings.total} failed with {what}; {stopped}. Its traceback is "
                           "printed above.")


# ------------------------------------------------------------------------------ in each rank
def _rank_main(local_rank, target, group, model, dataset, config_files, config_dict, saved, results, errors,
               parent_pid):
    """One rank, as RecBole's ``run_recboles``: join the process group, then train with ``target`` (the
    launcher's caller's one-process pipeline); global rank 0 sends the result."""
    _exit_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the launcher, which stops the ranks
    try:
        join_process_group(group, local_rank)
        result = target(model, dataset, config_files, {**config_dict, "local_rank": local_rank}, saved=saved)
        if local_rank + int(config_dict.get("offset") or 0) == 0:
            results.put(result)
    except BaseException as exc:
        errors.put({"local_rank": local_rank, "time": time.time(), "type": type(exc).__name__, "message": str(exc),
                    "user_error": isinstance(exc, UserError), "exit_code": getattr(exc, "exit_code", 1)})
        raise
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _exit_with_parent(parent_pid: int) -> None:
    """Die with the launcher: SIGKILL from the kernel when it dies (Linux; armed already before this rank
    started, by the launcher), else a watcher thread."""
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent_pid:  # the launcher died before the line above
        os._exit(1)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-launcher", daemon=True).start()
