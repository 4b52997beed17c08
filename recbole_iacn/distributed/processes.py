"""The processes of a multi-process run: ranks that cannot outlive their launcher, and finding what a run left.

Standard library only (the launcher's tests and benchmarks import it without torch).

* :func:`children_die_with_this_process`: while it is active, every process ``multiprocessing`` spawns from
  this thread gets SIGKILL from the kernel when the launcher dies (Linux ``PR_SET_PDEATHSIG``), armed
  between ``fork`` and ``exec``, before the child runs any Python: a launcher killed while its ranks start
  (importing torch takes seconds) leaves no orphan. If the launcher died before the signal was armed, the
  child sees another parent and exits at once.
* :func:`set_parent_death_signal`: the same, from inside a process.
* :func:`processes_with_env`: the live processes whose environment holds a marker (tests and the fault
  injection find a run's processes, ranks left behind included, by a token their launcher had).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, List, Optional

PR_SET_PDEATHSIG = 1


def _prctl() -> Optional[Callable]:
    """libc's ``prctl`` (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux); False where it cannot."""
    prctl = _prctl()
    return prctl is not None and prctl(PR_SET_PDEATHSIG, int(sig)) == 0


@contextmanager
def children_die_with_this_process():
    """While active, the processes that ``multiprocessing`` spawns from this thread (start method spawn, as
    ``torch.multiprocessing.start_processes``) get SIGKILL from the kernel when this process dies.

    ``multiprocessing`` starts them with ``util.spawnv_passfds`` (fork, exec); this replaces it, for this
    thread only, by the same fork and exec through ``subprocess`` with a ``preexec_fn`` that arms
    ``PR_SET_PDEATHSIG`` and exits if the parent is already gone. The kernel sends the signal when the thread
    that started the child ends, so the ranks must be started, as here, by the thread that waits for them.
    Elsewhere than on Linux it does nothing (a rank's watcher thread sees its launcher gone instead)."""
    from multiprocessing import util

    prctl = _prctl()
    if prctl is None:
        yield
        return
    original = util.spawnv_passfds
    owner, parent, kill = threading.get_ident(), os.getpid(), int(signal.SIGKILL)

    def arm() -> None:  # in the child, between fork and exec: no import, no Python beyond these calls
        prctl(PR_SET_PDEATHSIG, kill)
        if os.getppid() != parent:  # the launcher died before the line above: nobody would send the signal
            os._exit(1)

    def spawnv_passfds(path, args, passfds):
        if threading.get_ident() != owner:
            return original(path, args, passfds)
        child = subprocess.Popen(args, executable=path, pass_fds=tuple(sorted(map(int, passfds))), close_fds=True,
                                 restore_signals=False, preexec_fn=arm)
        child.returncode = 0  # multiprocessing waits for the child itself (os.waitpid); this object must not
        return child.pid

    util.spawnv_passfds = spawnv_passfds
    try:
        yield
    finally:
        util.spawnv_passfds = original


def processes_with_env(name: str, value: str) -> List[int]:
    """Pids of the live processes (zombies left out) whose environment holds ``name=value`` (Linux /proc;
    processes of other users, whose environment cannot be read, are left out)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found
