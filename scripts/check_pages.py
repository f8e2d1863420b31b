#!/usr/bin/env python3
"""Open every page of the built book in headless Chromium; fail on a missing image or an empty figure.

    python scripts/check_pages.py [_build/html] [--toc _toc.yml] [--screenshots DIR] [--mirror DIR]

The pages are served from a local HTTP server (so a missing file is a real 404) and Chromium is driven
over the DevTools protocol on a pipe (`--remote-debugging-pipe`: no port, no extra Python package). A page
fails when
  - a request for a local resource (image, script, stylesheet, ...) fails or answers 4xx/5xx;
  - an <img> does not load (naturalWidth 0) or is blank (every pixel the same colour);
  - a <figure> holds no image, or a cell output is matplotlib's text for a figure that was never drawn
    ("<Figure size 640x480 with 0 Axes>");
  - a saved ipywidget view names a model whose state is not on the page (the widget would not show).
No name outside 127.0.0.1 resolves, so the check never goes online: remote scripts (MathJax, the ipywidgets
embedder) are counted, not loaded. `--mirror DIR` answers remote requests from DIR/<host>/<path> when that
file exists (e.g. a local copy of the ipywidgets embedder, to see the widgets render offline).

Chromium: $CHROMIUM, or chromium / chromium-browser / google-chrome on PATH; when none is found and we are
root with apt-get, it installs Debian's `chromium`. Exit status 0 when every page passes, 1 otherwise,
2 on a usage error (e.g. no built book).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import functools
import http.server
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1280, 900
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


# --- Chromium over the DevTools protocol on a pipe -------------------------------------------------


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


class Chromium:
    """Headless Chromium; `send` runs one DevTools command and returns its result."""

    def __init__(self, binary: str, timeout: float = 30.0):
        self.timeout = timeout
        self.events: list[dict] = []
        self.handler = None  # called once with every event, from wait_for and settle
        self._handled = 0
        self._next_id = 0
        self._buffer = b""
        self._profile = tempfile.TemporaryDirectory(prefix="check-pages-")
        self._log = open(Path(self._profile.name) / "stderr.log", "w+b")
        cmd_read, self._cmd_write = os.pipe()
        self._reply_read, reply_write = os.pipe()

        def child_fds():  # Chromium reads commands on fd 3 and writes replies on fd 4
            a, b = fcntl.fcntl(cmd_read, fcntl.F_DUPFD, 10), fcntl.fcntl(reply_write, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
                "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={self._profile.name}",
                # offline: no name but 127.0.0.1 resolves, so a page can never fetch from the network
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                     close_fds=False, preexec_fn=child_fds)
        os.close(cmd_read)
        os.close(reply_write)
        self.send("Target.setDiscoverTargets", {"discover": False})  # fails fast if Chromium did not start

    def close(self):
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_write, self._reply_read):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._log.close()
        self._profile.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _stderr_tail(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._reply_read], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._reply_read, 1 << 20)
            if not chunk:
                raise CheckError(f"Chromium exited (status {self.proc.poll()}):\n{self._stderr_tail()}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout=None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._cmd_write, data):]
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def reset(self):
        self.events.clear()
        self._handled = 0

    def _handle_events(self):
        while self.handler and self._handled < len(self.events):
            self._handled += 1
            self.handler(self.events[self._handled - 1])

    def wait_for(self, method: str, session: str, timeout=None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            self._handle_events()
            for event in self.events:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            self.events.append(self._read(deadline))

    def settle(self, quiet: float = 0.3, timeout: float = 10.0):
        """Collect events until none has arrived for `quiet` seconds (late images, scripts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._handle_events()
            try:
                self.events.append(self._read(min(deadline, time.monotonic() + quiet)))
            except TimeoutError:
                return


# --- one page --------------------------------------------------------------------------------------


def check_page(browser: Chromium, url: str, base: str, screenshot: Path | None = None,
               mirror: Path | None = None) -> tuple[list[str], dict]:
    """Load one page; return (problems, facts), facts counting images, remote requests and widgets."""
    browser.reset()
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    try:
        for domain in ("Page", "Network", "Runtime"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Network.setCacheDisabled", {"cacheDisabled": True}, session=session)
        if mirror:  # the local pages are http://127.0.0.1, so only remote requests pause here
            browser.handler = _mirror_handler(browser, session, mirror)
            browser.send("Fetch.enable", {"patterns": [{"urlPattern": "https://*"}]}, session=session)
        nav = browser.send("Page.navigate", {"url": url}, session=session)
        if nav.get("errorText"):
            return [f"page did not load: {nav['errorText']}"], {}
        browser.wait_for("Page.loadEventFired", session)
        browser.settle()
        result = browser.send("Runtime.evaluate", {"expression": PAGE_JS, "awaitPromise": True,
                                                   "returnByValue": True}, session=session, timeout=60)
        if "exceptionDetails" in result:
            return [f"page script failed: {result['exceptionDetails'].get('text')}"], {}
        page = result["result"]["value"]
        if screenshot is not None:
            _screenshot(browser, session, screenshot)
        problems, remote = _network_problems(browser.events, session, base)
    finally:
        browser.handler = None
        browser.send("Target.closeTarget", {"targetId": target})
    for img in page["images"]:
        if not img["width"]:
            problems.append(f"image did not load: {img['src'] or img['url'] or '(no src)'}")
        elif img["blank"]:
            problems.append(f"image is blank (one colour): {img['src']}")
    problems += [f"figure with no image: {html}" for html in page["emptyFigures"]]
    problems += [f"figure output that was never drawn: {text}" for text in page["figureTexts"]]
    facts = {"images": len(page["images"]), "remote requests (not loaded)": remote,
             "rendered widgets": page["widgetViews"]}
    return problems, facts


def _network_problems(events: list[dict], session: str, base: str) -> tuple[list[str], int]:
    urls, problems, remote = {}, [], set()
    for event in events:
        if event.get("sessionId") != session:
            continue
        params = event.get("params", {})
        method = event.get("method")
        if method == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif method == "Network.responseReceived":
            response = params["response"]
            if response["url"] == base + "favicon.ico":  # the browser asks for it on its own; no page links it
                continue
            if response["url"].startswith(base) and response["status"] >= 400:
                problems.append(f"{response['status']} for {response['url'][len(base):]}")
        elif method == "Network.loadingFailed":
            url = urls.get(params["requestId"], "?")
            if url.startswith(base):
                if not params.get("canceled"):
                    problems.append(f"failed to load {url[len(base):]}: {params.get('errorText')}")
            elif url.startswith("http"):
                remote.add(url)
    return sorted(set(problems)), len(remote)


def _mirror_handler(browser: Chromium, session: str, mirror: Path):
    """Answer paused remote requests from mirror/<host>/<path>, or fail them as unresolvable."""
    def handle(event):
        if event.get("method") != "Fetch.requestPaused" or event.get("sessionId") != session:
            return
        request_id, url = event["params"]["requestId"], event["params"]["request"]["url"]
        parts = urlsplit(url)
        local = mirror / parts.netloc / parts.path.lstrip("/")
        if local.is_file():
            kind = "application/javascript" if local.suffix == ".js" else "application/octet-stream"
            browser.send("Fetch.fulfillRequest", {
                "requestId": request_id, "responseCode": 200,
                "responseHeaders": [{"name": "Content-Type", "value": kind},
                                    {"name": "Access-Control-Allow-Origin", "value": "*"}],
                "body": base64.b64encode(local.read_bytes()).decode()}, session=session)
        else:
            browser.send("Fetch.failRequest", {"requestId": request_id, "errorReason": "NameNotResolved"},
                         session=session)
    return handle


def _screenshot(browser: Chromium, session: str, path: Path):
    size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
    height = min(int(size["height"]) + 1, 16384)
    data = browser.send("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1}}, session=session, timeout=60)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(data["data"]))


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
    with Chromium(chromium or find_chromium()) as browser, serve(html_dir) as base:
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
