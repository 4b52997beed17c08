"""Command line: ``python -m recbole_iacn.data {amazon,dien,recbole,movielens,synthetic} ...``.

Every subcommand writes ``<out>/<name>/`` and prints a summary. Input problems (missing file,
malformed line, bad parameter) print one paragraph to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recbole_iacn.errors import UserError

# .common (numpy, pandas) is imported inside the functions: main() turns a Ctrl-C during those imports into
# 'interrupted', exit 130, which it could not do for one at this module's import

DEFAULT_OUT = "dataset"
AUTO_MAX_HISTORY = "auto"  # = recbole_iacn.data.ctr.AUTO_MAX_HISTORY (ctr imports numpy; kept out of --help)
EXIT_INPUT_ERROR = 2
EXIT_INTERRUPTED = 130


def _max_history(text: str):
    """``--max-history``: an integer, or ``auto`` (the protocol's default)."""
    if text.strip().lower() == AUTO_MAX_HISTORY:
        return AUTO_MAX_HISTORY
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None


def _common_options(parser: argparse.ArgumentParser, default_name, default_protocol=None) -> None:
    """Options every subcommand has."""
    from .common import (DEFAULT_MAX_HISTORY, DEFAULT_SEED, DEFAULT_TEST_RATIO, DEFAULT_VALID_RATIO,
                         NEG_SAMPLINGS, PROTOCOLS)
    parser.add_argument("--out", default=DEFAULT_OUT, help="parent folder; the dataset goes to <out>/<name>/ "
                        f"(default: {DEFAULT_OUT})")
    parser.add_argument("--name", default=default_name, required=default_name is None,
                        help="dataset name (file prefix and folder name)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument("--max-history", type=_max_history, default=AUTO_MAX_HISTORY,
                        help="keep the most recent N history items, 0 = all (default: 100 under the dien protocol, "
                        f"as DIEN's training reads; {DEFAULT_MAX_HISTORY} under dense)")
    parser.add_argument("--valid-ratio", type=float, default=DEFAULT_VALID_RATIO,
                        help=f"dien protocol: share of train users carved as valid (default {DEFAULT_VALID_RATIO})")
    if default_protocol is not None:
        parser.add_argument("--protocol", choices=PROTOCOLS, default=default_protocol,
                            help=f"sample protocol (default {default_protocol})")
        parser.add_argument("--neg-sampling", choices=NEG_SAMPLINGS, default="popularity",
                            help="negative item distribution (default popularity)")
        parser.add_argument("--test-ratio", type=float, default=DEFAULT_TEST_RATIO,
                            help=f"dien protocol: share of users in test (default {DEFAULT_TEST_RATIO})")


def make_parser() -> argparse.ArgumentParser:
    """The argparse parser with one subcommand per source."""
    parser = argparse.ArgumentParser(prog="python -m recbole_iacn.data",
                                     description="Prepare CTR datasets for recbole-iacn (see dataset/README.md).")
    sub = parser.add_subparsers(dest="command", required=True)

    amazon = sub.add_parser("amazon", help="Amazon 2014 reviews + metadata (DIEN protocol)")
    amazon.add_argument("--reviews", required=True, help="reviews_<Category>_5.json.gz (gzip or plain)")
    amazon.add_argument("--meta", required=True, help="meta_<Category>.json.gz (gzip or plain)")
    amazon.add_argument("--skip-malformed", action="store_true", help="count and skip malformed lines")
    _common_options(amazon, None, "dien")

    dien = sub.add_parser("dien", help="DIEN's prepared local_train_splitByUser / local_test_splitByUser")
    dien.add_argument("--train", required=True, help="local_train_splitByUser")
    dien.add_argument("--test", required=True, help="local_test_splitByUser")
    dien.add_argument("--item-info", default=None, help="optional item-info (item<TAB>category)")
    _common_options(dien, None)

    recbole = sub.add_parser("recbole", help="any RecBole atomic dataset (default: the bundled ml-100k)")
    recbole.add_argument("--source-dir", default=None, help="folder with <source-name>.inter (default: bundled ml-100k)")
    recbole.add_argument("--source-name", default=None, help="atomic dataset name (default: ml-100k)")
    recbole.add_argument("--user-field", default="user_id")
    recbole.add_argument("--item-field", default="item_id")
    recbole.add_argument("--time-field", default="timestamp")
    recbole.add_argument("--category-field", default=None,
                         help="category field of <source-name>.item (default: cate_id/category/categories/class)")
    _common_options(recbole, None, "dense")

    movielens = sub.add_parser("movielens", help="MovieLens ratings.dat (+ LibRecommender merged.csv)")
    movielens.add_argument("--ratings", required=True, help="ratings.dat (uid::iid::rating::ts)")
    movielens.add_argument("--merged", default=None, help="merged.csv with user features and genres")
    _common_options(movielens, None, "dense")

    synthetic = sub.add_parser("synthetic", help="SYNTHETIC Amazon-Books-shaped data")
    synthetic.add_argument("--scale", type=float, default=1.0, help="1.0 = 600k users, 368k items, 1.6k categories")
    _common_options(synthetic, "synthetic-books", "dien")
    return parser


def run(args) -> dict:
    """Dispatch a parsed command: build into a temporary sibling folder, then move it into place."""
    from .staging import build_in_place, target_folder

    return build_in_place(target_folder(args.out, args.name), args.name, lambda staging: _build(args, staging))


def _build(args, out_dir: Path) -> dict:
    """Build the dataset of a parsed command into ``out_dir``; returns the build summary."""
    if args.command == "amazon":
        from .amazon import build_amazon
        return build_amazon(args.reviews, args.meta, out_dir, args.name, args.protocol, args.seed, args.max_history,
                            args.neg_sampling, args.valid_ratio, args.test_ratio, args.skip_malformed)
    if args.command == "dien":
        from .dien import build_from_dien
        return build_from_dien(args.train, args.test, out_dir, args.name, args.item_info, args.seed,
                               args.max_history, args.valid_ratio)
    if args.command == "recbole":
        from .builder import build_from_atomic, default_ml100k_source
        source_dir, source_name = args.source_dir, args.source_name
        if source_dir is None:
            source_dir, bundled_name = default_ml100k_source()
            source_name = source_name or bundled_name
        if source_name is None:
            source_name = Path(source_dir).name
        return build_from_atomic(source_dir, source_name, out_dir, args.name, args.protocol, args.seed,
                                 args.max_history, args.neg_sampling, args.valid_ratio, args.test_ratio,
                                 args.user_field, args.item_field, args.time_field, args.category_field)
    if args.command == "movielens":
        from .movielens import build_movielens
        return build_movielens(args.ratings, out_dir, args.name, args.merged, args.protocol, args.seed,
                               args.max_history, args.neg_sampling, args.valid_ratio, args.test_ratio)
    from .synthetic import build_synthetic
    return build_synthetic(out_dir, args.name, args.scale, args.seed, args.max_history, args.protocol,
                           args.neg_sampling, args.valid_ratio, args.test_ratio)


def main(argv=None) -> int:
    """Entry point; returns the process exit status."""
    try:
        args = make_parser().parse_args(argv)
        summary = run(args)
    except (UserError, FileNotFoundError, IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:  # Ctrl-C: one line, exit 130 as shells do; the build left nothing in place
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    from .ctr import format_summary

    print(format_summary(summary))
    if "seconds" in summary:
        print(f"  built in {summary['seconds']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
