"""The dataset sources, declared once: :data:`SOURCES`.

Each :class:`Source` names its converter's build function and says

* which ``python -m recbole_iacn.data`` subcommand builds it, with which options of its own
  (:mod:`recbole_iacn.data.__main__` makes the command line from this table);
* which raw RecBole datasets the run path builds with it automatically (:func:`for_raw_dataset`, used by
  :mod:`recbole_iacn.data.prepare`);
* which public names it gives ``recbole_iacn.data`` (:func:`exports`).

Every build function is called as ``build(<its inputs>, out_dir=..., name=..., **options)``, with its options
keyword-only: the shared ones (:data:`SHARED_OPTIONS`) and the source's own.

A new source is one converter module and one entry here. This module imports neither numpy nor pandas (the
converters do, when a source is built), so the command line's ``--help`` and the package stay light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Callable, Optional, Tuple

#: The build options every source that writes the CTR protocols takes (:class:`~recbole_iacn.data.ctr.BuildOptions`).
SHARED_OPTIONS = ("protocol", "seed", "max_history", "neg_sampling", "valid_ratio", "test_ratio")
#: Those of a source of prepared samples (no protocol to choose, no negatives to draw, no test users to pick).
PREPARED_OPTIONS = ("seed", "max_history", "valid_ratio")


@dataclass(frozen=True)
class Option:
    """One command-line option of a source: argparse's ``flags`` and keywords (``help``, ``default``,
    ``required``, ...), and ``param``, the keyword of the build function it fills."""

    flags: Tuple[str, ...]
    param: str
    kwargs: dict = field(default_factory=dict)


def _opt(flag: str, param: str, **kwargs) -> Option:
    return Option((flag,), param, kwargs)


@dataclass(frozen=True)
class Source:
    """A source of CTR datasets and how it is built."""

    command: str  # subcommand of python -m recbole_iacn.data
    help: str
    module: str  # submodule of recbole_iacn.data
    build: str  # its build function
    options: Tuple[Option, ...] = ()  # the source's own command-line options
    protocol: Optional[str] = None  # --protocol's default; None: a source of prepared samples (PREPARED_OPTIONS)
    default_name: Optional[str] = None  # --name's default (None: --name is required)
    exports: Tuple[str, ...] = ()  # names recbole_iacn.data exports from the module
    raw_prefix: Optional[str] = None  # builds raw RecBole datasets whose name starts with this ("" any); None: no
    progress: bool = False  # the build function takes progress= (shown by the automatic build)
    check_name: Optional[str] = None  # function of the module that refuses a raw dataset name before any download
    defaults: Optional[Callable[[dict], dict]] = None  # fills the build keywords the command line leaves open

    @property
    def shared_options(self) -> Tuple[str, ...]:
        return SHARED_OPTIONS if self.protocol is not None else PREPARED_OPTIONS

    def function(self) -> Callable:
        """The build function (imports the converter)."""
        return getattr(import_module(f"{__package__}.{self.module}"), self.build)

    def keywords(self, args) -> dict:
        """The build function's keywords from parsed command-line ``args`` (``out_dir`` aside)."""
        values = {"name": args.name, **{o: getattr(args, o) for o in self.shared_options}}
        values.update((opt.param, getattr(args, opt.param)) for opt in self.options)
        return self.defaults(values) if self.defaults is not None else values

    def check_raw_name(self, name: str) -> None:
        """Refuse a raw dataset ``name`` this source cannot build, before anything is downloaded."""
        if self.check_name is not None:
            getattr(import_module(f"{__package__}.{self.module}"), self.check_name)(name)


def _recbole_defaults(values: dict) -> dict:
    """``recbole``: no ``--source-dir`` is the bundled ml-100k; no ``--source-name`` is the folder's name."""
    if values["source_dir"] is None:
        from .builder import default_ml100k_source

        values["source_dir"], bundled_name = default_ml100k_source()
        values["source_name"] = values["source_name"] or bundled_name
    if values["source_name"] is None:
        values["source_name"] = Path(values["source_dir"]).name
    return values


def _folder_name_default(values: dict) -> dict:
    if values["source_name"] is None:
        values["source_name"] = Path(values["source_dir"]).name
    return values


_FIELDS = (
    _opt("--user-field", "user_field", default="user_id"),
    _opt("--item-field", "item_field", default="item_id"),
    _opt("--time-field", "time_field", default="timestamp"),
)

SOURCES: Tuple[Source, ...] = (
    Source(
        "amazon", "Amazon 2014 reviews + metadata (DIEN protocol)", "amazon", "build_amazon",
        options=(
            _opt("--reviews", "reviews_path", required=True, help="reviews_<Category>_5.json.gz (gzip or plain)"),
            _opt("--meta", "meta_path", required=True, help="meta_<Category>.json.gz (gzip or plain)"),
            _opt("--skip-malformed", "skip_malformed", action="store_true", help="count and skip malformed lines"),
        ),
        protocol="dien", exports=("build_amazon",),
    ),
    Source(
        "dien", "DIEN's prepared local_train_splitByUser / local_test_splitByUser", "dien", "build_from_dien",
        options=(
            _opt("--train", "train_path", required=True, help="local_train_splitByUser"),
            _opt("--test", "test_path", required=True, help="local_test_splitByUser"),
            _opt("--item-info", "item_info", default=None, help="optional item-info (item<TAB>category)"),
        ),
        exports=("build_from_dien",),
    ),
    Source(
        "recbole", "any RecBole atomic dataset (default: the bundled ml-100k)", "builder", "build_from_atomic",
        options=(
            _opt("--source-dir", "source_dir", default=None,
                 help="folder with <source-name>.inter (default: bundled ml-100k)"),
            _opt("--source-name", "source_name", default=None, help="atomic dataset name (default: ml-100k)"),
            *_FIELDS,
            _opt("--category-field", "category_field", default=None,
                 help="category field of <source-name>.item (default: cate_id/category/categories/class)"),
        ),
        protocol="dense", exports=("build_from_atomic", "default_ml100k_source"), raw_prefix="",
        defaults=_recbole_defaults,
    ),
    Source(
        "recbole-amazon", "RecBole's Amazon 2014 atomic files (amazon-books & co.): 5-core, DIEN protocol",
        "recbole_amazon", "build_from_recbole_amazon",
        options=(
            _opt("--source-dir", "source_dir", required=True, help="folder with <source-name>.inter and .item"),
            _opt("--source-name", "source_name", default=None,
                 help="atomic dataset name, e.g. amazon-books (default: the folder's name)"),
            _opt("--k-core", "k", type=int, default=5,
                 help="keep users and items with at least K ratings, repeated until stable (default 5)"),
            *_FIELDS,
        ),
        protocol="dien", exports=("build_from_recbole_amazon",), raw_prefix="amazon-", progress=True,
        check_name="check_amazon_release", defaults=_folder_name_default,
    ),
    Source(
        "movielens", "MovieLens ratings.dat (+ LibRecommender merged.csv)", "movielens", "build_movielens",
        options=(
            _opt("--ratings", "ratings_path", required=True, help="ratings.dat (uid::iid::rating::ts)"),
            _opt("--merged", "merged_csv", default=None, help="merged.csv with user features and genres"),
        ),
        protocol="dense", exports=("build_movielens", "import_movielens_dat"),
    ),
    Source(
        "synthetic", "SYNTHETIC Amazon-Books-shaped data", "synthetic", "build_synthetic",
        options=(_opt("--scale", "scale", type=float, default=1.0,
                      help="1.0 = 600k users, 368k items, 1.6k categories"),),
        protocol="dien", default_name="synthetic-books", exports=("build_synthetic", "build_planted"),
    ),
)


def by_command(command: str) -> Source:
    return next(s for s in SOURCES if s.command == command)


def for_raw_dataset(name: str) -> Source:
    """The source that builds the CTR view of the raw RecBole dataset ``name`` on first use: the one whose
    ``raw_prefix`` is the longest that ``name`` starts with (``amazon-*``: RecBole's Amazon files; any other
    name: the generic atomic builder)."""
    raw = [s for s in SOURCES if s.raw_prefix is not None and name.startswith(s.raw_prefix)]
    return max(raw, key=lambda s: len(s.raw_prefix))


def exports() -> dict:
    """``{public name: submodule}`` of the sources' build functions (and helpers) for ``recbole_iacn.data``."""
    return {name: s.module for s in SOURCES for name in s.exports}
