"""A chapter opened alone, as on Colab: the notebook by itself in an empty folder, and nexttok installed with pip
from a git URL (here the file:// URL of a clone of this repository's last commit). The chapters that read
committed results must find them in the installed package and pass."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the slow tier: `make test` runs it, `make test-fast` does not

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """nexttok installed by pip from a git URL into a folder of its own (its dependencies come from this
    environment), the way the chapters' first cell installs it. (A bare URL: pip 23, which a fresh venv of
    Python 3.11 has, cannot parse a `name @ git+file://` requirement.)"""
    base = tmp_path_factory.mktemp("standalone")
    clone = base / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    site = base / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                        f"git+file://{clone}"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (site / "nexttok" / "results" / "README.md").exists(), "the committed results ship with the package"
    return site


@pytest.mark.parametrize("chapter", ["mamba", "paper"])
def test_a_chapter_that_reads_committed_results_runs_alone(installed, tmp_path, chapter):
    if not (ROOT / "nexttok" / "results" / "grid.csv").exists():
        pytest.fail("no committed results to read")
    folder = tmp_path / "empty"
    folder.mkdir()
    shutil.copy(ROOT / "book" / f"{chapter}.ipynb", folder)
    env = {**os.environ, "PYTHONPATH": str(installed), "NEXTTOK_RUNS": str(folder / "runs")}
    r = subprocess.run([sys.executable, "-m", "papermill", f"{chapter}.ipynb", "out.ipynb", "--cwd", str(folder)],
                       cwd=folder, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = (folder / "out.ipynb").read_text()
    assert str(installed / "nexttok") in subprocess.run(
        [sys.executable, "-c", "import nexttok; print(nexttok.__file__)"], env=env, capture_output=True, text=True,
        cwd=folder).stdout, "the kernel imports the installed copy, not this checkout"
    assert "Traceback" not in out
