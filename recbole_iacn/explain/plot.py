"""One picture per user: behaviours × interests heat map of routing weights, and each interest's
nearest catalogue items. Needs matplotlib (``pip install 'recbole-iacn[plots]'``)."""

from __future__ import annotations

from pathlib import Path

from recbole_iacn.checkpoint import atomic_write
from recbole_iacn.errors import MissingExtraError

#: Catalogue items listed per interest in the picture.
ITEMS_SHOWN = 5


def require_matplotlib():
    """``matplotlib.pyplot`` on the Agg backend, or a :class:`MissingExtraError` saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtraError(
            "Pictures need matplotlib, which is not installed: pip install 'recbole-iacn[plots]' (or "
            "pip install matplotlib), or pass --no-plots to write the JSON only."
        ) from None
    return plt


def _label(text, width: int = 28) -> str:
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _wrap(text: str, width: int = 160) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def plot_user(record: dict, path, title: str = "", caption: str = "") -> Path:
    """Write the picture of one explanation record (from :meth:`InterestExplainer.explain`) to ``path``
    (a temporary file renamed into place)."""
    plt = require_matplotlib()
    import numpy as np

    behaviours, interests = record["behaviours"], record["interests"]
    n, k = len(behaviours), len(interests)
    weights = np.array([i["routing_weights"] for i in interests]).T if k and n else np.zeros((max(n, 1), max(k, 1)))
    height = max(4.0, 0.28 * n + 2.0)
    fig, (heat, text) = plt.subplots(1, 2, figsize=(13, height), gridspec_kw={"width_ratios": [1.1, 1.4]})
    image = heat.imshow(weights, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    heat.set_yticks(range(n))
    heat.set_yticklabels([_label(f"{b['item']} · {b['category']}" if b["category"] else b["item"]) for b in behaviours],
                         fontsize=7)
    heat.set_xticks(range(k))
    heat.set_xticklabels([f"{i['interest']}\n{_label(i['label'], 12)}" for i in interests], fontsize=8)
    heat.set_xlabel("interest (label: majority category of its behaviours)")
    heat.set_ylabel("behaviour, oldest at the top (item · category)")
    for row in range(n):
        for col in range(k):
            value = weights[row, col]
            heat.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=6,
                      color="black" if value > 0.6 else "white")
    fig.colorbar(image, ax=heat, fraction=0.046, pad=0.04, label="routing weight a_ik")
    heat.set_title("routing weights: behaviour → interest", fontsize=10)
    lines = []
    for interest in interests:
        lines.append(f"interest {interest['interest']} ({interest['label']}): nearest items in E_aux")
        for item in interest["top_items"][:ITEMS_SHOWN]:
            lines.append(f"   {_label(item['item'], 20)}  {_label(item['category'] or '', 18):<18}  {item['score']:+.3f}")
        if interest.get("top_categories"):
            cats = ", ".join(c["category"] for c in interest["top_categories"][:3])
            lines.append(f"   nearest categories: {cats}")
        lines.append("")
    if "candidate" in record:
        c = record["candidate"]
        att = ", ".join(f"{w:.2f}" for w in c["attention_weights"])
        lines.append(f"candidate {c['item']} ({c['category']}): R_score {c['r_score']}, attention [{att}],")
        lines.append(f"   click probability {c['click_probability']:.3f}")
    text.axis("off")
    text.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8, transform=text.transAxes)
    routing = record.get("routing", {})
    moved = routing.get("moved_share")
    moved_text = "" if moved is None else f"; {100 * moved:.0f} % of behaviours moved from the start routing"
    fig.suptitle(title or f"user {record['user']}: {n} behaviours, K_u = {k} interests{moved_text}", fontsize=11)
    if caption:
        fig.text(0.01, 0.005, _wrap(caption), fontsize=7, ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.04 if caption else 0, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(path) as staging:
            fig.savefig(staging, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path
