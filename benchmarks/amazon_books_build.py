"""Time and peak memory of building the CTR view of RecBole's amazon-books, on SYNTHETIC files.

RecBole's ``amazon-books`` (``Amazon_Books.zip``) holds 22,507,155 ratings of 8,026,324 users on
2,330,066 items. That download cannot be made on the project machines, so this script GENERATES
**synthetic** files of that size in RecBole's exact layout (``amazon-books.inter``:
``user_id:token item_id:token rating:float timestamp:float``; ``amazon-books.item``: ``item_id:token
sales_type:token sales_rank:float categories:token_seq title:token price:float brand:token``, the
categories as RecBole's ``str(set)`` strings, pandas-quoted titles) into a temporary folder (never the
repository), then builds their CTR view with the code ``--dataset=amazon-books`` runs
(:func:`recbole_iacn.data.recbole_amazon.build_from_recbole_amazon`: 5-core, DIEN protocol) in a
child process, and records its wall time, CPU time and peak RSS (``wait4``'s ``ru_maxrss``).

The synthetic users' activity and the items' popularity are heavy-tailed (Pareto weights, every user
and item rated at least once), so the 5-core keeps a minority of users, as in the real file; the
counts it keeps are recorded, and are NOT those of the real dataset.

Usage::

    python benchmarks/amazon_books_build.py --scale 0.1     # 2.25 M ratings
    python benchmarks/amazon_books_build.py --scale 1.0     # 22.5 M ratings, as RecBole's amazon-books
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

NAME = "amazon-books"
#: RecBole's Amazon_Books atomic files (RecSysDatasets' dataset_info/Amazon).
FULL_RATINGS = 22_507_155
FULL_USERS = 8_026_324
FULL_ITEMS = 2_330_066
LEAF_CATEGORIES = 1_600
PARENT_CATEGORIES = 30
MEMORY_LIMIT_GB = 8.0
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
ITEM_HEADER = ("item_id:token\tsales_type:token\tsales_rank:float\tcategories:token_seq\ttitle:token\t"
               "price:float\tbrand:token")
FIRST_TIME, LAST_TIME = 832_550_400, 1_406_073_600  # 1996-05-20 .. 2014-07-23, as the 2014 dump
WRITE_ROWS = 1 << 20


def generate(folder: Path, scale: float, seed: int = 2020) -> dict:
    """Write SYNTHETIC ``amazon-books.inter`` / ``.item`` of ``scale`` x RecBole's size; returns the sizes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_ratings = int(round(FULL_RATINGS * scale))
    n_users = int(round(FULL_USERS * scale))
    n_items = int(round(FULL_ITEMS * scale))
    # every user and item once, the rest by heavy-tailed weights (a few very active users, best sellers)
    user_weight = rng.pareto(1.1, n_users) + 1e-3
    item_weight = rng.pareto(0.9, n_items) + 1e-3
    user = np.concatenate([np.arange(n_users), rng.choice(n_users, n_ratings - n_users, p=user_weight / user_weight.sum())])
    item = np.concatenate([np.arange(n_items), rng.choice(n_items, n_ratings - n_items, p=item_weight / item_weight.sum())])
    rng.shuffle(user)
    del user_weight, item_weight
    order = np.argsort(item, kind="stable")  # RecBole's file, like ratings_Books.csv, runs item by item
    user, item = user[order], item[order]
    del order
    stamp = rng.integers(FIRST_TIME, LAST_TIME, n_ratings)
    rating = rng.integers(1, 6, n_ratings)
    user_tok = [f"A{u:013X}" for u in rng.permutation(n_users).tolist()]
    item_tok = [f"{i:010d}" if i % 3 else f"B{i:09X}" for i in range(n_items)]
    rating_tok = ["", "1.0", "2.0", "3.0", "4.0", "5.0"]
    with open(folder / f"{NAME}.inter", "w", encoding="utf-8", newline="\n") as out:
        out.write(INTER_HEADER + "\n")
        for start in range(0, n_ratings, WRITE_ROWS):
            stop = min(start + WRITE_ROWS, n_ratings)
            rows = zip(user[start:stop].tolist(), item[start:stop].tolist(), rating[start:stop].tolist(),
                       stamp[start:stop].tolist())
            out.write("".join(f"{user_tok[u]}\t{item_tok[i]}\t{rating_tok[r]}\t{t}\n" for u, i, r, t in rows))
    del user, item, stamp, rating, user_tok
    parents = [f"Parent Genre {p} & Co" for p in range(PARENT_CATEGORIES)]
    leaves = [f"Leaf Topic {c}" for c in range(LEAF_CATEGORIES)]
    leaf_of = rng.integers(0, LEAF_CATEGORIES, n_items)
    second = rng.integers(0, LEAF_CATEGORIES, n_items)
    kind = rng.random(n_items)  # 3% no categories ('et('), 1% absent from the file, 20% two paths
    with open(folder / f"{NAME}.item", "w", encoding="utf-8", newline="\n") as out:
        out.write(ITEM_HEADER + "\n")
        lines = []
        for i in range(n_items):
            k = kind[i]
            if k < 0.01:
                continue
            if k < 0.04:
                cats = "et("
            else:
                leaf = leaves[leaf_of[i]]
                entries = {"Books", parents[leaf_of[i] % PARENT_CATEGORIES], leaf}
                if k > 0.8:
                    entries |= {parents[second[i] % PARENT_CATEGORIES], leaves[second[i]]}
                cats = str(entries)[1:-1]
                if '"' in cats:
                    cats = '"' + cats.replace('"', '""') + '"'
            title = f'"Synthetic ""Book"" {i}"' if i % 50 == 0 else f"Synthetic Book {i}"
            lines.append(f"{item_tok[i]}\tBooks\t{i + 1}\t{cats}\t{title}\t9.99\tSynthetic Press\n")
            if len(lines) >= WRITE_ROWS:
                out.write("".join(lines))
                lines = []
        out.write("".join(lines))
    return {"ratings": n_ratings, "users": n_users, "items": n_items,
            "inter_bytes": (folder / f"{NAME}.inter").stat().st_size,
            "item_bytes": (folder / f"{NAME}.item").stat().st_size}


def build_child(folder: Path, out: Path, summary_path: Path) -> None:
    """The measured part: what ``--dataset=amazon-books`` runs on the downloaded files."""
    from recbole_iacn.data.recbole_amazon import build_from_recbole_amazon

    summary = build_from_recbole_amazon(folder, NAME, out, NAME, progress=False)
    summary_path.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")


def measure_build(folder: Path, out: Path) -> dict:
    """Run :func:`build_child` in a child process; wall time, CPU time and peak RSS of that child."""
    summary_path = folder / "summary.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--build-only", str(folder), "--build-out", str(out)]
    started = time.perf_counter()
    child = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the build child failed with status {os.waitstatus_to_exitcode(status)}")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    return {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 2), "build_seconds": summary.get("seconds"),
            "counts": summary.get("counts", {}), "parameters": summary.get("parameters", {})}


def results_markdown(row: dict, command: str, info: dict) -> str:
    text = common.markdown_header("Building the CTR view of amazon-books (SYNTHETIC files in RecBole's layout)",
                                  command, info)
    g, b = row["generated"], row["build"]
    c = b["counts"]
    ok = b["peak_rss_gb"] <= MEMORY_LIMIT_GB
    text += f"""
**SYNTHETIC data**: generated files of {row['scale']} x the size of RecBole's amazon-books
({g['ratings']:,} ratings, {g['users']:,} users, {g['items']:,} items; `.inter` {g['inter_bytes'] / 1e9:.2f} GB,
`.item` {g['item_bytes'] / 1e9:.2f} GB) in its exact atomic layout. Counts below are those of the synthetic data,
not of the real dataset.

| measure | value |
| --- | --- |
| build wall time (child process) | {b['wall_s']} s |
| build CPU time (user + system) | {b['cpu_s']} s |
| peak RSS of the build | {b['peak_rss_gb']} GB ({'within' if ok else 'OVER'} the {MEMORY_LIMIT_GB:g} GB limit) |
| generation wall time (not part of the build) | {row['generate_s']} s |
| ratings read / kept by the 5-core | {c.get('ratings_in_source', 0):,} / {c.get('interactions', 0):,} |
| users / items after the 5-core | {c.get('users', 0):,} / {c.get('items', 0):,} |
| categories; items without one | {c.get('categories', 0):,}; {c.get('items_with_default_category', 0):,} |
| samples (DIEN protocol, max_history {b['parameters'].get('max_history')}) | {c.get('samples', 0):,} |
"""
    if row.get("projection"):
        text += f"\n{row['projection']}\n"
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.1, help="1.0 = RecBole's amazon-books size (default 0.1)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--tmp", default=None, help="parent of the temporary folder (default: the system's)")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results/<today>/"
                        "amazon-books-build)")
    parser.add_argument("--build-only", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--build-out", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.build_only:
        build_child(Path(args.build_only), Path(args.build_out), Path(args.build_only) / "summary.json")
        return {}
    out_dir = Path(args.out) if args.out else common.default_out_dir("build") / "amazon-books-build"
    folder = Path(tempfile.mkdtemp(prefix="synthetic-amazon-books-", dir=args.tmp))
    try:
        started = time.perf_counter()
        generated = generate(folder, args.scale, args.seed)
        generate_s = round(time.perf_counter() - started, 1)
        print(f"generated SYNTHETIC files in {folder} in {generate_s} s: {generated}", flush=True)
        build = measure_build(folder, folder / "ctr")
        print(f"built in {build['wall_s']} s wall, {build['cpu_s']} s CPU, peak RSS {build['peak_rss_gb']} GB",
              flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    row = {"synthetic": True, "scale": args.scale, "generated": generated, "generate_s": generate_s, "build": build}
    out_dir.mkdir(parents=True, exist_ok=True)
    command = common.command_line()
    info = common.machine_info("cpu")
    tag = f"scale-{args.scale:g}"
    common.write_text(out_dir / f"{tag}.json", json.dumps({"command": command, **info, **row}, indent=2) + "\n")
    common.write_text(out_dir / f"{tag}.md", results_markdown(row, command, info))
    print(f"results: {out_dir / (tag + '.md')}")
    return row


if __name__ == "__main__":
    common.run_main(main)
