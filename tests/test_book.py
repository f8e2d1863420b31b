"""The book's structure: config, table of contents, notebooks stored clean, and an HTML build.
(The notebooks themselves are executed and checked by nbval: `pytest --nbval-lax --nbval-current-env book`.)"""
import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
# the repository's home, named once: in pyproject.toml
REPOSITORY = re.search(r'^Repository = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for c in toc["chapters"]]


def test_config_and_toc():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["only_build_toc_files"] is True
    assert config["execute"]["execute_notebooks"] == "cache"
    assert config["launch_buttons"]["colab_url"]
    files = toc_files()
    for name in files:
        assert any((ROOT / f"{name}{ext}").exists() for ext in (".md", ".ipynb")), name
    assert {f"book/{nb.stem}" for nb in NOTEBOOKS} <= set(files), "every notebook is a chapter"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean_and_parameterised(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "stored without outputs"
    assert f"git+{REPOSITORY}" in code[0].source and "find_spec(\"nexttok\")" in code[0].source, \
        "the first code cell installs nexttok from the repository when it is missing"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "every chapter has one papermill parameters cell"
    # a claim is asserted in the cell, or by a named function of nexttok.claims (which raises AssertionError)
    assert any(re.search(r"^\s*(assert |claims\.\w+\()", c.source, re.M) for c in code), \
        "the chapter asserts its claims"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_is_numbered_and_captioned(path):
    """A cell that draws a figure carries its caption and label in its metadata (mystnb.figure), so the page
    shows it as a numbered figure with a caption."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and re.search(r"plt\.subplots\(|draw_graph\(", cell.source) \
                and "if paper_runs:" not in cell.source:  # (a figure only once paper-scale runs exist)
            figure = cell.metadata.get("mystnb", {}).get("figure", {})
            assert figure.get("caption") and figure.get("name", "").startswith("fig-"), cell.source[:120]
            # a cell that trains shows a progress bar, a second output under the figure's label: a duplicate target
            # that fails the build wherever the run is not cached yet (a fresh clone)
            assert "get_run(" not in cell.source, f"a figure cell trains; train in the cell before it: {cell.source[:120]}"


@pytest.mark.slow
def test_book_builds_to_html_without_warnings(tmp_path):
    """The pages build with -W (execution off here: nbval executes the notebooks)."""
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "book", tmp_path / "book", ignore=shutil.ignore_patterns("runs", "_build"))
    shutil.copytree(ROOT / "_static", tmp_path / "_static")
    shutil.copytree(ROOT / "nexttok", tmp_path / "nexttok")  # the pages show its code (literalinclude)
    # a virtual environment inside the repository (as `make` makes one) holds .md files that are no pages
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "LICENSE.md").write_text("Text before a heading\n\n### A deep heading\n")
    config = (tmp_path / "_config.yml").read_text().replace("execute_notebooks: cache", "execute_notebooks: \"off\"")
    (tmp_path / "_config.yml").write_text(config)
    jb = Path(sys.executable).parent / "jupyter-book"
    r = subprocess.run([str(jb), "build", str(tmp_path), "-W", "-n", "--keep-going"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    for name in toc_files():
        assert (html / f"{name}.html").exists(), name
    assert (html / "_static" / "wrap-code.css").exists(), "code cells wrap instead of scrolling sideways"


def test_the_repository_is_named_in_one_place_and_everything_agrees():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == REPOSITORY
    assert REPOSITORY in (ROOT / "README.md").read_text()
    for nb in NOTEBOOKS:
        urls = set(re.findall(r"git\+(https?://[^\s\"'\\]+)", (nb).read_text()))  # the JSON escapes quotes
        assert urls == {REPOSITORY}, f"{nb.name} installs from {urls}"


@pytest.mark.slow
def test_execute_book_caches_the_chapters_that_run_and_names_the_one_that_fails(tmp_path):
    """`make book` executes the chapters side by side into jupyter-book's cache (scripts/execute_book.py)."""
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n- file: book/good\n- file: book/bad\n"
                                       "- file: book/forward_fails\n")
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    for name, code in (("good", "x = 1\nassert x == 1"), ("bad", "x = 1\nassert x == 2, 'one is not two'"),
                       ("forward_fails", "y = 2")):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name}"), nbformat.v4.new_code_cell(code)])
        nbformat.write(nb, tmp_path / "book" / f"{name}.ipynb")
    script = [sys.executable, str(ROOT / "scripts" / "execute_book.py"), "--root", str(tmp_path), "--jobs", "2"]
    r = subprocess.run(script, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and f"FAILED {tmp_path / 'book' / 'bad.ipynb'}" in r.stderr and "one is not two" in r.stderr
    # the chapter that trains the run other chapters read starts first; the rest keep their book order
    assert "executing 3 of 3 chapters, 2 at a time, in this order: forward_fails, good, bad" in r.stdout
    assert "executed 2 chapter(s), 1 failed, 0 already cached" in r.stdout
    from jupyter_cache import get_cache
    cache = get_cache(str(tmp_path / "_build" / ".jupyter_cache"))
    cached = {Path(rec.uri).name for rec in cache.list_project_records() if cache.get_cached_project_nb(rec.uri)}
    assert cached == {"good.ipynb", "forward_fails.ipynb"}, \
        "the chapters that ran are cached for jupyter-book; the failed one is not"
    again = subprocess.run(script, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "executed 0 chapter(s), 1 failed, 2 already cached" in again.stdout
    missing = subprocess.run(script[:2] + ["--root", str(tmp_path / "book")], capture_output=True, text=True)
    assert missing.returncode == 2 and "has no _toc.yml" in missing.stderr


@pytest.mark.slow
def test_run_shapes_passes_parameters_to_papermill_and_logs_each_chapter(tmp_path):
    """`make shapes` (scripts/run_shapes.py): a chapter re-executed by papermill at a shape, with a parameter set
    the way a precondition's fix says, logged with its return code; a malformed shape is refused before anything."""
    # a one-cell chapter with the book's parameters: the real chapters' cost is not what this tests
    book = tmp_path / "book"
    book.mkdir()
    parameters = nbformat.v4.new_code_cell("deg = 2\npath_len = 5\nnum_nodes = 20\nseed = 0\nlr = None",
                                           metadata={"tags": ["parameters"]})
    nbformat.write(nbformat.v4.new_notebook(cells=[parameters, nbformat.v4.new_code_cell(  # 3 s: past --timeout 1
        "import time\ntime.sleep(3)\nassert num_nodes >= 1 + deg * (path_len - 1)")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}),
        book / "task.ipynb")
    script = [sys.executable, str(ROOT / "scripts" / "run_shapes.py"), "--out", str(tmp_path), "--book", str(book)]
    r = subprocess.run(script + ["--shapes", "2,4,12", "--chapters", "task", "--param", "lr", "2e-3"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = list(csv.DictReader(open(tmp_path / "shapes.csv")))
    assert [(row["chapter"], row["deg"], row["path_len"], row["num_nodes"], row["params"], row["returncode"])
            for row in rows] == [("task", "2", "4", "12", "lr=2e-3", "0")]
    executed = nbformat.read(tmp_path / "G2-4-N12-s0-lr=2e-3" / "task.ipynb", as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "path_len = 4" in injected.source and "lr = 0.002" in injected.source
    # a cell past --timeout fails its chapter (a kernel that stops answering must not stall the queue)
    slow = subprocess.run(script + ["--out", str(tmp_path / "slow"), "--shapes", "2,4,12", "--chapters", "task",
                                    "--timeout", "1"], capture_output=True, text=True, timeout=300)
    assert slow.returncode == 1 and "timed out" in slow.stdout.lower(), slow.stdout + slow.stderr
    bad = subprocess.run(script + ["--shapes", "2,4"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "is not deg,path_len,num_nodes" in bad.stderr
    unknown = subprocess.run(script + ["--shapes", "2,4,12", "--chapters", "revrese"], capture_output=True, text=True,
                             timeout=60)
    assert unknown.returncode == 2 and f"no chapter revrese in {book}/" in unknown.stderr
    assert not (tmp_path / "G2-4-N12-s0").exists()


def test_the_chapters_make_book_starts_first_are_in_the_toc():
    """scripts/execute_book.py names the chapters that train, to start them first: a renamed chapter would silently
    lose its place (and `make book` its minute)."""
    execute_book = load_script("execute_book")
    chapters = {nb.stem for nb in execute_book.toc_notebooks(ROOT)}
    assert set(execute_book.START_FIRST) <= chapters, set(execute_book.START_FIRST) - chapters
