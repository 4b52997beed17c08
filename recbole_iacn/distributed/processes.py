"""The processes of a multi-process run: finding what a run left.

Standard library only (the launcher's tests and benchmarks import it without torch).

* :func:`processes_with_env`: the live processes whose environment holds a marker (tests and the fault
  injection find a run's processes, ranks left behind included, by a token their launcher had).
"""

from __future__ import annotations

from pathlib import Path
from typing import List


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
