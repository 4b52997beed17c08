"""The table of sources (recbole_iacn.data.sources): one entry per source drives `python -m recbole_iacn.data`,
the automatic build of a raw RecBole dataset and the package's exports; build options are keyword-only."""

from __future__ import annotations

import argparse
import inspect
import json

import pytest

import recbole_iacn.data as data
from recbole_iacn.data import prepare
from recbole_iacn.data.sources import SHARED_OPTIONS, SOURCES, for_raw_dataset

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def _commands():
    from recbole_iacn.data.__main__ import make_parser

    (subcommands,) = [a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return subcommands.choices


def _raw_amazon(tmp_path, name="amazon-toy", users=40, items=6):
    """RecBole-style Amazon ratings: every user rates every item, so the 5-core keeps them all."""
    src = tmp_path / name
    src.mkdir()
    rows = [f"u{u}\ti{i}\t5.0\t{1000 + 10 * i + u}" for u in range(users) for i in range(items)]
    (src / f"{name}.inter").write_text(INTER_HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return src


def test_every_source_is_a_command_and_an_export():
    commands = _commands()
    assert list(commands) == [s.command for s in SOURCES]
    assert {"amazon", "dien", "recbole", "recbole-amazon", "movielens", "synthetic"} == set(commands)
    for source in SOURCES:
        assert set(source.exports) <= set(data.__all__)
        assert getattr(data, source.build) is source.function()
    assert data.build_from_recbole_amazon.__module__ == "recbole_iacn.data.recbole_amazon"


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.command)
def test_build_options_are_keyword_only_and_the_command_line_fills_them(source):
    parameters = inspect.signature(source.function()).parameters
    names = list(parameters)
    after_name = names[names.index("name") + 1:]
    assert after_name and all(parameters[n].kind is inspect.Parameter.KEYWORD_ONLY for n in after_name), names
    assert set(source.shared_options) <= set(after_name)
    assert {o.param for o in source.options} <= set(parameters)
    if source.protocol is not None:
        assert source.shared_options == SHARED_OPTIONS
        assert parameters["protocol"].default == source.protocol
    dests = {a.dest for a in _commands()[source.command]._actions}
    assert set(source.shared_options) | {o.param for o in source.options} <= dests
    assert not (set(SHARED_OPTIONS) - set(source.shared_options)) & dests


def test_planted_data_options_are_keyword_only_too():
    parameters = inspect.signature(data.build_planted).parameters
    names = list(parameters)
    assert all(parameters[n].kind is inspect.Parameter.KEYWORD_ONLY for n in names[names.index("name") + 1:])


def test_a_positional_option_is_refused(tmp_path):
    with pytest.raises(TypeError):
        data.build_from_atomic(tmp_path, "x", tmp_path / "out", "x", "dense")


def test_the_automatic_build_takes_the_source_the_table_names(tmp_path):
    """amazon-* raw datasets: RecBole's Amazon builder (DIEN protocol, 5-core); any other: the atomic one."""
    assert for_raw_dataset("amazon-books").command == "recbole-amazon"
    assert for_raw_dataset("ml-100k").command == "recbole" == for_raw_dataset("amazonia").command
    assert (prepare.default_protocol("amazon-books"), prepare.default_protocol("ml-1m")) == ("dien", "dense")
    wanted = {"protocol": "dien", "seed": 1, "max_history": None, "neg_sampling": "uniform", "fields": None}
    for name, kind in (("amazon-toy", "recbole-amazon-atomic"), ("toy", "recbole-atomic")):
        src = _raw_amazon(tmp_path, name)
        summary = prepare.build_view((str(src), name), tmp_path / name / "ctr", name, dict(wanted))
        info = json.loads((tmp_path / name / "ctr" / f"{name}.build.json").read_text(encoding="utf-8"))
        assert summary["source"]["kind"] == info["source"]["kind"] == kind
    with pytest.raises(data.DataFormatError, match="2018"):
        for_raw_dataset("amazon-books-18").check_raw_name("amazon-books-18")


def test_the_recbole_amazon_command_builds_what_the_run_path_builds(tmp_path, capsys):
    """RecBole's Amazon builder was missing from the command line."""
    from recbole_iacn.data.__main__ import main

    src = _raw_amazon(tmp_path)
    status = main(["recbole-amazon", "--source-dir", str(src), "--name", "amazon-toy", "--out", str(tmp_path / "out"),
                   "--seed", "1", "--neg-sampling", "uniform", "--max-history", "0"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "amazon-toy" in out
    auto = prepare.build_view((str(src), "amazon-toy"), tmp_path / "auto", "amazon-toy",
                              {"protocol": "dien", "seed": 1, "max_history": None, "neg_sampling": "uniform",
                               "fields": None})
    built = json.loads((tmp_path / "out" / "amazon-toy" / "amazon-toy.build.json").read_text(encoding="utf-8"))
    assert built["files"] == auto["files"] and built["source"]["kind"] == "recbole-amazon-atomic"
    assert main(["recbole-amazon", "--source-dir", str(tmp_path / "none"), "--name", "amazon-x",
                 "--out", str(tmp_path / "out")]) == 2
    assert main(["recbole-amazon", "--source-dir", str(src), "--source-name", "amazon-books-18", "--name", "x",
                 "--out", str(tmp_path / "out")]) == 2
    assert "2018" in capsys.readouterr().err
