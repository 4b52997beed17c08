"""Command line: success output, and one-paragraph errors with exit status 2."""

import gzip
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "recbole_iacn.data", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_synthetic_cli(tmp_path):
    proc = run_cli("synthetic", "--scale", "0.001", "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "SYNTHETIC" in proc.stdout
    assert (tmp_path / "synthetic-books" / "synthetic-books.build.json").is_file()


def test_recbole_cli_default_ml100k(tmp_path):
    proc = run_cli("recbole", "--name", "ml-100k", "--max-history", "20", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "samples: 198114" in proc.stdout
    assert (tmp_path / "dataset" / "ml-100k" / "ml-100k.test.inter").is_file()


def test_missing_file_exit_2(tmp_path):
    proc = run_cli("amazon", "--reviews", "nope.json.gz", "--meta", "nope2.json.gz", "--name", "a", cwd=tmp_path)
    assert proc.returncode == 2
    assert "nope.json.gz" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_malformed_line_exit_2(tmp_path):
    reviews = tmp_path / "reviews.json.gz"
    with gzip.open(reviews, "wt", encoding="utf-8") as handle:
        handle.write("{'reviewerID': 'A1', 'asin': 'B1', 'unixReviewTime': 1}\n{'reviewerID': 'A1'}\n")
    meta = tmp_path / "meta.json"
    meta.write_text("{'asin': 'B1', 'categories': [['Books']]}\n", encoding="utf-8")
    proc = run_cli("amazon", "--reviews", str(reviews), "--meta", str(meta), "--name", "a",
                   "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "reviews.json.gz:2:" in proc.stderr and "'asin'" in proc.stderr
    assert "Traceback" not in proc.stderr
