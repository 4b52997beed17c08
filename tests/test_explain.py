"""Interest explanation and capsule retrieval: the numbers are the model's own, recomputed here by hand.

One small WideDeep_IaCN is trained once (seconds) on SYNTHETIC data with planted interests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recbole_iacn.explain import InterestExplainer, load_histories, rank_items, retrieve
from recbole_iacn.explain.__main__ import main
from recbole_iacn.model.iacn import interest_counts
from recbole_iacn.model.layers import length_mask

REPO = Path(__file__).resolve().parents[1]


PLANTED = "synthetic-planted"
#: The "fitted" configuration of benchmarks/planted_interests.py: its data (600 users, 300 items, 20 categories,
#: seed 2020), batches of 256, L = 20, early stopping on the validation AUC, learning rate 0.01, d_aux = 16.
PLANTED_DATA = {"users": 600, "items": 300, "categories": 20, "seed": 2020}
PLANTED_FIT = {"state": "WARNING", "show_progress": False, "MAX_ITEM_LIST_LENGTH": 20, "train_batch_size": 256,
               "epochs": 100, "stopping_step": 10, "reproducibility": True, "learning_rate": 0.01,
               "iacn_embedding_size": 16, "seed": 2020}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """``(checkpoint, data root, prepared data, loaded model)`` of a WideDeep_IaCN fitted to planted data."""
    from recbole_iacn.data.synthetic import build_planted
    from recbole_iacn.pipeline import prepare, run
    from recbole_iacn.quick_start import load_model

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("planted")
    build_planted(root / PLANTED, PLANTED, **PLANTED_DATA)
    config = {**PLANTED_FIT, "data_path": str(root), "checkpoint_dir": str(tmp_path_factory.mktemp("saved"))}
    prepared = prepare("WideDeep_IaCN", PLANTED, config_dict=config)
    result = run("WideDeep_IaCN", PLANTED, prepared=prepared)
    return result["model_file"], root, prepared, load_model(result["model_file"])


@pytest.fixture(scope="module")
def explainer(planted):
    return InterestExplainer(planted[3])


USERS = ["u0", "u1", "u7", "u42"]


def test_planted_generator_shape():
    import numpy as np

    from recbole_iacn.data.synthetic import generate_planted

    inter, planted = generate_planted(300, 120, 12, np.random.default_rng(0))
    for u in range(300):
        cats = set(inter.item_cat[inter.item[inter.user == u]].tolist())
        assert 2 <= len(planted[u]) <= 3 and len(set(planted[u])) == len(planted[u])  # distinct
        assert cats <= set(planted[u])  # behaviours only from the planted categories
        assert 8 <= int((inter.user == u).sum()) <= 20


def test_routing_weights_are_the_routing_modules(explainer, planted):
    histories = load_histories(explainer, USERS)
    records = explainer.explain(histories, top=3)
    iacn = explainer.iacn
    for h, record in zip(histories, records):
        items = h.items[-explainer.history_length:]
        ids = torch.tensor([[explainer.item_index[t] for t in items]])
        lengths = torch.tensor([len(items)])
        with torch.no_grad():  # the routing module called directly, on E_aux rows looked up by hand
            _, mask, weights = iacn.routing(iacn.aux_item_embedding.weight[ids], length_mask(lengths, ids.shape[1]),
                                            interest_counts(lengths, iacn.max_interests))
        k_u = int(mask.sum())
        assert record["num_interests"] == k_u == min(4, max(1, (len(items) - 1).bit_length()))
        from_json = torch.tensor([i["routing_weights"] for i in record["interests"]]).t()  # [n, K_u]
        # float32 on both sides, but the explainer routes a padded batch of users and this one row alone: their
        # rounding differs by ~1e-5 after 5 iterations at scale 5 (a wrong user or position differs by > 0.01)
        assert torch.allclose(from_json, weights[0, :, :k_u], atol=1e-4)
        assert torch.allclose(from_json.sum(-1), torch.ones(len(items)), atol=1e-5)
        assert [b["item"] for b in record["behaviours"]] == items
        for interest in record["interests"]:  # each behaviour is assigned to its largest weight
            assert all(weights[0, i].argmax() == interest["interest"] for i in interest["behaviours_assigned"])


def test_r_score_attention_and_nearest_items_by_hand(explainer):
    histories = load_histories(explainer, USERS)
    records = explainer.explain(histories, candidate="i5", top=5)
    encoded = explainer.encode(histories, candidate="i5")
    with torch.no_grad():
        interests, mask = explainer.iacn.interests(encoded.interaction)  # [B, K, h], [B, K]
        table = explainer.iacn.aux_item_embedding.weight.detach()  # E_aux [N, h]
        probability = explainer.model.predict(encoded.interaction)
    c_t = table[explainer.item_index["i5"]]
    power = explainer.iacn.attention.power
    for b, record in enumerate(records):
        k_u = int(mask[b].sum())
        by_hand = [float(interests[b, k] @ c_t) for k in range(k_u)]  # c_tᵀ i_u^k
        candidate = record["candidate"]
        assert candidate["r_score"] == pytest.approx(max(by_hand), abs=1e-5)
        assert candidate["interest_scores"] == pytest.approx(by_hand, abs=1e-5)
        attention = torch.softmax(torch.tensor(by_hand) ** power, 0)
        assert candidate["attention_weights"] == pytest.approx(attention.tolist(), abs=1e-5)
        assert candidate["click_probability"] == pytest.approx(float(probability[b]), abs=1e-6)
        for k, interest in enumerate(record["interests"]):
            scores = [(float(interests[b, k] @ table[i]), i) for i in range(1, len(table))]
            best = sorted(scores, key=lambda p: -p[0])[:5]
            assert [t["item"] for t in interest["top_items"]] == [explainer.item_tokens[i] for _, i in best]
            assert [t["score"] for t in interest["top_items"]] == pytest.approx([s for s, _ in best], abs=1e-5)
    # the catalogue scores are R_score of every item
    scores = explainer.catalogue_scores(encoded.interaction, item_batch=7)
    by_hand = (interests @ table.t()).masked_fill(~mask.unsqueeze(-1), float("-inf")).max(1).values
    assert torch.allclose(scores[:, 1:], by_hand[:, 1:], atol=1e-5) and torch.all(scores[:, 0] == float("-inf"))


def test_retrieval_is_a_full_sort(explainer):
    histories = load_histories(explainer, USERS)
    n_items = explainer.schema.num_items
    ranked = explainer.retrieve(histories, top=n_items, user_batch=3, item_batch=11)
    with torch.no_grad():
        encoded = explainer.encode(histories)
        interests, mask = explainer.iacn.interests(encoded.interaction)
        table = explainer.iacn.aux_item_embedding.weight.detach()
    for b, (h, record) in enumerate(zip(histories, ranked)):
        seen = {explainer.item_index[t] for t in h.items}
        scores = {}
        for i in range(1, n_items):
            if i not in seen:
                scores[i] = max(float(interests[b, k] @ table[i]) for k in range(int(mask[b].sum())))
        full_sort = sorted(scores, key=lambda i: (-scores[i], i))
        assert [r["item"] for r in record["items"]] == [explainer.item_tokens[i] for i in full_sort]
        assert [r["score"] for r in record["items"]] == pytest.approx([scores[i] for i in full_sort], abs=1e-5)
    kept = explainer.retrieve(histories[:1], top=n_items, exclude_history=False)[0]["items"]
    assert {r["item"] for r in kept} >= set(histories[0].items)
    # ties keep the lower id: the order of a stable full sort
    assert rank_items(torch.tensor([[0.0, 1.0, 1.0, 0.5, 1.0]]), 4).tolist() == [[1, 2, 4, 3]]


def test_padding_invariance(explainer):
    histories = load_histories(explainer, USERS)
    x = explainer.encode(histories).interaction
    s = explainer.schema
    history, lengths = x[s.history_item_field], x[s.history_length_field]
    assert torch.any(lengths < history.shape[1])  # some rows are padded
    padded = ~length_mask(lengths, history.shape[1])
    garbage = history.clone()
    garbage[padded] = torch.randint(1, s.num_items, (int(padded.sum()),))
    noisy = type(x)({**{k: x[k] for k in x.interaction}, s.history_item_field: garbage})
    with torch.no_grad():
        clean, dirty = explainer.iacn.form_interests(x), explainer.iacn.form_interests(noisy)
    assert torch.equal(clean.routing_weights, dirty.routing_weights) and torch.equal(clean.vectors, dirty.vectors)
    assert torch.equal(explainer.catalogue_scores(x), explainer.catalogue_scores(noisy))
    # a given history (the same items) explains exactly as the dataset's
    given = load_histories(explainer, ["u1"], history=" ".join(histories[1].items))
    assert explainer.explain(given)[0]["interests"] == explainer.explain(histories[1:2])[0]["interests"]


def test_planted_interests_are_recovered(planted):
    """Labelled by the majority category of their behaviours, the trained model's interests match the planted
    categories far better than an untrained model's or random routing weights do."""
    from recbole_iacn.explain.planted import planted_recovery, positive_test_rows

    _, root, prepared, loaded = planted
    result = planted_recovery(loaded, positive_test_rows(prepared), root / PLANTED / f"{PLANTED}.planted.json")
    trained, untrained, random = result["trained routing"], result["untrained routing"], result["random routing"]
    assert trained["users"] > 500
    assert trained["purity"] > max(untrained["purity"], random["purity"]) + 0.08
    assert trained["coverage"] > max(untrained["coverage"], random["coverage"]) + 0.03
    score = result["trained score"]
    assert score["purity"] > 0.85 and score["purity"] > result["untrained score"]["purity"] + 0.15


# ---------------------------------------------------------------------------- the command line
def test_command_line_writes_json_and_pictures(planted, tmp_path, capsys):
    model_file = planted[0]
    out = tmp_path / "explained"
    assert main(["--model-file", model_file, "--users", "u1", "u7", "--candidate", "i5", "--top", "4",
                 "--out", str(out)]) == 0
    document = json.loads((out / "explanations.json").read_text(encoding="utf-8"))
    assert [r["user"] for r in document["users"]] == ["u1", "u7"]
    assert all(len(i["top_items"]) == 4 for r in document["users"] for i in r["interests"])
    assert (out / "user_u1.png").stat().st_size > 10_000 and (out / "user_u7.png").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
    printed = capsys.readouterr().out
    assert "wrote" in printed and "moved" in printed and "E_aux nearest neighbour" in printed
    assert main(["--model-file", model_file, "--users", "u1", "--retrieve", "--top", "7"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert len(ranked["users"][0]["items"]) == 7 and ranked["kind"] == "retrieval"
    python_api = retrieve(model_file, ["u1"], top=7)
    assert python_api["users"][0]["items"] == ranked["users"][0]["items"]


def _non_iacn_checkpoint(planted, path):
    from recbole_iacn.checkpoint import CHECKPOINT_FORMAT
    from recbole_iacn.model.widedeep import WideDeep

    loaded = planted[3]
    state = {"format": CHECKPOINT_FORMAT, "model": "WideDeep", "config": dict(loaded.config),
             "schema": loaded.schema.to_dict(), "state_dict": WideDeep(loaded.config, loaded.schema).state_dict()}
    state["config"].pop("device")
    torch.save(state, path)
    return str(path)


@pytest.mark.parametrize(
    "case, extra, message",
    [
        ("unknown user", ["--users", "nobody"], "nobody"),
        ("unknown candidate", ["--users", "u1", "--candidate", "no-such-item"], "no-such-item"),
        ("unknown history item", ["--users", "u1", "--history", "i1 zzz"], "zzz"),
        ("two users, one history", ["--users", "u1", "u2", "--history", "i1 i2"], "one user"),
        ("missing dataset", ["--users", "u1", "--data_path", "/nonexistent"], "--history"),
        ("non-positive top", ["--users", "u1", "--top", "0"], "top"),
        ("missing checkpoint", ["--model-file", "/nonexistent.pth", "--users", "u1"], "does not exist"),
        ("non-IaCN checkpoint", ["--model-file", "NON_IACN", "--users", "u1"], "no IaCN component"),
    ],
)
def test_command_line_bad_input(planted, tmp_path, capsys, case, extra, message):
    args = ["--model-file", planted[0], *extra]
    if "NON_IACN" in args:
        args[args.index("NON_IACN")] = _non_iacn_checkpoint(planted, tmp_path / "widedeep.pth")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert err.strip().count("\n") == 0  # one paragraph


def test_missing_matplotlib_is_a_message(planted, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert main(["--model-file", planted[0], "--users", "u1", "--out", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "recbole-iacn[plots]" in err and "--no-plots" in err and "Traceback" not in err
    assert main(["--model-file", planted[0], "--users", "u1", "--out", str(tmp_path), "--no-plots"]) == 0
    assert (tmp_path / "explanations.json").is_file() and not list(tmp_path.glob("*.png"))


def test_command_line_unrelated_import_error_propagates(planted, tmp_path, monkeypatch):
    import recbole_iacn.explain as api

    def broken(*args, **kwargs):
        raise ImportError("bug")

    monkeypatch.setattr(api, "explain", broken)
    with pytest.raises(ImportError, match="^bug$"):  # a bug, not exit 3
        main(["--model-file", planted[0], "--users", "u1", "--out", str(tmp_path)])


def test_module_entry_point(tmp_path):
    done = subprocess.run([sys.executable, "-m", "recbole_iacn.explain", "--model-file", str(tmp_path / "x.pth"),
                           "--users", "1"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "does not exist" in done.stderr and "Traceback" not in done.stderr


def test_retrieval_benchmark_smoke(tmp_path):
    """Pop, BPR and the capsule retriever on one tiny leave-one-out split: same test items, metrics in range."""
    import pandas as pd

    from recbole_iacn.data import default_ml100k_source

    folder, name = default_ml100k_source()
    frame = pd.read_csv(Path(folder) / f"{name}.inter", sep="\t", dtype=str)
    users = sorted(frame["user_id:token"].unique(), key=int)[:40]
    (tmp_path / "data" / "tiny").mkdir(parents=True)
    frame[frame["user_id:token"].isin(users)].to_csv(tmp_path / "data" / "tiny" / "tiny.inter", sep="\t", index=False)
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "retrieval.py"), "--datasets", "tiny", "absent",
                           "--data_path", str(tmp_path / "data"), "--epochs", "1", "--baseline-epochs", "1", "--threads",
                           "1", "--device", "cpu", "--out", str(tmp_path / "out"), "--config_dict", "embedding_size=4",
                           "iacn_embedding_size=4"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = pd.read_csv(tmp_path / "out" / "retrieval.csv", comment="#")
    assert list(table["model"]) == ["Pop", "BPR", "DIN_IaCN", "DIN_IaCN untrained"] and table["error"].isna().all()
    for key in ("hit@10", "ndcg@10", "recall@50"):
        assert table[key].between(0, 1).all()
    assert (table["hit@10"] <= table["recall@50"] + 1e-12).all()  # one test item per user: Recall@50 >= HR@10
    text = (tmp_path / "out" / "retrieval.md").read_text(encoding="utf-8")
    assert "Test users: 40; users whose test item differs between RecBole's split and the CTR view: 0;" in text
    assert "## absent" not in text and text.startswith("# Retrieval") and "- commit: " in text


def test_nearest_categories_by_hand(explainer):
    record = explainer.explain(load_histories(explainer, ["u3"]), top=30)[0]
    with torch.no_grad():
        interests, _ = explainer.iacn.interests(explainer.encode(load_histories(explainer, ["u3"])).interaction)
        table = explainer.iacn.aux_item_embedding.weight.detach()
    categories = torch.tensor(explainer.schema.item_categories)
    for k, interest in enumerate(record["interests"]):
        by_hand = {}
        for c in categories[1:].unique().tolist():  # the mean E_aux row of the category's items
            by_hand[explainer.category_tokens[c]] = float(table[1:][categories[1:] == c].mean(0) @ interests[0, k])
        names = [t["category"] for t in interest["top_categories"]]
        assert "[PAD]" not in names and names == sorted(by_hand, key=lambda n: -by_hand[n])[:30]
        assert [t["score"] for t in interest["top_categories"]] == pytest.approx([by_hand[n] for n in names], abs=1e-5)


def test_diagnostics_say_whether_the_routing_follows_content(explainer, planted):
    """Each interest's purity and each user's moved share by hand from the record; the document's figures
    are the means over the explained users; E_aux's neighbour agreement is above chance on planted data."""
    from recbole_iacn.explain import explain
    from recbole_iacn.explain.diagnostics import moved

    document = explain(planted[0], USERS, plots=False)
    records, diagnostics = document["users"], document["diagnostics"]
    counted_all = moved_all = 0
    encoded = explainer.encode(load_histories(explainer, USERS))
    formed = explainer.iacn.form_interests(encoded.interaction)
    s = explainer.schema
    mask = length_mask(encoded.interaction[s.history_length_field], formed.routing_weights.shape[1])
    start = explainer.iacn.routing.start_weights(formed.routing_weights.shape[1], formed.mask)
    was_moved, counted = moved(formed.routing_weights, start, mask, formed.mask)
    for b, record in enumerate(records):
        weights = torch.tensor([i["routing_weights"] for i in record["interests"]]).t()
        categories = [x["category"] for x in record["behaviours"]]
        for k, interest in enumerate(record["interests"]):
            members = [categories[i] for i in range(len(categories)) if int(weights[i].argmax()) == k]
            want = members.count(interest["label"]) / len(members) if members else None
            assert interest["purity"] == (None if want is None else pytest.approx(want, abs=1e-6))
        assert record["routing"]["behaviours_with_a_choice"] == int(counted[b].sum())
        counted_all += int(counted[b].sum())
        moved_all += int(was_moved[b].sum())
    assert diagnostics["behaviours_with_a_choice"] == counted_all
    assert diagnostics["moved_share"] == pytest.approx(moved_all / counted_all, abs=1e-6)
    assert diagnostics["routing_scale"] == explainer.iacn.routing.scale
    assert diagnostics["e_aux_neighbour_category_agreement"] > 2 * diagnostics["e_aux_neighbour_category_chance"]
    assert diagnostics["behaviour_norm_mean"] > 0
