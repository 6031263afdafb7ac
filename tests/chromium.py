"""Headless Chromium driven over the Chrome DevTools Protocol, for the browser test of the book.

Chromium is started with `--remote-debugging-pipe`: it reads protocol commands on file descriptor
3 and writes replies and events on descriptor 4, as NUL-terminated JSON. Speaking the protocol
over that pipe needs only the standard library (no websocket package, no chromedriver, no port to
pick), and every event the page produces (console messages, exceptions, each request and its
outcome) arrives in one stream that the test can check.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

# The flags this machine needs: no sandbox (root), nothing fetched in the background, and every
# host name but the loopback one unresolvable, so a page that needs the network fails visibly.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--no-first-run", "--no-default-browser-check", "--disable-component-update",
    "--disable-sync", "--disable-quic", "--disable-extensions", "--disable-dev-shm-usage",
    "--hide-scrollbars", "--mute-audio", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """Path of a Chromium binary: $MICROGPT_CHROMIUM, else the first candidate on PATH."""
    explicit = os.environ.get("MICROGPT_CHROMIUM")
    if explicit:
        return shutil.which(explicit)
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class DevToolsError(RuntimeError):
    """Chromium answered a command with an error, died, or did not answer in time."""


class Chromium:
    """One headless Chromium process and its DevTools pipe; events are kept per session."""

    def __init__(self, binary: str, user_data_dir: Path, log_path: Path) -> None:
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # Move the child's ends above 9 so bash can place them at 3 and 4 without clashes.
        child_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        for fd in (to_chrome_r, from_chrome_w):
            os.close(fd)
        script = f'exec "$0" "$@" 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-'
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["/bin/bash", "-c", script, binary, *CHROMIUM_FLAGS, "--remote-debugging-pipe",
                 f"--user-data-dir={user_data_dir}", "about:blank"],
                pass_fds=(child_r, child_w), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log)
        self.log_path = log_path
        os.close(child_r)
        os.close(child_w)
        self._out = os.fdopen(to_chrome_w, "wb", buffering=0)
        self._in = from_chrome_r
        self._replies: dict[int, queue.Queue] = {}
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._next_id = 0
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self.call("Browser.getVersion")

    def _read_loop(self) -> None:
        buffer = b""
        while chunk := os.read(self._in, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    self._replies[message["id"]].put(message)
                else:
                    with self._lock:
                        self._events.append(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        """Send one command (to the browser, or to a page's session) and return its result."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            self._replies[ident] = queue.Queue()
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._out.write(json.dumps(message).encode() + b"\0")
        try:
            reply = self._replies[ident].get(timeout=timeout)
        except queue.Empty:
            raise DevToolsError(f"no answer to {method} within {timeout} s") from None
        finally:
            self._replies.pop(ident, None)
        if "error" in reply:
            raise DevToolsError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def events(self, session: str) -> list[dict[str, Any]]:
        """Every event received so far from one page's session, oldest first."""
        with self._lock:
            return [e for e in self._events if e.get("sessionId") == session]

    def wait_for_event(self, session: str, method: str, timeout: float = 30.0) -> dict:
        """Block until the session has produced an event named `method`; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events(session) if e["method"] == method]
            if found:
                return found[0]
            if self.process.poll() is not None:
                raise DevToolsError(f"Chromium exited with code {self.process.returncode}")
            time.sleep(0.05)
        raise DevToolsError(f"no {method} event within {timeout} s")

    def new_page(self, width: int = 1280, height: int = 900) -> str:
        """Open a blank tab; return its session id, with page, console and network events on."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget",
                            {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session=session)
        return session

    def wait_network_idle(self, session: str, quiet: float = 0.5, timeout: float = 20.0) -> None:
        """Block until no request of the session has been in flight for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        idle_since = None
        while time.monotonic() < deadline:
            pending = set()
            for event in self.events(session):
                if event["method"] == "Network.requestWillBeSent":
                    pending.add(event["params"]["requestId"])
                elif event["method"] in ("Network.loadingFinished", "Network.loadingFailed"):
                    pending.discard(event["params"]["requestId"])
            if pending:
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= quiet:
                return
            time.sleep(0.05)
        raise DevToolsError(f"requests still in flight after {timeout} s")

    def evaluate(self, session: str, expression: str, timeout: float = 30.0) -> Any:
        """Value of a JavaScript expression in the page (promises are awaited)."""
        result = self.call("Runtime.evaluate",
                           {"expression": expression, "returnByValue": True,
                            "awaitPromise": True, "timeout": timeout * 1000},
                           session=session, timeout=timeout + 5)
        if "exceptionDetails" in result:
            raise DevToolsError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, session: str, path: Path, width: int = 1280,
                   max_height: int = 20000) -> None:
        """Save a PNG of the whole page (cut at max_height pixels), then restore the viewport."""
        height = self.evaluate(session, "document.documentElement.scrollHeight")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": min(int(height), max_height),
                   "deviceScaleFactor": 1, "mobile": False}, session=session)
        data = self.call("Page.captureScreenshot", {"format": "png"},
                         session=session, timeout=60)["data"]
        path.write_bytes(base64.b64decode(data))
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                  session=session)

    def close(self) -> None:
        """Shut Chromium down (its messages stay in log_path)."""
        try:
            self.call("Browser.close", timeout=5)
        except (DevToolsError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._out.close()
