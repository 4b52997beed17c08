"""The package's import layering (setup.cfg, ``[importlinter]``): imports only point down, checked with
import-linter over this checkout (function-level imports count; every module sits in a layer)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is in the test extra")

REPO_ROOT = Path(__file__).resolve().parent.parent

LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))")


def lint(config: Path) -> subprocess.CompletedProcess:
    """import-linter with ``config``, on this checkout's recbole_iacn (not an installed copy)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", LINT, str(config)], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_imports_follow_the_layers_contract():
    done = lint(REPO_ROOT / "setup.cfg")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_an_upward_import_breaks_a_contract(tmp_path):
    """The check can fail: with the layers turned upside down, cli's imports of the package point up."""
    config = tmp_path / "upside_down.cfg"
    config.write_text(textwrap.dedent("""\
        [importlinter]
        root_package = recbole_iacn

        [importlinter:contract:upside-down]
        name = upside down
        type = layers
        containers =
            recbole_iacn
        layers =
            errors
            cli
        """))
    done = lint(config)
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]
    assert "recbole_iacn.cli -> recbole_iacn.errors" in done.stdout
