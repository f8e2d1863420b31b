#!/usr/bin/env python3
"""Open every page of the built book in headless Chromium; fail on a missing image or an empty figure.

    python scripts/check_pages.py [_build/html] [--toc _toc.yml] [--screenshots DIR] [--mirror DIR]

The pages are served from a local HTTP server (so a missing file is a real 404) and the system Chromium is
driven by Playwright (its sync API; Playwright's own browsers are never downloaded). A page fails when
  - a request for a local resource (image, script, stylesheet, ...) fails or answers 4xx/5xx;
  - an <img> does not load (naturalWidth 0) or is blank (every pixel the same colour);
  - a <figure> holds no image, or a cell output is matplotlib's text for a figure that was never drawn
    ("<Figure size 640x480 with 0 Axes>");
  - a saved ipywidget view names a model whose state is not on the page (the widget would not show).
The check never goes online: every request outside 127.0.0.1 is routed and aborted (and no other name
resolves), so remote scripts (MathJax, the ipywidgets embedder) are counted, not loaded. `--mirror DIR`
answers remote requests from DIR/<host>/<path> when that file exists (e.g. a local copy of the ipywidgets
embedder, to see the widgets render offline).

Chromium: $CHROMIUM, or chromium / chromium-browser / google-chrome on PATH; when none is found and we are
root with apt-get, it installs Debian's `chromium`. Exit status 0 when every page passes, 1 otherwise,
2 on a usage error (e.g. no built book).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from playwright.sync_api import Browser, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1280, 900
# a figure a chapter draws is legible at page width when the page shrinks it to no less than this fraction of
# its drawn size (matplotlib draws text at 10 points; at 60% it is about 6 pixels high on the page)
MIN_SCALE = 0.6
FIGURE_TEXT = r"^<Figure size [\d.]+x[\d.]+ with \d+ Axes>$"

# run in the page once it has loaded: wait for every image, then report images, empty figures and the
# text outputs of figures that were never drawn
PAGE_JS = r"""
(async () => {
  const imgs = [...document.images];
  imgs.forEach(img => { img.loading = "eager"; });
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener("load", done); img.addEventListener("error", done); setTimeout(done, 10000);
  })));
  const blank = img => {  // true when every pixel has the same RGBA value
    const w = Math.max(1, Math.min(img.naturalWidth, 600));
    const h = Math.max(1, Math.round(img.naturalHeight * w / img.naturalWidth));
    const canvas = document.createElement("canvas");
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0, w, h);
    let d;
    try { d = ctx.getImageData(0, 0, w, h).data; } catch (e) { return null; }  // cross-origin: unknown
    for (let i = 4; i < d.length; i++) if (d[i] !== d[i % 4]) return false;
    return true;
  };
  return {
    images: imgs.map(img => ({
      src: (img.getAttribute("src") || "").slice(0, 120), url: img.currentSrc || img.src,
      width: img.naturalWidth, height: img.naturalHeight, blank: img.naturalWidth ? blank(img) : null,
      shown: img.clientWidth, output: !!img.closest(".cell_output"),
    })),
    emptyFigures: [...document.querySelectorAll("figure")]
      .filter(f => !f.querySelector("img, svg, canvas, object, embed, video, iframe"))
      .map(f => f.outerHTML.slice(0, 160)),
    figureTexts: [...document.querySelectorAll(".cell_output pre, .output pre")]
      .map(p => p.textContent.trim()).filter(t => new RegExp(FIGURE_TEXT).test(t)),
    widgetViews: document.querySelectorAll(".jupyter-widgets, .widget-box, .widget-output").length,
  };
})()
""".replace("FIGURE_TEXT", json.dumps(FIGURE_TEXT))


class CheckError(Exception):
    """A usage problem: no built book, no browser."""


# --- the pages -------------------------------------------------------------------------------------


def toc_pages(toc: Path) -> list[str]:
    """The HTML path of every page in a Jupyter Book _toc.yml (root, parts, chapters, sections)."""
    data = yaml.safe_load(toc.read_text())
    files = [data["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in data.items() if k != "root"})
    return [f"{Path(f).with_suffix('')}.html" for f in files]


def widget_problems(html: str) -> list[str]:
    """Saved ipywidget views whose model state is not on the page (they would render as nothing)."""
    views = re.findall(r'<script type="application/vnd\.jupyter\.widget-view\+json">(.*?)</script>', html, re.S)
    states = re.findall(r'<script type="application/vnd\.jupyter\.widget-state\+json">(.*?)</script>', html, re.S)
    models = set()
    for state in states:
        models |= set(json.loads(state).get("state", {}))
    return [f"widget view {json.loads(v)['model_id']} has no saved widget state on the page"
            for v in views if json.loads(v)["model_id"] not in models]


# --- a quiet local web server ----------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """Serve `directory` on 127.0.0.1 (a free port); yield the base URL."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


# --- Chromium, driven by Playwright ---------------------------------------------------------------

# Playwright itself adds --headless, --no-sandbox (so it runs as root), --no-first-run,
# --disable-background-networking, --disable-component-update and --disable-sync; these are the rest. No
# name but 127.0.0.1 resolves, so what the routes below cannot see (the browser's own requests) stays
# offline too.
ARGS = ["--disable-gpu", "--disable-quic", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


def find_chromium(install: bool = True) -> str:
    names = [os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
    for name in filter(None, names):
        found = shutil.which(name)
        if found:
            return found
    if install and shutil.which("apt-get") and os.geteuid() == 0:
        print("check_pages: no Chromium found; installing Debian's chromium with apt-get", file=sys.stderr)
        subprocess.run("apt-get update -q && apt-get install -y -q chromium", shell=True, check=True,
                       stdout=sys.stderr)
        return find_chromium(install=False)
    raise CheckError("no Chromium found: install Debian's `chromium` (apt-get install chromium) or set $CHROMIUM")


@contextlib.contextmanager
def launch(binary: str):
    """The system Chromium at `binary` under Playwright (never a browser Playwright downloads)."""
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=binary, args=ARGS)
        except PlaywrightError as err:
            raise CheckError(f"{binary} did not start under Playwright: {err}") from err
        yield browser


# --- one page --------------------------------------------------------------------------------------


def check_page(browser: Browser, url: str, base: str, screenshot: Path | None = None,
               mirror: Path | None = None) -> tuple[list[str], dict]:
    """Load one page; return (problems, facts), facts counting images, remote requests and widgets."""
    problems, remote = [], set()

    def on_response(response):  # (Playwright does not report the browser's own favicon.ico request)
        if response.url.startswith(base) and response.status >= 400:
            problems.append(f"{response.status} for {response.url[len(base):]}")

    def on_failed(request):
        # ERR_ABORTED is a request the page itself cancelled, not a missing resource
        if request.url.startswith(base) and request.failure != "net::ERR_ABORTED":
            problems.append(f"failed to load {request.url[len(base):]}: {request.failure}")

    def remote_request(route):
        local = _mirrored(mirror, route.request.url)
        if local:  # the page fetches it cross-origin, hence the CORS header
            route.fulfill(path=local, headers={"Access-Control-Allow-Origin": "*"})
        else:
            remote.add(route.request.url)
            route.abort("namenotresolved")

    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})  # a fresh context: an empty cache
    try:
        page.on("response", on_response)
        page.on("requestfailed", on_failed)
        page.route(_is_remote, remote_request)
        try:
            page.goto(url, wait_until="load")
            with contextlib.suppress(PlaywrightTimeoutError):  # late images and scripts; a busy page goes on
                page.wait_for_load_state("networkidle", timeout=10_000)
        except PlaywrightError as err:
            return [f"page did not load: {err.message.splitlines()[0]}"], {}
        try:
            found = page.evaluate(PAGE_JS)
        except PlaywrightError as err:
            return [f"page script failed: {err.message.splitlines()[0]}"], {}
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=screenshot, full_page=True)
    finally:
        page.context.close()
    return sorted(set(problems)) + _page_problems(found), {
        "images": len(found["images"]), "remote requests (not loaded)": len(remote),
        "rendered widgets": found["widgetViews"]}


def _is_remote(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and parts.hostname != "127.0.0.1"


def _mirrored(mirror: Path | None, url: str) -> Path | None:
    """mirror/<host>/<path> for a remote URL, when that file exists."""
    if mirror is None:
        return None
    parts = urlsplit(url)
    local = mirror / parts.netloc / parts.path.lstrip("/")
    return local if local.is_file() else None


def _page_problems(found: dict) -> list[str]:
    """What PAGE_JS found wrong: images that did not load or are blank, figures a chapter drew too wide to read
    at page width, empty figures, undrawn figures."""
    problems = []
    for img in found["images"]:
        if not img["width"]:
            problems.append(f"image did not load: {img['src'] or img['url'] or '(no src)'}")
        elif img["blank"]:
            problems.append(f"image is blank (one colour): {img['src']}")
        elif img.get("output") and img.get("shown") and img["shown"] < MIN_SCALE * img["width"]:
            problems.append(f"figure shrunk to {img['shown'] / img['width']:.0%} of its size at page width, its "
                            f"text too small to read (draw it narrower): {img['src']}")
    problems += [f"figure with no image: {html}" for html in found["emptyFigures"]]
    problems += [f"figure output that was never drawn: {text}" for text in found["figureTexts"]]
    return problems


# --- all pages -------------------------------------------------------------------------------------


def check_site(html_dir: Path, pages: list[str], screenshots: Path | None = None, mirror: Path | None = None,
               chromium: str | None = None, out=sys.stdout) -> int:
    """Check `pages` (paths under html_dir); print one line per page; return the number of failing pages."""
    if not html_dir.is_dir():
        raise CheckError(f"{html_dir}: no built book here; build it first (make book)")
    missing = [p for p in pages if not (html_dir / p).is_file()]
    if missing:
        raise CheckError(f"{html_dir}: pages missing from the build: {', '.join(missing)} (run make book)")
    failed = 0
    start = time.monotonic()
    with launch(chromium or find_chromium()) as browser, serve(html_dir) as base:
        for page in pages:
            shot = screenshots / (page.replace("/", "__").removesuffix(".html") + ".png") if screenshots else None
            problems, facts = check_page(browser, base + page, base, shot, mirror)
            problems = widget_problems((html_dir / page).read_text(errors="replace")) + problems
            failed += bool(problems)
            summary = ", ".join(f"{v} {k}" for k, v in facts.items())
            print(f"{'FAIL' if problems else 'ok  '} {page} ({summary})", file=out)
            for problem in problems:
                print(f"     {problem}", file=out)
            if shot:
                print(f"     screenshot: {shot}", file=out)
    print(f"{len(pages) - failed}/{len(pages)} pages pass ({time.monotonic() - start:.1f} s)", file=out)
    return failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", nargs="?", default=str(ROOT / "_build" / "html"), help="the built book")
    parser.add_argument("--toc", default=str(ROOT / "_toc.yml"), help="the pages to check: every page in this toc")
    parser.add_argument("--pages", nargs="*", help="check these HTML paths (relative to html) instead of the toc")
    parser.add_argument("--screenshots", help="write a full-page PNG of every page into this folder")
    parser.add_argument("--mirror", help="answer remote requests from MIRROR/<host>/<path> where that file exists")
    args = parser.parse_args(argv)
    try:
        pages = args.pages or toc_pages(Path(args.toc))
        failed = check_site(Path(args.html), pages, Path(args.screenshots) if args.screenshots else None,
                            Path(args.mirror) if args.mirror else None)
    except CheckError as err:
        print(f"check_pages: {err}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
