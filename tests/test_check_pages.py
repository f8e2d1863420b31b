"""scripts/check_pages.py on a hand-made site: a good image passes; a missing image, a blank image, an
empty figure and a widget without its saved state fail. The browser part runs in the system's headless
Chromium under Playwright: skipped when none is installed (`apt-get install chromium`), except under CI
(CI set), where a missing Chromium fails, so that CI proves the check drives it."""
import io
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser

from conftest import load_script

pytestmark = pytest.mark.slow  # the slow tier: `make test` runs it, `make test-fast` does not

ROOT = Path(__file__).resolve().parents[1]
check_pages = load_script("check_pages")

VIEW = '<script type="application/vnd.jupyter.widget-view+json">{"version_major": 2, "model_id": "%s"}</script>'
STATE = '<script type="application/vnd.jupyter.widget-state+json">%s</script>'


def installed_chromium() -> str:
    try:
        return check_pages.find_chromium(install=False)
    except check_pages.CheckError:
        if os.environ.get("CI"):
            pytest.fail("CI is set but no Chromium is installed (.ci/run installs Debian's chromium)")
        pytest.skip("no Chromium installed")


def page(body: str) -> str:
    return f"<!doctype html><html><head><title>t</title></head><body>{body}</body></html>"


def png(path: Path, two_colours: bool):
    im = Image.new("RGB", (40, 30), "white")
    if two_colours:
        im.paste((200, 30, 30), (5, 5, 20, 20))
    im.save(path)


@pytest.fixture
def site(tmp_path):
    (tmp_path / "_images").mkdir()
    png(tmp_path / "_images" / "good.png", True)
    png(tmp_path / "_images" / "blank.png", False)
    state = json.dumps({"version_major": 2, "state": {"abc": {"model_name": "VBoxModel", "state": {}}}})
    pages = {
        "good.html": '<figure><img src="_images/good.png" alt="a plot"><figcaption>ok</figcaption></figure>'
                     + STATE % state + VIEW % "abc",
        "missing.html": '<p>text</p><img src="_images/missing.png" alt="gone">',
        "blank.html": '<div class="cell_output"><img src="_images/blank.png"></div>',
        "empty_figure.html": '<figure><figcaption>a caption and nothing else</figcaption></figure>'
                             '<div class="cell_output"><pre>&lt;Figure size 640x480 with 0 Axes&gt;</pre></div>',
        "widget.html": '<img src="_images/good.png">' + STATE % state + VIEW % "not-saved",
    }
    for name, body in pages.items():
        (tmp_path / name).write_text(page(body))
    return tmp_path


def test_toc_pages_lists_every_file(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\nparts:\n  - chapters:\n    - file: book/a\n"
                   "      sections:\n      - file: book/b\n")
    assert check_pages.toc_pages(toc) == ["book/intro.html", "book/a.html", "book/b.html"]
    assert check_pages.toc_pages(ROOT / "_toc.yml")[0] == "book/intro.html"


def test_widget_view_needs_its_saved_state(site):
    assert check_pages.widget_problems((site / "good.html").read_text()) == []
    assert check_pages.widget_problems((site / "widget.html").read_text()) == [
        "widget view not-saved has no saved widget state on the page"]


def test_missing_book_is_a_clear_error(tmp_path):
    with pytest.raises(check_pages.CheckError, match="no built book"):
        check_pages.check_site(tmp_path / "nothing", ["a.html"])
    assert check_pages.main([str(tmp_path / "nothing"), "--pages", "a.html"]) == 2


def test_playwright_drives_the_system_chromium():
    """The browser Playwright runs is the installed one (same version as `chromium --version` prints), not
    one of Playwright's own downloads."""
    chromium = installed_chromium()
    printed = subprocess.run([chromium, "--version"], capture_output=True, text=True, check=True).stdout
    version = re.search(r"\b\d+\.\d+\.\d+\.\d+\b", printed).group()  # "Chromium 156.0.8078.108 built on ..."
    with check_pages.launch(chromium) as browser:
        assert isinstance(browser, Browser)
        assert browser.version == version, (browser.version, printed)


def test_chromium_passes_good_pages_and_fails_broken_ones(site):
    chromium = installed_chromium()
    out = io.StringIO()
    names = ["good.html", "missing.html", "blank.html", "empty_figure.html", "widget.html"]
    failed = check_pages.check_site(site, names, screenshots=site / "shots", chromium=chromium, out=out)
    report = out.getvalue()
    assert failed == 4, report
    blocks = {line.split()[1]: line for line in report.splitlines() if line.startswith(("ok", "FAIL"))}
    assert blocks["good.html"].startswith("ok") and "1 images" in blocks["good.html"], report
    for name in names[1:]:
        assert blocks[name].startswith("FAIL"), report
    assert "404 for _images/missing.png" in report and "image did not load: _images/missing.png" in report
    assert "image is blank (one colour): _images/blank.png" in report
    assert "figure with no image: <figure><figcaption>a caption" in report
    assert "figure output that was never drawn: <Figure size 640x480 with 0 Axes>" in report
    assert "widget view not-saved has no saved widget state" in report
    shot = Image.open(site / "shots" / "good.png")
    assert shot.width == check_pages.WIDTH and len(list((site / "shots").glob("*.png"))) == len(names)


def test_a_figure_drawn_too_wide_for_the_page_is_a_problem():
    """A chapter's figure that the page shrinks below MIN_SCALE has text too small to read (the intro's image,
    drawn at a higher resolution outside a cell, is not held to it)."""
    def found(shown, output=True):
        return {"images": [{"src": "_images/a.png", "url": "", "width": 1300, "height": 400, "blank": False,
                            "shown": shown, "output": output}], "emptyFigures": [], "figureTexts": []}
    assert check_pages._page_problems(found(800)) == [], "62% of its size: legible"
    problems = check_pages._page_problems(found(700))
    assert len(problems) == 1 and "shrunk to 54%" in problems[0] and "_images/a.png" in problems[0]
    assert check_pages._page_problems(found(700, output=False)) == []
