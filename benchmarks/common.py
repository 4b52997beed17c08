"""Helpers shared by the benchmark scripts: device choice, machine description, file headers,
``key=value`` overrides, dataset lookup and CSV/Markdown writing."""

from __future__ import annotations

import argparse
import codecs
import contextlib
import csv
import datetime as _dt
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_PATH = REPO_ROOT / "dataset"
SHARED_ML1M = REPO_ROOT.parent / "shared" / "data" / "ml-1m-sample"
ML1M_NAME = "ml-1m-sample"
RESULTS_ROOT = REPO_ROOT / "benchmarks" / "results"
DEVICE_CHOICES = ("auto", "cpu", "cuda")
#: Datasets that are built by hand (python -m recbole_iacn.data amazon ...), never automatically.
CONVERTED_DATASETS = ("amazon-books", "amazon-electronics")
#: Options that keep RecBole quiet inside benchmark loops.
QUIET = {"state": "WARNING", "show_progress": False}
#: Seeds of every benchmark: FIRST_SEED, FIRST_SEED + 1, ...
FIRST_SEED = 2020


# ------------------------------------------------------------------------------ device and machine
def resolve_device(choice: str = "auto") -> str:
    """``cuda`` when asked for or (``auto``) when available, else ``cpu``; a clear error when
    ``cuda`` is forced on a machine without one."""
    import torch

    if choice not in DEVICE_CHOICES:
        raise ValueError(f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {choice!r}.")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was given, but torch sees no CUDA device on this machine.")
    return choice


def device_config(device: str) -> dict:
    """RecBole config keys that put a run on ``device``."""
    return {"use_gpu": device == "cuda", "gpu_id": "0"}


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else :func:`platform.processor`."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name(device: str) -> str:
    """A readable name of the compute device (the GPU's name on CUDA)."""
    import torch

    if device == "cuda":
        return f"cuda:{torch.cuda.current_device()} {torch.cuda.get_device_name()}"
    return "cpu"


def machine_info(device: str) -> dict:
    """The facts every result file is headed with."""
    import torch

    try:
        import recbole

        recbole_version = recbole.__version__
    except (ImportError, AttributeError):
        recbole_version = "unknown"
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "recbole": recbole_version,
        "python": platform.python_version(),
        "device": device_name(device),
        "commit": git_commit(),
    }


def git_commit() -> str:
    """The repository's commit (``+changes`` when the working tree differs from it), or ``unknown``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if changed else "")


def command_line(argv: Sequence[str] | None = None) -> str:
    """The exact command that produced a result file, shell-quoted."""
    argv = sys.argv if argv is None else argv
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *argv])


def header_lines(command: str, info: dict) -> list[str]:
    """``key: value`` lines (command, date, machine) for the top of every result file."""
    lines = [f"command: {command}"]
    lines += [f"{key}: {value}" for key, value in info.items()]
    return lines


def markdown_header(title: str, command: str, info: dict) -> str:
    """A Markdown title followed by the command/machine block."""
    body = "\n".join(f"- {line}" for line in header_lines(command, info))
    return f"# {title}\n\n{body}\n"


def default_out_dir(kind: str) -> Path:
    """``benchmarks/results/<date>/`` (date of today), the default output folder."""
    return RESULTS_ROOT / _dt.date.today().isoformat()


# ------------------------------------------------------------------------------ command line
#: The plugin host models, from the registry (each also exists as ``<host>_IaCN``).
def host_names() -> list[str]:
    from recbole_iacn.registry import host_names as registered

    return registered()


def host_labels() -> dict:
    """How tables name each host (``WideDeep``: ``Wide&Deep``), as registered with it."""
    from recbole_iacn.registry import get_spec

    return {host: get_spec(host).label for host in host_names()}


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number of at least 1 (anything else is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


def share(text: str) -> float:
    """An argparse ``type``: a number between 0 and 1, both excluded (a significance level)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return value


def add_common_arguments(parser, name: str, *, data: bool = True, device: bool = True, overrides: bool = True,
                         seeds: Optional[int] = None, threads: Optional[int] = None):
    """The options every benchmark script shares, declared once: ``--data_path``, ``--device``,
    ``--threads``, ``--out`` (default ``benchmarks/results/<date>/<name>``), ``--config_dict`` and, with
    ``seeds``, ``--seeds``/``--first-seed``. Returns ``parser``."""
    if seeds is not None:
        parser.add_argument("--seeds", type=positive_int, default=seeds, help="number of seeds")
        parser.add_argument("--first-seed", type=int, default=FIRST_SEED, help="seeds are first-seed, first-seed+1, ...")
    if data:
        parser.add_argument("--data_path", default=str(DEFAULT_DATA_PATH))
    if device:
        parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--threads", type=positive_int, default=threads,
                        help="torch.set_num_threads" + ("" if threads is not None else " (default: torch's)"))
    parser.add_argument("--out", default=None, help=f"output folder (default benchmarks/results/<date>/{name})")
    if overrides:
        parser.add_argument("--config_dict", nargs="*", default=[], metavar="KEY=VALUE",
                            help="config overrides for every run, e.g. learning_rate=0.0001 train_batch_size=128")
    return parser


def seed_list(args) -> list[int]:
    """``--seeds`` seeds from ``--first-seed`` (a clear error below 1)."""
    if args.seeds < 1:
        from recbole_iacn.errors import ConfigError

        raise ConfigError("--seeds must be at least 1.")
    return [args.first_seed + i for i in range(args.seeds)]


# ------------------------------------------------------------------------------ overrides
def parse_overrides(items: Iterable[str] | None) -> dict:
    """``["key=value", ...]`` → dict, values read as YAML (as ``run_recbole_iacn.py --key=value``)."""
    from recbole_iacn.settings import parse_override

    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            from recbole_iacn.errors import ConfigError

            raise ConfigError(f"--config_dict takes key=value pairs (learning_rate=0.0001), got {item!r}.")
        overrides[key] = parse_override(key, value)
    return overrides


# ------------------------------------------------------------------------------ RecBole's classes on our data
#: ``recbole.X@ctr``: RecBole's own X class trained on the package's CTR view, i.e. on the very samples,
#: batches and test rows ours use, so that the two sides' AUCs are comparable.
SAME_DATA = "@ctr"
SAME_DATA_HOSTS = ("DIN", "DIEN")


def same_data_host(name: str) -> Optional[str]:
    """``"recbole.DIN@ctr"`` → ``"DIN"`` (the plugin host whose data it reads); None for other names."""
    if name.startswith("recbole.") and name.endswith(SAME_DATA):
        return name[len("recbole."):-len(SAME_DATA)]
    return None


def on_ctr_view(prepared, host: str):
    """``prepared`` (the plugin ``host``'s CTR data) with RecBole's own ``host`` class as the model: RecBole's
    model YAML fills the model's settings, except those both sides share (embedding size). The training
    settings (learning rate, batch sizes, epochs, early stopping) stay ``prepared``'s: RecBole's defaults,
    then the dataset's YAML (ml-100k's sets ``learning_rate: 0.003``), then the caller's overrides."""
    import dataclasses
    import os

    import recbole
    import yaml
    from recbole.utils import get_model

    with open(os.path.join(os.path.dirname(recbole.__file__), "properties", "model", f"{host}.yaml"), encoding="utf-8") as f:
        defaults = yaml.safe_load(f) or {}
    for key, value in defaults.items():
        if key != "embedding_size":
            prepared.config[key] = value
    prepared.config["fused_optimizer"] = False  # RecBole's own optimizer, as in RecBole
    model_class = get_model(host)
    if host == "DIEN":
        model_class = _dien_with_sampled_negative_sequence(model_class)
    return dataclasses.replace(prepared, model_class=model_class)


def _dien_with_sampled_negative_sequence(dien):
    """RecBole's DIEN reads a negative behaviour sequence that only its DIENDataset provides (one uniform
    draw per dataset); on the CTR view it is drawn uniformly for every batch, padding kept."""
    import torch

    class DIEN(dien):
        def _with_negatives(self, interaction):
            if self.NEG_ITEM_SEQ not in interaction.interaction:
                history = interaction[self.ITEM_SEQ]
                negatives = torch.randint(1, self.n_items, history.shape, device=history.device)
                interaction.interaction[self.NEG_ITEM_SEQ] = negatives * (history > 0)
            return interaction

        def calculate_loss(self, interaction):
            return super().calculate_loss(self._with_negatives(interaction))

        def predict(self, interaction):
            return super().predict(self._with_negatives(interaction))

    return DIEN


# ------------------------------------------------------------------------------ datasets
def ensure_dataset(name: str, data_path: Path | str = DEFAULT_DATA_PATH) -> None:
    """Make sure plugin models can load ``name`` from ``data_path``.

    ``ml-100k`` is built on first use by the package itself; ``ml-1m-sample`` is prepared here from
    ``../shared/data/ml-1m-sample`` when missing; anything else (Amazon data, synthetic data) must
    already be converted: a missing one is a clear error naming the command that makes it.
    """
    from recbole_iacn.data.prepare import has_ctr_files

    folder = Path(data_path) / name
    if name == "ml-100k" or has_ctr_files(folder, name) or has_ctr_files(folder / "ctr", name):
        return
    if name == ML1M_NAME:
        prepare_ml1m_sample(data_path)
        return
    if (folder / f"{name}.inter").is_file():
        return  # a raw RecBole dataset: the package builds its CTR view on first use
    hint = (
        f"python -m recbole_iacn.data amazon --reviews reviews_<Category>_5.json.gz --meta "
        f"meta_<Category>.json.gz --name {name} --out {data_path}"
        if name in CONVERTED_DATASETS
        else f"python -m recbole_iacn.data ... --name {name} --out {data_path}"
    )
    raise FileNotFoundError(
        f"Dataset {name!r} is not prepared under {folder}. Convert it first ({hint}; see "
        "dataset/README.md), or pass --data_path to the folder that holds it."
    )


def prepare_ml1m_sample(data_path: Path | str = DEFAULT_DATA_PATH, shared: Path = SHARED_ML1M) -> Path:
    """Import the ML-1M sample (RecBole atomic source + dense CTR view) into ``data_path``."""
    from recbole_iacn.data import build_from_atomic, import_movielens_dat

    ratings, merged = shared / "ratings.dat", shared / "merged.csv"
    if not ratings.is_file():
        raise FileNotFoundError(
            f"{ratings} not found: cannot prepare {ML1M_NAME}. Run `python -m recbole_iacn.data movielens "
            f"--ratings .../ratings.dat --merged .../merged.csv --name {ML1M_NAME}` yourself."
        )
    folder = Path(data_path) / ML1M_NAME
    source = folder / "source"
    import_movielens_dat(ratings, source, ML1M_NAME, merged if merged.is_file() else None)
    build_from_atomic(str(source), ML1M_NAME, folder, ML1M_NAME, protocol="dense")
    return folder


# ------------------------------------------------------------------------------ reading
def read_runs_csv(path: Path, required: Sequence[str] = (), parse: Optional[Callable[[dict], dict]] = None) -> list[dict]:
    """The rows of a benchmark's ``runs.csv`` written by :func:`write_csv` (or appended to it), or none if the file
    does not exist: ``#`` comment lines and blank lines skipped, a byte-order mark allowed. ``parse`` turns each row's
    cells into values (a ``ValueError`` it raises is reported with the row's line).

    Raises :class:`~recbole_iacn.errors.MissingFieldError` for a column of ``required`` missing from the header and
    :class:`~recbole_iacn.errors.MalformedLineError` (file and line) for a file that is not UTF-8, a row with more
    or fewer cells than the header, or a cell ``parse`` cannot read: the file was edited or damaged by hand (the
    scripts write it whole, by rename), and a row read wrongly would be counted as a finished run.
    """
    from recbole_iacn.errors import MalformedLineError, MissingFieldError

    path = Path(path)
    if not path.is_file():
        return []
    hint = "Mend or remove that row (the run is trained again), or move the file away to start over."
    line_no = 0

    def data_lines(f):
        nonlocal line_no
        for line_no, line in enumerate(f, 1):
            if line.strip() and not line.startswith("#"):
                yield line

    rows = []
    try:
        reader = csv.reader(data_lines(_decoded_lines(path.read_bytes().removeprefix(codecs.BOM_UTF8))))
        columns = next(reader, None)
        if columns is None:
            return []
        for field in required:
            if field not in columns:
                raise MissingFieldError(path, field, columns, "Is this a runs.csv written by this benchmark?")
        for cells in reader:
            if len(cells) != len(columns):
                raise MalformedLineError(path, line_no, f"{len(cells)} cells where the header has {len(columns)}",
                                         hint)
            row = dict(zip(columns, cells))
            try:
                rows.append(parse(row) if parse else row)
            except ValueError as exc:
                raise MalformedLineError(path, line_no, str(exc), hint) from None
    except UnicodeDecodeError as exc:
        raise MalformedLineError(path, line_no + 1, f"not UTF-8 text ({exc.reason})", hint) from None
    except csv.Error as exc:
        raise MalformedLineError(path, line_no, str(exc), hint) from None
    return rows


def _decoded_lines(raw: bytes):
    """``raw``'s lines, each decoded as UTF-8 when it is reached (so that an error is at its own line)."""
    for line in raw.splitlines(keepends=True):
        yield line.decode("utf-8")


def run_main(main: Callable[[], object]) -> None:
    """Run a benchmark's ``main()`` from the command line: a :class:`~recbole_iacn.errors.UserError` (bad input,
    explained) is printed as one line, without a traceback, and exits with its status (2)."""
    from recbole_iacn.errors import UserError

    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None


# ------------------------------------------------------------------------------ writing
def write_results(out: Path, name: str, rows: list[dict], text: str, header: list[str]) -> dict:
    """``out/name.csv`` (``rows`` under ``header``) and ``out/name.md`` (``text``, also printed): the two
    files of a benchmark that measures one table. Returns their paths and the rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(out / f"{name}.csv", rows, header)
    md_path = write_text(out / f"{name}.md", text)
    print(text)
    return {"markdown": md_path, "csv": csv_path, "rows": rows}


def write_csv(path: Path, rows: list[dict], header: list[str], columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` as CSV, preceded by ``# ``-prefixed header lines (read it back with
    ``pandas.read_csv(path, comment="#")``). Written to a temporary name and renamed into place, so a stop
    mid-write leaves the previous file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from recbole_iacn.checkpoint import atomic_write

    columns = list(columns or _union_keys(rows))
    with atomic_write(path) as staging, open(staging, "w", encoding="utf-8", newline="") as f:
        for line in header:
            f.write(f"# {line}\n")
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _plain(row.get(k)) for k in columns})
    return path


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to a temporary name and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from recbole_iacn.checkpoint import atomic_write

    with atomic_write(path) as staging:
        Path(staging).write_text(text, encoding="utf-8")
    return path


def _union_keys(rows: list[dict]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    return keys


def _plain(value):
    """numpy scalars → Python numbers, None → empty cell."""
    if value is None:
        return ""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def png_note(path: Path, command: str, info: dict) -> str:
    """The text stamped at the foot of every plot (command, date, machine)."""
    return f"{command}\n{info['date']} | {info['cpu']} ({info['cores']} cores) | torch {info['torch']} | {info['device']}"


# ------------------------------------------------------------------------------ full-sort evaluation
def evaluate_full_sort(ranker, test_loader, config, result_keys: Sequence[str]) -> tuple[dict, int, int]:
    """RecBole's full-sort evaluation loop with ``ranker`` as the scorer (``ranker.scores(users)`` →
    ``[U, items]``, ``ranker.test_item(users)`` → ``[U]``): returns the metrics ``result_keys``, the number
    of evaluated users and the number whose test item differs between the ranker's split and RecBole's."""
    import math

    import torch
    from recbole.evaluator import Collector, Evaluator

    collector, evaluator = Collector(config), Evaluator(config)
    uid_field = config["USER_ID_FIELD"]
    users = mismatched = 0
    for interaction, history_index, positive_u, positive_i in test_loader:
        rb_users = interaction[uid_field].cpu()
        scores = ranker.scores(rb_users)
        scores[:, 0] = -math.inf
        if history_index is not None:
            scores[history_index[0].cpu(), history_index[1].cpu()] = -math.inf
        theirs = ranker.test_item(rb_users)
        ours = torch.full((len(rb_users),), -1, dtype=torch.long)
        ours[positive_u.cpu()] = positive_i.cpu()
        mismatched += int((theirs != ours).sum())
        users += len(rb_users)
        collector.eval_batch_collect(scores, interaction, positive_u.cpu(), positive_i.cpu())
    result = evaluator.evaluate(collector.get_data_struct())
    return {k: float(result[k]) for k in result_keys}, users, mismatched


@contextlib.contextmanager
def exclusive(folder: Path):
    """Hold ``folder/.lock`` for the length of a benchmark: a second run into the same folder stops at
    once with a clear message instead of interleaving its rows with the first's."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"Another benchmark is writing to {folder} (it holds {folder / '.lock'}). Wait for it "
                             "to finish, or pass a different --out.") from None
        yield
