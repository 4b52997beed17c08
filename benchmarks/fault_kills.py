"""The kills of benchmarks/fault_injection.py: a small raw dataset, each kind of process it starts (a training
run, a study, a run through the Python API, ``python -m recbole_iacn.data``, ``python -m recbole_iacn.explain``, a
``--nproc=2`` run), one kill of it at a chosen moment and signal, and the checks run after every kill (every
checkpoint on disk loads, every dataset folder matches its build.json, no staging folder is left, a SIGINT ends
with exit 130 and one line).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402

DATASET = "faults"
QUIET_RUN = ["--show_progress=false", "--embedding_size=8", "--iacn_embedding_size=8", "--MAX_ITEM_LIST_LENGTH=10",
             "--train_batch_size=256", "--eval_batch_size=2048", "--reproducibility=false"]
SPACE = "search: grid\nscheduler: fifo\nmax_concurrent_trials: 1\nparams:\n  iacn_delta: {grid_search: [0.1, 0.5, 0.9]}\n"
#: the hidden folders a build of the CTR view (ctr/) makes beside it (recbole_iacn.data.staging): while
#: building, the earlier view set aside during the swap, and the staging folders of earlier versions
VIEW_STAGING = (".ctr.building-", ".ctr.old-", ".ctr.replaced-", ".ctr-")
ATTEMPTS = 4  # tries per kill when the process ends before the signal is sent
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGINT": signal.SIGINT}



# ------------------------------------------------------------------------------ data
def make_raw_dataset(root: Path, name: str = DATASET, users: int = 150, per_user: int = 20, items: int = 120,
                     seed: int = 0) -> Path:
    """A raw RecBole atomic dataset (user, item, timestamp + item categories): runs build its CTR view."""
    rng = random.Random(seed)
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(users):
        favourite = rng.randrange(6)
        for t in range(per_user):
            item = rng.randrange(items) if rng.random() < 0.4 else favourite * 20 + rng.randrange(20)
            lines.append(f"u{u}\ti{item % items}\t{t}")
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    item_lines = ["item_id:token\tcate_id:token"] + [f"i{i}\tc{i // 20}" for i in range(items)]
    (folder / f"{name}.item").write_text("\n".join(item_lines) + "\n", encoding="utf-8")
    return folder


# ------------------------------------------------------------------------------ checks
def check_folder(folder, data_root) -> list:
    """Problems on disk: a checkpoint under ``folder`` that does not load, a dataset under ``data_root``
    that does not match its build.json."""
    from recbole_iacn.data.prepare import verify_build
    from recbole_iacn.errors import UserError
    from recbole_iacn.quick_start import load_model

    problems = []
    for path in sorted(Path(folder).rglob("*.pth")) if Path(folder).exists() else []:
        try:
            load_model(path)
        except UserError as exc:
            problems.append(f"checkpoint {path}: {exc}")
    for info in sorted(Path(data_root).rglob("*.build.json")):
        if any(part.startswith(VIEW_STAGING) for part in info.parts):
            continue  # a staging (or set-aside) folder of a killed build: never read, handled by the next run
        name = info.name[: -len(".build.json")]
        problems += [f"dataset {info.parent}: {p}" for p in verify_build(info.parent, name)]
    return problems


def staging_folders(data_root) -> list:
    return sorted(str(p) for p in Path(data_root).rglob(".ctr*") if p.is_dir() and p.name.startswith(VIEW_STAGING))


# ------------------------------------------------------------------------------ one kill
def child_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(REPO))
    return env


def train_command(root, dataset, saved, epochs=40, model="DIN") -> list:
    return [sys.executable, str(REPO / "run_recbole_iacn.py"), f"--model={model}", f"--dataset={dataset}",
            f"--data_path={root}", f"--checkpoint_dir={saved}", f"--epochs={epochs}", "--stopping_step=1000",
            "--state=INFO", *QUIET_RUN]


def _wait_for_checkpoint(process, saved: Path, started: float, timeout: float) -> bool:
    while time.time() - started < timeout and process.poll() is None:
        if any(p.stat().st_mtime >= started for p in saved.glob("*.pth")):
            return True
        time.sleep(0.05)
    return False


def _start(command, cwd):
    """The command in a new session, output captured, with Ctrl-C (SIGINT) at its default action: a shell
    starts background jobs with SIGINT ignored, and a Python started so would never see the Ctrl-C sent."""
    return subprocess.Popen(command, cwd=cwd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal(process, sig) -> tuple:
    """Send ``sig`` to the process (and, for SIGKILL, its group); ``(killed, returncode)``."""
    if process.poll() is not None:
        return False, process.returncode
    if sig == signal.SIGKILL:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.send_signal(sig)
    try:
        code = process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        code = process.wait()
    return True, code


def _cleanup_group(process) -> None:
    """Kill what remains of the process group this script started (e.g. Ray's workers after a kill -9)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_training_once(root, dataset, saved, sig, delay: float, seed: int = 0, timeout: float = 300,
                       after_checkpoint: bool = True, epochs: int = 10_000) -> dict:
    """Start a training run, wait for its first checkpoint (``after_checkpoint``) or not, wait ``delay``
    seconds, send ``sig``; return what happened and the problems found on disk afterwards.

    ``epochs`` is far more than the signal can take to arrive: a run that finished before it (as a tiny
    dataset's 40 epochs did on a loaded machine) would exit 0 and read as a swallowed Ctrl-C."""
    saved = Path(saved)
    saved.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as cwd:
        started = time.time()
        process = _start(train_command(root, dataset, saved, epochs), cwd)
        waited = _wait_for_checkpoint(process, saved, started, timeout) if after_checkpoint else True
        time.sleep(delay)
        killed, code = _signal(process, sig) if waited or process.poll() is None else (False, process.poll())
        out, err = process.communicate()
        _cleanup_group(process)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    outcome = {
        "kind": "train", "signal": sig.name, "delay_s": round(delay, 2), "after_checkpoint": after_checkpoint,
        "seconds": round(time.time() - started, 1), "killed": killed, "returncode": code,
        "last_line": (lines[-1] if lines else "")[:160], "checkpoints": len(list(saved.glob("*.pth"))),
        "staging": len(staging_folders(root)), "problems": check_folder(saved, root),
    }
    if sig == signal.SIGINT and killed and code != 130:
        outcome["problems"].append(f"SIGINT ended with exit {code}, not 130 ({outcome['last_line']})")
    if sig == signal.SIGINT and killed and code == 130 and not outcome["last_line"].startswith("interrupted"):
        outcome["problems"].append(f"SIGINT's last line is {outcome['last_line']!r}")
    if "Traceback" in err and not (sig == signal.SIGKILL):
        outcome["problems"].append("a traceback was printed")
    return outcome


def study_command(root, dataset, storage, space_file, epochs=5) -> list:
    return [sys.executable, str(REPO / "run_recbole_iacn.py"), "--model=DIN_IaCN", f"--dataset={dataset}",
            f"--data_path={root}", f"--tune={space_file}", f"--tune_storage={storage}", "--tune_name=faults",
            "--tune_verbose=0", "--tune_cpus_per_trial=1", f"--epochs={epochs}", "--state=WARNING", *QUIET_RUN]


def kill_study_once(root, dataset, storage, space_file, sig, delay: float, timeout: float = 600) -> dict:
    """Start (or resume) the study, send ``sig`` after ``delay`` seconds, check the disk."""
    with tempfile.TemporaryDirectory() as cwd:
        started = time.time()
        process = _start(study_command(root, dataset, storage, space_file), cwd)
        try:
            process.wait(timeout=delay)
            killed, code = False, process.returncode
        except subprocess.TimeoutExpired:
            killed, code = _signal(process, sig)
        out, err = process.communicate()
        _cleanup_group(process)
    lines = [line for line in (out + "\n" + err).strip().splitlines() if line.strip()]
    outcome = {
        "kind": "study", "signal": sig.name, "delay_s": round(delay, 2), "after_checkpoint": False,
        "seconds": round(time.time() - started, 1), "killed": killed, "returncode": code,
        "last_line": next((l for l in reversed(lines) if l.startswith(("interrupted", "error", "study:"))), "")[:160],
        "checkpoints": len(list(Path(storage).rglob("*.pth"))), "staging": len(staging_folders(root)),
        "problems": check_folder(storage, root),
    }
    if sig == signal.SIGINT and killed and code != 130:  # as every other command: 130 and one line
        outcome["problems"].append(f"an interrupted study exited {code}, not 130")
    return outcome


# ------------------------------------------------------------------------------ other entry points (issue 31)
TOKEN_ENV = "RECBOLE_IACN_FAULT_TOKEN"


def api_command(root, dataset, saved, model="DIN") -> list:
    """Training through the Python API (``run``), not the command line."""
    settings = {"data_path": str(root), "checkpoint_dir": str(saved), "epochs": 10_000, "stopping_step": 1000,
                "show_progress": False, "embedding_size": 8, "iacn_embedding_size": 8, "MAX_ITEM_LIST_LENGTH": 10,
                "train_batch_size": 256, "eval_batch_size": 2048, "state": "INFO"}
    code = (f"from recbole_iacn.quick_start import run, load_model; r = run({model!r}, {dataset!r}, "
            f"config_dict={settings!r}); print(load_model(r['model_file']).predict([{{'user_id': 'u1', "
            "'item_id': 'i1', 'item_id_list': 'i2 i3', 'cate_id_list': 'c0 c0'}]))")
    return [sys.executable, "-c", code]


def convert_command(root, dataset, out) -> list:
    return [sys.executable, "-m", "recbole_iacn.data", "recbole", "--source-dir", str(Path(root) / dataset),
            "--source-name", dataset, "--out", str(out), "--name", "converted", "--max-history", "10"]


def explain_command(model_file, out) -> list:
    return [sys.executable, "-m", "recbole_iacn.explain", "--model-file", str(model_file), "--users", "u1", "u2",
            "u3", "--candidate", "i5", "--out", str(out), "--no-plots"]


def kill_once(kind: str, command, sig, delay: float, checks, token: str = "", timeout: float = 300) -> dict:
    """Start ``command``, send ``sig`` after ``delay`` seconds, then run ``checks(outcome, err)`` (which
    fills ``outcome["problems"]``). A SIGINT must end with exit 130, one line starting with
    'interrupted' and no traceback; no process of the run may be left (``token``)."""
    from recbole_iacn.distributed.processes import processes_with_env

    with tempfile.TemporaryDirectory() as cwd:
        started = time.time()
        env_token = {TOKEN_ENV: token} if token else {}
        process = subprocess.Popen(command, cwd=cwd, env={**child_env(), **env_token}, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True,
                                   preexec_fn=_default_sigint)
        try:
            process.wait(timeout=delay)
            killed, code = False, process.returncode
        except subprocess.TimeoutExpired:
            if token and sig == signal.SIGKILL:  # the launcher alone: its ranks must die with it
                process.kill()
                killed, code = True, process.wait()
            else:
                killed, code = _signal(process, sig)
        out, err = process.communicate()
        time.sleep(2.0 if token else 0)  # ranks notice their launcher's death (PR_SET_PDEATHSIG) at once
        left = processes_with_env(TOKEN_ENV, token) if token else []
        _cleanup_group(process)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    outcome = {"kind": kind, "signal": sig.name, "delay_s": round(delay, 2), "after_checkpoint": False,
               "seconds": round(time.time() - started, 1), "killed": killed, "returncode": code,
               "last_line": (lines[-1] if lines else "")[:160], "checkpoints": 0, "staging": 0, "problems": []}
    if left:
        outcome["problems"].append(f"{len(left)} process(es) of the run left running")
    if sig == signal.SIGINT and killed and kind != "api":  # the Python API raises KeyboardInterrupt, as it should
        if code != 130:
            outcome["problems"].append(f"SIGINT ended with exit {code}, not 130 ({outcome['last_line']})")
        elif not outcome["last_line"].startswith("interrupted"):
            outcome["problems"].append(f"SIGINT's last line is {outcome['last_line']!r}")
        if "Traceback" in err:
            outcome["problems"].append("a traceback was printed")
    if not killed and code != 0:
        outcome["problems"].append(f"ended by itself with exit {code}: {outcome['last_line']}")
    checks(outcome, err)
    return outcome


def _check_saved(root, saved):
    def check(outcome, err):
        outcome["checkpoints"] = len(list(Path(saved).glob("*.pth")))
        outcome["staging"] = len(staging_folders(root))
        outcome["problems"] += check_folder(saved, root)
        partials = [p.name for p in Path(saved).glob(".*.partial")]
        if len(partials) > 1:  # the killed write's own may remain until the next run removes it
            outcome["problems"].append(f"{len(partials)} .partial files in {saved}")
    return check


def _check_converted(out):
    def check(outcome, err):
        kinds = (".converted.building-", ".converted.old-", ".converted.replaced-")
        building = sorted(p.name for p in Path(out).glob(".converted.*") if p.name.startswith(kinds)) \
            if Path(out).exists() else []
        outcome["staging"] = len(building)
        if len(building) > 1:  # the killed build's own is removed by the next build
            outcome["problems"].append(f"staging folders of earlier builds left: {building}")
        outcome["problems"] += check_folder(Path(out) / "none", out)
    return check


def _check_explained(out):
    def check(outcome, err):
        path = Path(out) / "explanations.json"
        if path.exists():
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                outcome["problems"].append(f"{path} is not valid JSON: {exc}")
    return check


def kill_with_retries(kill, delay: float, number: int, missed=None) -> list:
    """Kill number ``number``: ``kill(delay, attempt)`` starts a process, signals it after ``delay`` seconds and
    returns the outcome. A process that ended before the signal does not count (``missed()``, if given, is
    called then): it is tried again, sooner (half the delay), at most ``ATTEMPTS`` times. Each outcome is
    numbered, printed and returned."""
    outcomes = []
    for attempt in range(ATTEMPTS):
        outcome = kill(delay, attempt)
        outcome.update(number=number + 1, attempt=attempt + 1)
        outcomes.append(outcome)
        print(json.dumps(outcome), flush=True)
        if outcome["killed"]:
            break
        if missed is not None:
            missed()
        delay /= 2
    return outcomes


def run_entry_points(args, rng, work: Path, root: Path) -> list:
    """Kills of the Python API, the converter, explain, dataset reads and multi-process runs."""
    outcomes = []
    saved_api, converted, explained = work / "saved-api", work / "converted", work / "explained"
    subprocess.run(train_command(root, DATASET, work / "saved-iacn", epochs=1, model="DIN_IaCN"), cwd=work,
                   env=child_env(), capture_output=True, text=True, check=True)
    model_file = next((work / "saved-iacn").glob("*.pth"))
    plans = [
        ("api", args.api_kills, lambda: api_command(root, DATASET, saved_api), (1.0, args.horizon),
         lambda: _check_saved(root, saved_api), ""),
        ("convert", args.convert_kills, lambda: convert_command(root, DATASET, converted), (0.3, 3.0),
         lambda: _check_converted(converted), ""),
        ("explain", args.explain_kills, lambda: explain_command(model_file, explained), (0.3, 4.0),
         lambda: _check_explained(explained), ""),
        ("read", args.read_kills, lambda: train_command(root, DATASET, work / "saved-read", epochs=10_000),
         (1.0, 5.0), lambda: _check_saved(root, work / "saved-read"), ""),
        ("nproc2", args.ddp_kills,
         lambda: [*train_command(root, DATASET, work / "saved-ddp", epochs=10_000), "--nproc=2", "--use_gpu=false"],
         (2.0, args.horizon + 8), lambda: _check_saved(root, work / "saved-ddp"), "ddp"),
    ]
    for kind, count, command, window, checks, token in plans:
        for number in range(count):
            sig = SIGNALS["SIGKILL"] if number % 2 == 0 else SIGNALS["SIGINT"]

            def kill(delay, attempt, kind=kind, command=command, checks=checks, token=token, sig=sig, number=number):
                return kill_once(kind, command(), sig, delay, checks(), token=f"{token}{number}-{attempt}" if token else "")

            outcomes += kill_with_retries(kill, rng.uniform(*window), number)
    return outcomes
