"""``performance.py``'s report: the target ratios (X_IaCN / X epoch time and its two causes, ours / RecBole's
throughput, the tensor loader / RecBole's), peak memory against its limit, and ``performance.md`` with the
absolute figures, those ratios and the profiles.
"""

from __future__ import annotations

import math

from benchmarks import common
from benchmarks.performance_measure import (BYTES_PER_MB, LOADER_KEY, LOADERS, PROFILE_PHASES, split_model_spec,
                                            with_setting)

HOSTS = tuple(common.host_names())
#: ``X_IaCN`` with λ = 0 computes no auxiliary loss: its cost over X is that of the wider item
#: embedding alone (E_orig ⊕ E_aux in the host's layers), the rest of X_IaCN's is the capsule network's.
WIDENING_ONLY = "iacn_lambda=0"
#: ``recbole.X@ctr``: RecBole's own X class trained on the package's CTR view, i.e. on the very samples,
#: batches and test rows ours use, so that the two sides' AUCs are comparable.
SAME_DATA = common.SAME_DATA
SAME_DATA_HOSTS = common.SAME_DATA_HOSTS
IACN_TARGET = 1.3  # X_IaCN epoch time / X epoch time must be <= this
#: Training samples/s through the tensor loader ÷ through RecBole's loader, per host (issue 15).
LOADER_SPEEDUP_TARGETS = {"DIN": 1.2, "WideDeep": 1.5, "DAIN": 1.5}
SPEEDUP_TARGET = 2.0  # our DIN/DIEN training throughput / RecBole's must be >= this
MEMORY_LIMIT_GB = 8.0  # peak RSS on the SYNTHETIC Books-sized data
BYTES_PER_GB = 1024 ** 3


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def ratio_rows(results: dict) -> list[dict]:
    """The target ratios: X_IaCN/X epoch time and ours/RecBole's training throughput (then the data loaders',
    :func:`loader_rows`), each ``{"ratio", "value", "target", "met", "auc"}``.

    >>> results = {"DIN": {"train_samples_per_s": 1000.0}, "DIN_IaCN": {"train_samples_per_s": 800.0},
    ...            "recbole.DIN": {"train_samples_per_s": 400.0}}
    >>> [(r["ratio"], r["value"], r["target"], r["met"]) for r in ratio_rows(results)]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('DIN_IaCN epoch time / DIN epoch time', 1.25, '<= 1.3', 'yes'),
     ("DIN training samples/s, ours / RecBole's (RecBole's own data pipeline)", 2.5, '>= 2.0', 'yes')]

    On the same CTR rows (``recbole.DIN@ctr``), faster counts only at an equal or better test AUC:

    >>> same = "DIN training samples/s, ours / RecBole's on the same CTR data, at equal or better test AUC"
    >>> def met(ours_auc, their_auc, their_speed):
    ...     results["recbole.DIN@ctr"] = {"train_samples_per_s": their_speed, "test_auc": their_auc}
    ...     results["DIN"]["test_auc"] = ours_auc
    ...     return {r["ratio"]: r["met"] for r in ratio_rows(results)}[same]
    >>> met(0.80, 0.79, 400.0), met(0.78, 0.79, 400.0), met(0.80, 0.79, 600.0), met(math.nan, math.nan, 400.0)
    ('yes', 'NO (AUC)', 'NO (speed)', 'speed yes, AUC not measured')

    ``X_IaCN:iacn_lambda=0`` splits X_IaCN / X into its two causes, whose product it is:

    >>> del results["recbole.DIN@ctr"]
    >>> results["DIN_IaCN:iacn_lambda=0"] = {"train_samples_per_s": 900.0}
    >>> [(r["ratio"], round(r["value"], 4)) for r in ratio_rows(results) if r["target"] == "(breakdown)"]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('... of which the wider item embedding (DIN_IaCN:iacn_lambda=0 / DIN)', 1.1111),
     ("... of which the capsule network's loss (DIN_IaCN / DIN_IaCN:iacn_lambda=0)", 1.125)]
    """
    def sps(m, key="train_samples_per_s"):
        r = results.get(m)
        return r.get(key, math.nan) if r and not r.get("error") else math.nan

    def cpu_sps(m):
        return sps(m, "train_samples_per_cpu_s")

    rows = []
    for host in HOSTS:
        for loader in (None, *LOADERS):
            plain, aux = (m if loader is None else with_setting(m, LOADER_KEY, loader) for m in (host, f"{host}_IaCN"))
            if plain in results and aux in results:
                value = ratio(sps(plain), sps(aux))  # epoch time ratio = inverse throughput ratio
                rows.append({"ratio": f"{aux} epoch time / {plain} epoch time", "value": value,
                             "cpu_value": ratio(cpu_sps(plain), cpu_sps(aux)),
                             "target": f"<= {IACN_TARGET}", "met": _met(value <= IACN_TARGET, value), "auc": ""})
            widened = f"{host}_IaCN:{WIDENING_ONLY}"
            if loader is None and plain in results and aux in results and widened in results:
                for label, part in (  # the same ratio as a product of its two causes
                    (f"... of which the wider item embedding ({widened} / {host})", ratio(sps(host), sps(widened))),
                    (f"... of which the capsule network's loss ({host}_IaCN / {widened})",
                     ratio(sps(widened), sps(f"{host}_IaCN"))),
                ):
                    rows.append({"ratio": label, "value": part, "target": "(breakdown)", "met": "", "auc": ""})
    rows += loader_rows(results, sps)
    for host in ("DIN", "DIEN", "WideDeep"):
        theirs = f"recbole.{host}"
        if host in results and theirs in results:
            value = ratio(sps(host), sps(theirs))
            target = host in ("DIN", "DIEN")
            aucs = [results[m].get("test_auc") for m in (host, theirs)]
            auc = "" if None in aucs else f"ours {aucs[0]:.4f} / RecBole {aucs[1]:.4f} (different test sets)"
            rows.append({"ratio": f"{host} training samples/s, ours / RecBole's (RecBole's own data pipeline)",
                         "value": value, "target": f">= {SPEEDUP_TARGET}" if target else "(none)",
                         "met": _met(value >= SPEEDUP_TARGET, value) if target else "", "auc": auc})
    for host in SAME_DATA_HOSTS:
        theirs = f"recbole.{host}{SAME_DATA}"
        if host in results and theirs in results:
            value = ratio(sps(host), sps(theirs))
            ours_auc, their_auc = (results[m].get("test_auc", math.nan) for m in (host, theirs))
            faster = value >= SPEEDUP_TARGET
            as_good = ours_auc >= their_auc  # NaN (not measured or failed) compares False
            met = _met(faster and as_good, value)
            if math.isnan(ours_auc) or math.isnan(their_auc):
                met = ("speed " + _met(faster, value) + ", AUC not measured") if met != "n/a" else met
            elif met == "NO":
                met += " (" + " and ".join(w for w, bad in (("speed", not faster), ("AUC", not as_good)) if bad) + ")"
            rows.append({"ratio": f"{host} training samples/s, ours / RecBole's on the same CTR data, at equal or "
                                  "better test AUC", "value": value, "target": f">= {SPEEDUP_TARGET}", "met": met,
                         "auc": f"ours {ours_auc:.4f} / RecBole {their_auc:.4f} (same test rows)"})
    return rows


def loader_rows(results: dict, sps) -> list[dict]:
    """Training samples/s through the tensor loader ÷ through RecBole's, for every model with both
    ``model:data_loader=tensor`` and ``model:data_loader=recbole`` rows (same data, same model); ``sps(model)``
    reads a row's samples/s. The plain hosts have targets (``LOADER_SPEEDUP_TARGETS``):

    >>> results = {f"{m}:data_loader={loader}": {"train_samples_per_s": sps} for m, loader, sps in [
    ...     ("DAIN", "recbole", 100.0), ("DAIN", "tensor", 160.0), ("DAIN_IaCN", "recbole", 50.0),
    ...     ("DAIN_IaCN", "tensor", 140.0), ("DIN", "recbole", 100.0), ("DIN", "tensor", 110.0)]}
    >>> for r in loader_rows(results, lambda m: results[m]["train_samples_per_s"]):
    ...     print(f"{r['ratio']}: {r['value']:.2f}, target {r['target']}, met {r['met']!r}")
    DAIN training samples/s, tensor loader / RecBole's loader: 1.60, target >= 1.5, met 'yes'
    DAIN_IaCN training samples/s, tensor loader / RecBole's loader: 2.80, target (none), met ''
    DIN training samples/s, tensor loader / RecBole's loader: 1.10, target >= 1.2, met 'NO'

    Each loader's X_IaCN / X epoch time is a target ratio of its own:

    >>> rows = {r["ratio"]: r for r in ratio_rows(results)}
    >>> for loader in ("tensor", "recbole"):
    ...     r = rows[f"DAIN_IaCN:data_loader={loader} epoch time / DAIN:data_loader={loader} epoch time"]
    ...     print(f"{loader}: {r['value']:.4f} {r['met']}")
    tensor: 1.1429 yes
    recbole: 2.0000 NO
    """
    rows = []
    for model in results:
        name, settings = split_model_spec(model)
        old = model.replace(f"{LOADER_KEY}=tensor", f"{LOADER_KEY}=recbole")
        if settings.get(LOADER_KEY) != "tensor" or old not in results:
            continue
        name = model.replace(f",{LOADER_KEY}=tensor", "").replace(f":{LOADER_KEY}=tensor", "")
        value = ratio(sps(model), sps(old))
        target = LOADER_SPEEDUP_TARGETS.get(name)  # only the plain hosts have targets
        aucs = [results[m].get("test_auc") for m in (model, old)]
        auc = "" if None in aucs else f"tensor {aucs[0]:.4f} / recbole {aucs[1]:.4f} (same test rows)"
        rows.append({"ratio": f"{name} training samples/s, tensor loader / RecBole's loader", "value": value,
                     "target": f">= {target}" if target else "(none)",
                     "met": _met(value >= target, value) if target else "", "auc": auc})
    return rows


def _met(ok: bool, value: float) -> str:
    return "n/a" if math.isnan(value) else ("yes" if ok else "NO")


def memory_rows(results: dict, limit_gb: float = MEMORY_LIMIT_GB) -> list[dict]:
    """Each model's peak RSS in GB against ``limit_gb``.

    >>> [m["met"] for m in memory_rows({"A": {"peak_rss_mb": 9 * 1024.0}, "B": {"peak_rss_mb": 512.0}})]
    ['NO', 'yes']
    """
    rows = []
    for model, r in results.items():
        if r.get("error"):
            rows.append({"model": model, "peak_rss_gb": math.nan, "met": "n/a (failed)"})
            continue
        gb = r["peak_rss_mb"] * BYTES_PER_MB / BYTES_PER_GB
        rows.append({"model": model, "peak_rss_gb": gb, "met": "yes" if gb <= limit_gb else "NO"})
    return rows


def _f(value, digits: int = 1) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}" if isinstance(value, float) else str(value)


def results_markdown(results: dict, baseline: str, synthetic: dict, args, command: str, info: dict,
                     protocol: str) -> str:
    """The whole report: absolute figures, ratios to ``baseline``, target ratios, synthetic memory; ``protocol``
    says what each side trains on."""
    text = common.markdown_header("recbole-iacn performance", command, info)
    text += (f"\nSettings: dataset {args.dataset}, train_batch_size {args.batch_size}, eval_batch_size "
             f"{args.eval_batch_size}, embedding_size {args.embedding_size}, MAX_ITEM_LIST_LENGTH {args.max_len}, "
             f"learning_rate {args.learning_rate}, threads {args.threads}, {args.warmup} warm-up + "
             f"{'one full epoch of' if args.full_epoch else args.batches} timed training batches, "
             f"{args.warmup} warm-up + {args.eval_batches} timed evaluation batches, AUC after "
             f"{args.auc_epochs} epoch(s) (0 = not measured). Ratios are against **{baseline}** measured in "
             "this same run. Epoch time is estimated as training rows per epoch / training samples per second."
             + (f" Every figure is the **median of {args.repeats} rounds** (each round measures every model once, "
                "in order; ratios are of the medians; performance.csv has each round's rows)."
                if args.repeats > 1 else "") + "\n\n")
    text += "## What each side trains on\n\n" + protocol + "\n"
    base = results.get(baseline, {})
    cols = ["model", "train rows/epoch", "train samples/s", f"÷ {baseline}", "train samples/CPU s", f"÷ {baseline}",
            "eval samples/s", f"÷ {baseline}",
            "epoch s (est.)", "peak RSS MB", "RSS Δ MB", f"Δ ÷ {baseline}", "params", "test AUC"]
    if any("cuda_max_allocated_mb" in r for r in results.values()):
        cols.append("CUDA max alloc MB")
    body = []
    for model, r in results.items():
        if r.get("error"):
            body.append([model, f"FAILED: {r['error']}"] + [""] * (len(cols) - 2))
            continue
        row = [model, r["train_rows_per_epoch"], _f(r["train_samples_per_s"]),
               _f(ratio(r["train_samples_per_s"], base.get("train_samples_per_s", math.nan)), 2),
               _f(r.get("train_samples_per_cpu_s", math.nan)),
               _f(ratio(r.get("train_samples_per_cpu_s", math.nan), base.get("train_samples_per_cpu_s", math.nan)), 2),
               _f(r["eval_samples_per_s"]), _f(ratio(r["eval_samples_per_s"], base.get("eval_samples_per_s", math.nan)), 2),
               _f(r["epoch_seconds_est"]), _f(r["peak_rss_mb"]), _f(r["peak_rss_delta_mb"]),
               _f(ratio(r["peak_rss_delta_mb"], base.get("peak_rss_delta_mb", math.nan)), 2), r["parameters"],
               _f(r.get("test_auc"), 4)]
        if "CUDA max alloc MB" in cols:
            row.append(_f(r.get("cuda_max_allocated_mb")))
        body.append(row)
    text += f"\n## Absolute figures and ratios ({args.dataset})\n\n" + common.markdown_table(cols, body)
    text += ("\nTest AUC: each side on its own test set (ours: the CTR view's labeled test rows; RecBole's: "
             "leave-one-out, uni100, i.e. 1 positive + 100 sampled negatives per user), so the two sides' "
             "AUCs are NOT comparable with each other; they show that both sides learn.\n")
    targets = ratio_rows(results)
    text += "\n## Target ratios\n\n" + common.markdown_table(
        ["ratio", "value", "in CPU time", "target", "met", "AUC beside"],
        [[t["ratio"], _f(t["value"], 2), _f(t.get("cpu_value", math.nan), 2), t["target"], t["met"], t["auc"]]
         for t in targets])
    text += ("\n\"In CPU time\": the same ratio from this process's CPU seconds instead of wall seconds, the figure "
             "to read on a machine shared with other jobs (with one thread, CPU seconds are the time the "
             "work itself took).\n")
    text += profiles_markdown(results)
    if synthetic:
        scale = args.synthetic_scale
        bound = "one full epoch" if args.full_epoch else f"{args.synthetic_batches} training batches (not a full epoch)"
        text += (f"\n## Memory on SYNTHETIC Amazon-Books-sized data (scale {scale:g})\n\n"
                 "SYNTHETIC data (recbole_iacn.data.build_synthetic), only for size: no accuracy meaning. "
                 f"Measured over {bound}, with evaluation batches as above.\n\n")
        rows = memory_rows(synthetic)
        body = []
        for m in rows:
            r = synthetic[m["model"]]
            body.append([m["model"], r.get("train_rows_per_epoch", "n/a"), _f(r.get("peak_rss_mb")),
                         _f(m["peak_rss_gb"], 2), f"<= {MEMORY_LIMIT_GB:g}", m["met"], _f(r.get("train_samples_per_s")),
                         _f(r.get("load_seconds"))])
        text += common.markdown_table(["model", "train rows/epoch", "peak RSS MB", "peak RSS GB", "target GB",
                                       "met", "train samples/s", "load s"], body)
    return text


def csv_fields(result: dict) -> dict:
    """A result as CSV cells: the profile's phases as columns, its operator table left to the Markdown."""
    fields = {k: v for k, v in result.items() if k not in ("profile_ms_per_step", "profile_top_ops")}
    for phase, ms in result.get("profile_ms_per_step", {}).items():
        fields[f"profile_ms_{phase.strip('# ').split()[0]}"] = ms
    return fields


def profiles_markdown(results: dict) -> str:
    """Per profiled model: milliseconds per training step in each phase, then torch's top operators."""
    profiled = {m: r for m, r in results.items() if not r.get("error") and r.get("profile_top_ops")}
    if not profiled:
        return ""
    text = ("\n## Profiles (torch.profiler, training steps)\n\nMilliseconds per step in each phase (data loader: "
            "building the batch; its copy to the device, a no-op on the CPU, is outside every phase), "
            "then the operators with the most self CPU time. The profiler's own overhead inflates the small "
            "operators; compare phases within a model.\n\n")
    text += common.markdown_table(["model", *(p.strip("# ") for p in PROFILE_PHASES), "profiled steps"],
                                  [[m, *(_f(r["profile_ms_per_step"].get(p), 2) for p in PROFILE_PHASES),
                                    r["profile_batches"]] for m, r in profiled.items()])
    for model, r in profiled.items():
        text += f"\n### {model}\n\n```\n{r['profile_top_ops'].strip()}\n```\n"
    return text
