"""Time loading a CTR dataset with and without each of ``CTRDataset``'s speed-only overrides.

``CTRDataset`` overrides RecBole's private ``_concat_remaped_tokens``/``_remap`` (remapping token
sequences on flat arrays) and ``_dataframe_to_interaction`` (padding sequences in one numpy step) only
for speed; the other overrides change what is loaded. For each variant this script builds the dataset
(``CTRDataset(config).build()``: read, check, remap, convert to tensors, split) ``--repeats`` times, takes the median,
and checks that the loaded tensors equal those of the full class, so a speed override that also changed
the result would show. An override that saves less than 10 % of the load time is not worth its code:
after the 2026-11-30 results ``_concat_remaped_tokens`` was dropped (its variant now times RecBole's own
twice) and ``_remap`` stays for a pandas deprecation, not for speed (see the comments in
``recbole_iacn/data/dataset.py``).

    python benchmarks/dataset_overrides.py --dataset ml-100k --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

#: variant -> the overrides replaced by RecBole's own methods
VARIANTS = {
    "CTRDataset (all overrides)": (),
    "without _remap, _concat_remaped_tokens": ("_remap", "_concat_remaped_tokens"),
    "without _dataframe_to_interaction": ("_dataframe_to_interaction",),
    "without all three": ("_remap", "_concat_remaped_tokens", "_dataframe_to_interaction"),
}


def variant_class(dropped):
    from recbole.data.dataset import Dataset

    from recbole_iacn.data.dataset import CTRDataset

    return type("Variant", (CTRDataset,), {name: getattr(Dataset, name) for name in dropped})


def load(cls, config):
    """Seconds to read the dataset and build its splits, and the built (train, valid, test) datasets."""
    start = time.perf_counter()
    built = cls(config).build()
    return time.perf_counter() - start, built


def same_tensors(a, b) -> bool:
    """Whether the built splits ``a`` and ``b`` hold equal tensors and vocabularies."""
    import torch

    pairs = [(getattr(x, feat), getattr(y, feat)) for x, y in zip(a, b) for feat in ("inter_feat", "item_feat")]
    for x, y in pairs:
        if (x is None) != (y is None):
            return False
        if x is None:
            continue
        if sorted(x.columns) != sorted(y.columns):
            return False
        for column in x.columns:
            if x[column].shape != y[column].shape or not torch.equal(x[column], y[column]):
                return False
    return all(list(a[0].field2id_token[f]) == list(b[0].field2id_token[f]) for f in a[0].field2id_token)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--repeats", type=int, default=3)
    common.add_common_arguments(parser, "dataset-overrides", device=False, threads=1)
    args = parser.parse_args(argv)

    import torch

    from recbole_iacn import compat
    from recbole_iacn.pipeline import make_config, prepare_data

    compat.apply()
    torch.set_num_threads(args.threads)
    common.ensure_dataset(args.dataset, args.data_path)
    overrides = {**common.QUIET, **common.device_config("cpu"), "data_path": args.data_path,
                 **common.parse_overrides(args.config_dict)}
    out = (Path(args.out) if args.out else common.default_out_dir("dataset-overrides") / "dataset-overrides").resolve()
    here = os.getcwd()
    rows, reference = [], None
    with tempfile.TemporaryDirectory(prefix="iacn-overrides-") as scratch:
        os.chdir(scratch)  # RecBole writes log/ into the working directory
        try:
            config, _, _ = make_config("DIN", args.dataset, None, overrides)
            prepare_data(config)
            load(variant_class(()), config)  # warm-up: builds the CTR view if needed, fills the file cache
            for label, dropped in VARIANTS.items():
                cls = variant_class(dropped)
                times = []
                for _ in range(args.repeats):
                    seconds, data = load(cls, config)
                    times.append(seconds)
                reference = reference if reference is not None else data
                rows.append({"variant": label, "median_s": statistics.median(times), "min_s": min(times),
                             "max_s": max(times), "same_tensors": same_tensors(reference, data)})
        finally:
            os.chdir(here)
    full = rows[0]["median_s"]
    for row in rows:
        row["vs_full"] = f"{(row['median_s'] - full) / full * 100:+.1f} %"
    info = common.machine_info("cpu")
    command = common.command_line(None if argv is None else [sys.argv[0], *argv])
    out.mkdir(parents=True, exist_ok=True)
    text = common.markdown_header("CTRDataset's speed-only overrides: load time with and without each", command,
                                  info) + "\n"
    text += (f"Dataset {args.dataset} (CTR view), `CTRDataset(config).build()` timed {args.repeats} times per variant after "
             "one warm-up load; `vs_full` is the median's change against the full class (positive: slower "
             "without the override); `same_tensors`: the loaded tensors and vocabularies equal the full class's.\n\n")
    columns = ["variant", "median_s", "min_s", "max_s", "vs_full", "same_tensors"]
    text += common.markdown_table(columns, [[f"{r[c]:.3f}" if isinstance(r[c], float) else r[c] for c in columns]
                                            for r in rows]) + "\n"
    path = common.write_text(out / "dataset_overrides.md", text)
    common.write_csv(out / "dataset_overrides.csv", rows, common.header_lines(command, info), columns)
    print(text)
    return {"markdown": path, "rows": rows}


if __name__ == "__main__":
    common.run_main(main)
