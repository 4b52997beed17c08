"""Fault injection: kill training runs and studies at random points, then check that nothing on disk is
half-written.

After every kill, every checkpoint on disk (``*.pth``: the runs' ``checkpoint_dir`` and the studies'
trial checkpoints) must load with :func:`recbole_iacn.quick_start.load_model`, and every dataset folder
with a ``build.json`` must match it (:func:`recbole_iacn.data.prepare.verify_build`). Training runs build
the CTR view of a raw dataset on first use, so kills also land in the middle of a dataset build. At the
end one run (and one study) goes through to completion: it must succeed and leave no staging folder.

    python benchmarks/fault_injection.py --train-kills 10 --study-kills 2 \\
        --out benchmarks/results/2026-11-30/fault-injection

``--api-kills``, ``--convert-kills``, ``--explain-kills``, ``--read-kills`` and ``--ddp-kills`` kill the other
entry points too: training and ``predict()`` through the Python API, ``python -m recbole_iacn.data``,
``python -m recbole_iacn.explain``, runs early while the cached dataset is read, and ``--nproc=2`` runs
(SIGKILL to the launcher alone; no rank may be left).

Too slow for CI (each kill starts a Python process that imports torch and RecBole);
``tests/test_faults.py::test_kill_9_and_ctrl_c_leave_loadable_checkpoints`` runs two kills.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402
from benchmarks.fault_kills import (  # noqa: E402
    DATASET,
    SIGNALS,
    SPACE,
    check_folder,
    child_env,
    kill_study_once,
    kill_training_once,
    kill_with_retries,
    make_raw_dataset,
    run_entry_points,
    staging_folders,
    study_command,
    train_command,
)


# ------------------------------------------------------------------------------ the benchmark
def run(args) -> dict:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="fault-injection-"))
    root = work / "data"
    make_raw_dataset(root)
    saved = work / "saved"
    outcomes = []
    for number in range(args.train_kills):
        sig = SIGNALS["SIGKILL"] if number % 2 == 0 else SIGNALS["SIGINT"]
        after = number % 3 != 0  # a third of the kills land anywhere (start-up, dataset build), the rest in training

        def kill_training(delay, attempt, sig=sig, after=after, number=number):
            if not after:
                shutil.rmtree(root / DATASET / "ctr", ignore_errors=True)  # the run builds the CTR view again
            return kill_training_once(root, DATASET, saved, sig, delay, seed=number, after_checkpoint=after)

        outcomes += kill_with_retries(kill_training, rng.uniform(0, args.horizon if not after else 3.0), number)
    space_file = work / "space.yaml"
    space_file.write_text(SPACE, encoding="utf-8")
    storage = work / "studies"
    for number in range(args.study_kills):
        sig = SIGNALS["SIGINT"] if number % 2 == 0 else SIGNALS["SIGKILL"]

        def kill_study(delay, attempt, sig=sig, number=number):
            if attempt == 0 and number == 0:
                shutil.rmtree(storage, ignore_errors=True)
            return kill_study_once(root, DATASET, storage, space_file, sig, delay)

        def start_afresh():  # the study finished before the signal: start it afresh and kill it sooner
            shutil.rmtree(storage, ignore_errors=True)

        outcomes += kill_with_retries(kill_study, rng.uniform(args.study_min, args.study_max), number, start_afresh)
    outcomes += run_entry_points(args, rng, work, root)
    final = finish(root, saved, storage, space_file, args.study_kills > 0)
    return {"work": str(work), "outcomes": outcomes, "final": final}


def finish(root, saved, storage, space_file, with_study: bool) -> dict:
    """One training run (and the study, resumed) to completion after the kills."""
    with tempfile.TemporaryDirectory() as cwd:
        train = subprocess.run(train_command(root, DATASET, saved, epochs=2), cwd=cwd, env=child_env(),
                               capture_output=True, text=True)
        study = None
        if with_study:
            study = subprocess.run(study_command(root, DATASET, storage, space_file), cwd=cwd, env=child_env(),
                                   capture_output=True, text=True)
    result = {"train_returncode": train.returncode,
              "study_returncode": study.returncode if study else None,
              "study_summary": next((l for l in study.stdout.splitlines() if l.startswith("study:")), "")
              if study else "",
              "staging_left": staging_folders(root),
              "problems": check_folder(saved, root) + (check_folder(storage, root) if with_study else [])}
    if train.returncode != 0:
        result["problems"].append(f"the final run failed: {train.stderr.strip()[-300:]}")
    if study is not None and study.returncode != 0:
        result["problems"].append(f"the resumed study failed ({study.returncode}): {study.stderr.strip()[-300:]}")
    if result["staging_left"]:
        result["problems"].append(f"staging folders left: {result['staging_left']}")
    return result


def write_report(report: dict, out: Path, command: str) -> Path:
    from benchmarks.common import machine_info, markdown_header, markdown_table, write_csv, header_lines

    info = machine_info("cpu")
    out.mkdir(parents=True, exist_ok=True)
    columns = ["kind", "number", "attempt", "signal", "after_checkpoint", "delay_s", "seconds", "killed", "returncode",
               "checkpoints", "staging", "problems", "last_line"]
    rows = [{**o, "problems": "; ".join(o["problems"]) or "none"} for o in report["outcomes"]]
    write_csv(out / "kills.csv", rows, header_lines(command, info), columns)
    bad = [o for o in report["outcomes"] if o["problems"]] + ([report["final"]] if report["final"]["problems"] else [])
    trains = [o for o in report["outcomes"] if o["kind"] == "train" and o["killed"]]
    studies = [o for o in report["outcomes"] if o["kind"] == "study" and o["killed"]]
    others = {}
    for o in report["outcomes"]:
        if o["kind"] not in ("train", "study") and o["killed"]:
            others[o["kind"]] = others.get(o["kind"], 0) + 1
    text = markdown_header("Fault injection: kills of training runs and studies", command, info)
    text += (
        f"\n{len(trains)} training kills ({sum(o['signal'] == 'SIGKILL' for o in trains)} SIGKILL, "
        f"{sum(o['signal'] == 'SIGINT' for o in trains)} SIGINT) and {len(studies)} study kills landed (rows with "
        "killed False: the process ended before the signal; that kill was tried again, sooner). After every row, "
        "every checkpoint on disk was loaded with `load_model` and every dataset checked against its build.json. "
        "Kills with after_checkpoint False first delete the cached CTR view, so they may land in its build.\n\n"
        "{others}"
        f"**Result: {'no problem found' if not bad else f'{len(bad)} kill(s) left a problem'}.** "
        f"Final run exit {report['final']['train_returncode']}, resumed study exit "
        f"{report['final']['study_returncode']}; staging folders left: {len(report['final']['staging_left'])}.\n\n"
        f"{report['final']['study_summary']}\n\n"
    )
    text = text.replace("{others}", (
        f"Other entry points, kills that landed: {', '.join(f'{k} {v}' for k, v in others.items())} (api: "
        "training and predict() through the Python API; convert: `python -m recbole_iacn.data recbole`; "
        "explain: `python -m recbole_iacn.explain --out`; read: a training run killed 1-5 s after its start, "
        "while the cached dataset is read; nproc2: `--nproc=2` runs, after which no rank may be left). A SIGINT "
        "must end with exit 130, one line 'interrupted...' and no traceback (except through the Python API, "
        "where it is a KeyboardInterrupt).\n\n") if others else "")
    text += markdown_table(columns, [[r.get(c, "") for c in columns] for r in rows])
    final_problems = report["final"]["problems"]
    text += "\nFinal check: " + ("; ".join(final_problems) if final_problems else "no problem") + "\n"
    return common.write_text(out / "README.md", text)


def main(argv=None) -> int:
    from benchmarks.common import command_line

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-kills", type=int, default=10)
    parser.add_argument("--study-kills", type=int, default=2)
    parser.add_argument("--horizon", type=float, default=12.0, help="latest kill time (s) for kills that do not "
                        "wait for a checkpoint")
    parser.add_argument("--study-min", type=float, default=12.0)
    parser.add_argument("--study-max", type=float, default=35.0)
    parser.add_argument("--api-kills", type=int, default=0, help="kills of training through the Python API")
    parser.add_argument("--convert-kills", type=int, default=0, help="kills of python -m recbole_iacn.data")
    parser.add_argument("--explain-kills", type=int, default=0, help="kills of python -m recbole_iacn.explain")
    parser.add_argument("--read-kills", type=int, default=0, help="kills of training runs early, while the cached "
                        "dataset is read")
    parser.add_argument("--ddp-kills", type=int, default=0, help="kills of --nproc=2 runs (no rank may be left)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    report = run(args)
    bad = sum(bool(o["problems"]) for o in report["outcomes"]) + bool(report["final"]["problems"])
    if args.out is not None:
        print(f"report: {write_report(report, args.out, command_line())}")
    print(f"{len(report['outcomes'])} kills, {bad} with problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
