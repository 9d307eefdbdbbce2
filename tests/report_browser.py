"""Headless Chromium driven through its DevTools protocol over a pipe (``--remote-debugging-pipe``:
JSON messages, NUL-terminated, on file descriptors 3 and 4), so a test can open report.html the way a
reader does and ask the page what it shows. No third-party client and no network port are needed.

``inspect(path)`` loads a page and returns what the browser saw: console errors and exceptions, each
<img> (decoded or not, natural size), the dataset sections and a screenshot.
"""

from __future__ import annotations

import io
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]

# Run in the page once it has loaded: wait for every image to decode, then describe the page.
PAGE_FACTS = """
(async () => {
  const images = Array.from(document.images);
  const decoded = await Promise.all(images.map(i => i.decode().then(() => true, () => false)));
  return {
    images: images.map((i, k) => ({alt: i.alt, decoded: decoded[k], complete: i.complete,
                                   naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
                                   inline: i.src.startsWith("data:")})),
    sections: Array.from(document.querySelectorAll("section.dataset")).map(s => s.dataset.dataset),
    external: Array.from(document.querySelectorAll("[src],[href]")).map(e => e.getAttribute("src") ||
              e.getAttribute("href")).filter(u => !u.startsWith("data:") && !u.startsWith("#")),
    bestCells: document.querySelectorAll("td.best").length,
    title: document.title,
    height: document.documentElement.scrollHeight,
  };
})()
"""


def _high_pipe() -> tuple:
    """A close-on-exec pipe whose ends are above 4, so dup2 onto 3 and 4 cannot clobber either."""
    import fcntl

    r, w = os.pipe()
    hi = (fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 10), fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 10))
    os.close(r)
    os.close(w)
    return hi


def find_browser():
    explicit = os.environ.get("HARNESS_CHROMIUM")
    if explicit:
        return explicit
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    errors: list = field(default_factory=list)  # console errors, exceptions, failed loads
    facts: dict = field(default_factory=dict)
    screenshot: bytes = b""


class DevTools:
    """A Chromium process and its DevTools pipe."""

    def __init__(self, browser: str, width: int = 1400, height: int = 1000, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="harness-chromium-")
        to_browser_r, self._to_browser = _high_pipe()
        self._from_browser, from_browser_w = _high_pipe()
        args = [browser, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                "--remote-debugging-pipe", "about:blank"]

        def onto_3_and_4():  # in the child: Chromium reads commands on fd 3 and writes replies on fd 4
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        # close_fds=False: every other descriptor of this process is close-on-exec (PEP 446); 3 and 4,
        # made by dup2, are not.
        self.log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty browser must never block on it
        self.proc = subprocess.Popen(args, preexec_fn=onto_3_and_4, close_fds=False, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read()
            if event.get("method") == method:
                return event
            self.events.append(event)

    def _read(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError(f"no reply from the browser within {self.timeout} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                self.log.seek(0)
                err = self.log.read().decode(errors="replace")
                raise RuntimeError(f"the browser closed its DevTools pipe: {err[-2000:]}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def _errors(events: list) -> list:
    out = []
    for ev in events:
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            out.append("exception: " + str(details.get("exception", {}).get("description") or details.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            out.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
    return out


def inspect(path: Path, browser: str, full_page: bool = True, width: int = 1400) -> PageReport:
    """Open ``path`` in headless Chromium; report errors, the page's facts and a PNG screenshot."""
    tools = DevTools(browser, width=width)
    try:
        target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            tools.send(f"{domain}.enable", session=session)
        tools.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": 1000, "deviceScaleFactor": 1,
                                                          "mobile": False}, session=session)
        tools.send("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
        tools.wait_for("Page.loadEventFired")
        result = tools.send("Runtime.evaluate", {"expression": PAGE_FACTS, "awaitPromise": True,
                                                 "returnByValue": True}, session=session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page check script failed: {result['exceptionDetails']}")
        facts = result["result"]["value"]
        params = {"format": "png"}
        if full_page:
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": width, "height": min(int(facts["height"]), 16000),
                                "scale": 1})
        shot = tools.send("Page.captureScreenshot", params, session=session)["data"]
        tools.send("Runtime.evaluate", {"expression": "1"}, session=session)  # flush late console events
        import base64

        return PageReport(_errors(tools.events), facts, base64.b64decode(shot))
    finally:
        tools.close()


def blank_fraction(png_bytes: bytes) -> float:
    """The share of the screenshot's pixels that have its most common colour (1.0: blank)."""
    import numpy as np
    from matplotlib.image import imread

    img = imread(io.BytesIO(png_bytes), format="png")[..., :3]
    flat = (img.reshape(-1, 3) * 255).round().astype(np.int64)
    codes = flat[:, 0] * 65536 + flat[:, 1] * 256 + flat[:, 2]
    return float(np.bincount(np.unique(codes, return_inverse=True)[1]).max() / len(codes))
