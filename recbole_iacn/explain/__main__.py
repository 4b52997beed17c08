"""``python -m recbole_iacn.explain``: explain users' interests, or retrieve candidates, from a checkpoint.

    python -m recbole_iacn.explain --model-file saved/DIN_IaCN-....pth --users 196 305 --candidate 242 --out explained
    python -m recbole_iacn.explain --model-file saved/DIN_IaCN-....pth --users 196 --retrieve --top 50
    python -m recbole_iacn.explain --model-file saved/DIN_IaCN-....pth --users 196 --history "242 302 377 51"

Bad input (missing or non-IaCN checkpoint, unknown user or item, missing dataset files) prints one
paragraph and exits with status 2; a missing optional extra (matplotlib) exits with status 3. Ctrl-C, at any
moment, prints 'interrupted' and exits with status 130: nothing heavier than the standard library is imported
before main installs its handler (numpy, pandas and torch come in through main).
"""

from __future__ import annotations

import json
import sys
from typing import List, Optional

from recbole_iacn.errors import CompatibilityError, CtrlC, UserError, run_command

DESCRIPTION = """Explain what each user's interest capsules mean (routing weights over the user's behaviours,
nearest catalogue items and categories in E_aux, and for a candidate item the label-aware attention, R_score and
the host's click probability), or with --retrieve rank the whole catalogue by max_k R_score. The catalogue comes
from the checkpoint; histories come from the dataset's files (default: where the model was trained from, as the
checkpoint records it; each user's latest sample) or from --history for one user."""


def make_parser() -> argparse.ArgumentParser:
    import argparse  # here, not at the top: main's Ctrl-C handler is in place by then

    p = argparse.ArgumentParser(prog="python -m recbole_iacn.explain", description=DESCRIPTION)
    p.add_argument("--model-file", required=True, help="checkpoint of an X_IaCN model (saved/X_IaCN-....pth)")
    p.add_argument("--users", nargs="+", required=True, metavar="USER", help="raw user ids")
    p.add_argument("--candidate", default=None, metavar="ITEM", help="a raw item id to explain a prediction for")
    p.add_argument("--top", type=int, default=None,
                   help="items/behaviours/categories listed per interest (default 10); with --retrieve, items ranked (default 50)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write DIR/explanations.json (or retrieved.json) and one picture per user; default: JSON to stdout")
    p.add_argument("--retrieve", action="store_true", help="rank the whole catalogue by max_k R_score instead")
    p.add_argument("--include-history", action="store_true", help="with --retrieve: keep the user's own behaviours in the ranking")
    p.add_argument("--data_path", "--data-path", default=None,
                   help="folder of the dataset (default: the one stored in the checkpoint)")
    p.add_argument("--dataset", default=None, help="dataset name (default: the checkpoint's)")
    p.add_argument("--history", default=None, metavar='"ITEM ITEM ..."',
                   help="the behaviours of the one user given, oldest first, instead of the dataset's")
    p.add_argument("--no-plots", action="store_true", help="with --out: write the JSON only")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return p


def summary(document: dict) -> str:
    lines = []
    for r in document["users"]:
        if document["kind"] == "retrieval":
            items = ", ".join(f"{i['item']}" for i in r["items"][:10])
            lines.append(f"user {r['user']}: top items {items}")
            continue
        lines.append(f"user {r['user']}: {r['num_behaviours']} behaviours, K_u = {r['num_interests']}")
        for i in r["interests"]:
            items = ", ".join(f"{t['item']} ({t['category']})" for t in i["top_items"][:3])
            purity = "" if i.get("purity") is None else f", purity {i['purity']:.2f}"
            lines.append(f"  interest {i['interest']} [{i['label']}]: {len(i['behaviours_assigned'])} behaviours"
                         f"{purity}; nearest {items}")
        if "candidate" in r:
            c = r["candidate"]
            lines.append(f"  candidate {c['item']}: attention {c['attention_weights']}, R_score {c['r_score']}, "
                         f"click probability {c['click_probability']}")
    if "diagnostics" in document:
        from recbole_iacn.explain import diagnostics_caption

        lines.append(diagnostics_caption(document["diagnostics"]))
    for kind, paths in document.get("files", {}).items():
        for path in [paths] if isinstance(paths, str) else paths:
            lines.append(f"wrote {path}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    with CtrlC() as ctrl_c:  # Ctrl-C at any moment: one line, exit 130 as shells do (the JSON is written atomically)
        try:
            return _main(argv, ctrl_c)
        except KeyboardInterrupt:
            return ctrl_c.exit()


def _main(argv: Optional[List[str]], ctrl_c: CtrlC) -> int:
    args = make_parser().parse_args(argv)
    try:
        from recbole_iacn import explain as api

        if args.retrieve:
            document = api.retrieve(args.model_file, args.users, top=50 if args.top is None else args.top, data_path=args.data_path,
                                    dataset=args.dataset, history=args.history,
                                    exclude_history=not args.include_history, out=args.out, device=args.device)
        else:
            document = api.explain(args.model_file, args.users, candidate=args.candidate, top=10 if args.top is None else args.top,
                                   data_path=args.data_path, dataset=args.dataset, history=args.history,
                                   out=args.out, plots=not args.no_plots, device=args.device)
    except UserError as exc:  # (a missing matplotlib is a MissingExtraError, exit 3)
        ctrl_c.raise_if_pressed()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except CompatibilityError as exc:  # as run_recbole_iacn.py; any other ImportError is a bug and propagates
        ctrl_c.raise_if_pressed()
        print(f"error: {exc}", file=sys.stderr)
        return 3
    ctrl_c.raise_if_pressed()  # one that landed in a finaliser (while torch was imported) did not stop the work
    if args.out is None:
        print(json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False))
    else:
        print(summary(document))
    return 0


if __name__ == "__main__":
    run_command(main)
