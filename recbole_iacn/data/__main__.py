"""Command line: ``python -m recbole_iacn.data {amazon,dien,recbole,recbole-amazon,movielens,synthetic} ...``.

One subcommand per source of :data:`recbole_iacn.data.sources.SOURCES`, with that source's options and the
shared ones. Every subcommand writes ``<out>/<name>/`` and prints a summary. Input problems (missing file,
malformed line, bad parameter) print one paragraph to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recbole_iacn.data.sources import SOURCES, by_command
from recbole_iacn.errors import CtrlC, UserError, run_command

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
    """The argparse parser with one subcommand per source of :data:`~recbole_iacn.data.sources.SOURCES`."""
    parser = argparse.ArgumentParser(prog="python -m recbole_iacn.data",
                                     description="Prepare CTR datasets for recbole-iacn (see dataset/README.md).")
    sub = parser.add_subparsers(dest="command", required=True)
    for source in SOURCES:
        command = sub.add_parser(source.command, help=source.help)
        for option in source.options:
            kwargs = dict(option.kwargs)
            if kwargs.get("action") is None:  # shown as the flag's name, e.g. --reviews REVIEWS
                kwargs.setdefault("metavar", option.flags[0].lstrip("-").replace("-", "_").upper())
            command.add_argument(*option.flags, dest=option.param, **kwargs)
        _common_options(command, source.default_name, source.protocol)
    return parser


def run(args) -> dict:
    """Dispatch a parsed command: build into a temporary sibling folder, then move it into place."""
    from .staging import build_in_place, target_folder

    return build_in_place(target_folder(args.out, args.name), args.name, lambda staging: _build(args, staging))


def _build(args, out_dir: Path) -> dict:
    """Build the dataset of a parsed command into ``out_dir``; returns the build summary."""
    source = by_command(args.command)
    return source.function()(out_dir=out_dir, **source.keywords(args))


def main(argv=None) -> int:
    """Entry point; returns the process exit status."""
    with CtrlC() as ctrl_c:  # Ctrl-C at any moment: one line, exit 130 as shells do; the build left nothing in place
        try:
            return _main(argv, ctrl_c)
        except KeyboardInterrupt:
            return ctrl_c.exit()


def _main(argv, ctrl_c: CtrlC) -> int:
    try:
        args = make_parser().parse_args(argv)
        summary = run(args)
    except (UserError, FileNotFoundError, IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        ctrl_c.raise_if_pressed()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    ctrl_c.raise_if_pressed()  # one that landed in a finaliser did not stop the build
    from .ctr import format_summary

    print(format_summary(summary))
    if "seconds" in summary:
        print(f"  built in {summary['seconds']:.2f} s")
    return 0


if __name__ == "__main__":
    run_command(main)
