"""Time and peak memory of the category step of ``amazon-*`` (the ``.item`` read + DIEN's category), on a
SYNTHETIC ``.item`` of amazon-books' size whose ``categories`` are built from the REAL category paths of
the test fixtures (tests/fixtures/amazon2014).

The step (:mod:`recbole_iacn.data.recbole_amazon`) reads every row of ``<name>.item`` and picks the
category of the items kept by the 5-core (``wanted``). This script writes a ``.item`` in RecBole's layout
(``item_id sales_type sales_rank categories title price brand``, ``categories`` as ``str(set)[1:-1]``
written by pandas), then runs the step of one or more checkouts of this repository, each in a child
process, and records wall time, CPU time and peak RSS (``wait4``'s ``ru_maxrss``) of the child. The child
first records the RSS of its imports (``baseline_rss_gb``).

Categories of a synthetic item: with probability 1/2 the category paths of one real item (a Digital Music
item: several paths; a Beauty item: one), otherwise 1 to 4 real paths, each drawn as often as real items
carry it; the number of distinct ``categories`` values (profiles) it gives is recorded (``--one-path``:
one real path per item, drawn uniformly).

Usage::

    python benchmarks/amazon_item_categories.py --rows 2330066 --wanted 367982 --repo . --repo ../wt-before
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "amazon2014"
NAME = "amazon-books"
HEADER = "item_id:token\tsales_type:token\tsales_rank:float\tcategories:token_seq\ttitle:token\tprice:float\tbrand:token\n"
#: items of the 2014 Books metadata's 5-core (DIEN's amazon-books) and rows of RecBole's Amazon_Books.item
DIEN_ITEMS = 367_982
RECBOLE_ROWS = 2_330_066


def real_category_lists() -> List[List[List[str]]]:
    """Category lists (lists of paths) of the real fixture items: Digital Music (1,000) and Beauty (600)."""
    import pandas as pd

    with gzip.open(FIXTURES / "meta_Digital_Music.head1000.json.gz", "rt", encoding="utf-8") as handle:
        lists = [ast.literal_eval(line)["categories"] for line in handle]
    frame = pd.read_csv(FIXTURES / "Amazon_Beauty.head600.item", sep="\t", dtype=str, keep_default_na=False)
    from recbole_iacn.data.recbole_amazon import parse_entries

    lists += [[parse_entries(v)] for v in frame["categories:token_seq"]]
    return [c for c in lists if c and c[0]]


def generate(path: Path, rows: int, seed: int, one_path: bool) -> dict:
    """Write the synthetic ``.item``; returns its size and the number of distinct ``categories`` values."""
    rng = random.Random(seed)
    lists = real_category_lists()
    carried_by = {}
    for c in lists:
        for p in c:
            carried_by[tuple(p)] = carried_by.get(tuple(p), 0) + 1
    paths = sorted(carried_by)
    carried = [carried_by[p] for p in paths]
    values = set()
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write(HEADER)
        lines = []
        for i in range(rows):
            if one_path:
                cats = [list(rng.choice(paths))]
            elif rng.random() < 0.5:
                cats = rng.choice(lists)
            else:  # paths drawn as often as real items carry them
                cats = [list(p) for p in rng.choices(paths, weights=carried, k=rng.randint(1, 4))]
            cats_set = set()
            for p in cats:
                for e in p:
                    cats_set.add(e)
            value = str(cats_set)[1:-1]
            values.add(value)
            if '"' in value:
                value = '"' + value.replace('"', '""') + '"'
            lines.append(f"{i:010d}\tBooks\t{i + 1}\t{value}\tSynthetic Book {i}\t9.99\tSynthetic Press\n")
            if len(lines) >= 1 << 16:
                out.write("".join(lines))
                lines = []
        out.write("".join(lines))
    return {"rows": rows, "bytes": path.stat().st_size, "distinct_values": len(values), "one_path": one_path}


def step_child(folder: Path, wanted_n: int, rows: int, seed: int, out: Path) -> None:
    """The measured part, in the child: the category step of the checkout on ``sys.path``."""
    import numpy as np

    from recbole_iacn.data import recbole_amazon as ra

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    rng = np.random.default_rng(seed)
    codes = np.sort(rng.choice(rows, size=min(wanted_n, rows), replace=False))
    wanted = {f"{int(c):010d}": k for k, c in enumerate(codes.tolist())}
    started = time.perf_counter()
    path = folder / f"{NAME}.item"
    if hasattr(ra, "read_item_profiles"):
        profiles, weights, item_profile, _, _ = ra.read_item_profiles(path, "item_id", wanted)
        read_s = time.perf_counter() - started
        chosen, _, rule = ra.pick_categories(len(wanted), profiles, weights, item_profile)
    else:  # the rarest-entry rule (before issue 32)
        entries, _, _ = ra.read_item_entries(path, "item_id", wanted)
        read_s = time.perf_counter() - started
        chosen, _ = ra.pick_categories(len(wanted), entries)
        rule = "rarest entry"
    total = time.perf_counter() - started
    out.write_text(json.dumps({"baseline_rss_gb": round(base, 3), "read_s": round(read_s, 1),
                               "step_s": round(total, 1), "categories": len(set(chosen)), "rule": rule}))


def measure(repo: Path, folder: Path, wanted_n: int, rows: int, seed: int) -> dict:
    out = folder / f"child-{abs(hash(str(repo)))}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(folder), "--wanted", str(wanted_n),
           "--rows", str(rows), "--seed", str(seed), "--child-out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONDONTWRITEBYTECODE": "1"}  # leaves the checkouts measured as they are
    started = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, cwd=str(repo))
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the child for {repo} failed with status {os.waitstatus_to_exitcode(status)}")
    row = json.loads(out.read_text())
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "recbole_iacn"],
                           capture_output=True, text=True).stdout.strip()
    return {"repo": str(repo), "commit": commit + ("+changes" if dirty else ""), "wall_s": round(wall, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 3),
            **row}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=RECBOLE_ROWS, help=f"rows of the .item (default {RECBOLE_ROWS:,})")
    parser.add_argument("--wanted", type=int, default=DIEN_ITEMS, help="items whose category is picked "
                        f"(the 5-core; default {DIEN_ITEMS:,})")
    parser.add_argument("--repo", action="append", default=None, help="checkout to measure (repeatable; default .)")
    parser.add_argument("--one-path", action="store_true", help="one real path per item")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--tmp", default=None)
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results/<today>/"
                        "amazon-item-categories)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.child:
        sys.path.insert(0, os.environ["PYTHONPATH"])  # the checkout measured, before this script's own
        step_child(Path(args.child), args.wanted, args.rows, args.seed, Path(args.child_out))
        return {}
    repos = [Path(r).resolve() for r in (args.repo or ["."])]
    folder = Path(tempfile.mkdtemp(prefix="synthetic-amazon-item-", dir=args.tmp))
    try:
        started = time.perf_counter()
        generated = generate(folder / f"{NAME}.item", args.rows, args.seed, args.one_path)
        generated["generate_s"] = round(time.perf_counter() - started, 1)
        print(f"generated {generated}", flush=True)
        rows = []
        for repo in repos:
            rows.append(measure(repo, folder, args.wanted, args.rows, args.seed))
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result = {"synthetic": True, "generated": generated, "wanted": args.wanted, "runs": rows}
    out_dir = Path(args.out) if args.out else common.default_out_dir("build") / "amazon-item-categories"
    out_dir.mkdir(parents=True, exist_ok=True)
    command = common.command_line()
    info = common.machine_info("cpu")
    tag = f"rows-{args.rows}" + ("-one-path" if args.one_path else "")
    common.write_text(out_dir / f"{tag}.json", json.dumps({"command": command, **info, **result}, indent=2) + "\n")
    text = common.markdown_header("Category step of amazon-* on a SYNTHETIC .item (real category paths)", command,
                                  info)
    text += (f"\n**SYNTHETIC** `.item`: {generated['rows']:,} rows ({generated['bytes'] / 1e9:.2f} GB), "
             f"{generated['distinct_values']:,} distinct `categories` values built from the real paths of "
             f"tests/fixtures/amazon2014 ({'one path' if args.one_path else 'one to several paths'} per item); "
             f"categories picked for {args.wanted:,} items.\n\n")
    text += common.markdown_table(
        ["checkout", "rule", "wall s", "CPU s", "read s", "peak RSS GB", "RSS after imports GB", "categories"],
        [[r["commit"], r["rule"][:60], r["wall_s"], r["cpu_s"], r["read_s"], r["peak_rss_gb"], r["baseline_rss_gb"],
          r["categories"]] for r in rows])
    common.write_text(out_dir / f"{tag}.md", text + "\n")
    print(f"results: {out_dir / (tag + '.md')}")
    return result


if __name__ == "__main__":
    common.run_main(main)
