"""Headless Debian `chromium` driven over the DevTools protocol: open a page, collect what went wrong.

Use it with `pytest_plugins = ("tests.browser_chromium",)` and the `chromium` fixture (a `Chromium` that
opens one page per call). The browser gets a fresh profile and every background fetch switched off.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_or_skip

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def _binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _try_install() -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(cmd, env=env, capture_output=True, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        subprocess.run(cmd, env=env, capture_output=True, timeout=900)


@dataclass
class PageRun:
    errors: list[str] = field(default_factory=list)  # console errors, uncaught exceptions, failed loads
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    values: dict[str, Any] = field(default_factory=dict)  # results of the expressions asked for


class Chromium:
    def __init__(self, binary: str, root: Path) -> None:
        self.root = root
        profile = root / "profile"
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "--remote-allow-origins=*", "--window-size=1100,1400", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def _devtools(self, path: str, method: str = "GET") -> Any:
        import urllib.request

        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body.strip().startswith(b"{") else body

    def _new_page(self) -> tuple[str, Any]:
        """A fresh tab per page, so no message of an earlier page is replayed into this one."""
        import websocket

        page = self._devtools("/json/new?about:blank", "PUT")
        return page["id"], websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30,
                                                       suppress_origin=True)

    def open(self, url: str, screenshot: Path, expressions: dict[str, str] | None = None) -> PageRun:
        run = PageRun()
        target, ws = self._new_page()
        ids = iter(range(1, 10_000))
        replies: dict[int, Any] = {}
        loaded = False

        def handle(msg: dict[str, Any]) -> None:
            nonlocal loaded
            method, params = msg.get("method"), msg.get("params", {})
            if "id" in msg:
                replies[msg["id"]] = msg
            elif method == "Runtime.exceptionThrown":
                run.errors.append("exception: " + json.dumps(params.get("exceptionDetails", {}))[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                run.errors.append("console: " + json.dumps(params.get("args", []))[:500])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                run.errors.append("log: " + params["entry"].get("text", ""))
            elif method == "Network.requestWillBeSent":
                run.requests.append(params.get("request", {}).get("url", ""))
            elif method == "Network.loadingFailed":
                run.errors.append("load failed: " + params.get("errorText", ""))
            elif method == "Page.loadEventFired":
                loaded = True

        def call(method: str, **params: Any) -> Any:
            key = next(ids)
            ws.send(json.dumps({"id": key, "method": method, "params": params}))
            while key not in replies:
                handle(json.loads(ws.recv()))
            reply = replies.pop(key)
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply.get("result", {})

        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                call(f"{domain}.enable")
            call("Page.navigate", url=url)
            deadline = time.monotonic() + 30
            while not loaded:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} did not finish loading")
                handle(json.loads(ws.recv()))
            for name, expr in (expressions or {}).items():
                result = call("Runtime.evaluate", expression=expr, returnByValue=True)
                run.values[name] = result.get("result", {}).get("value")
            shot = call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            ws.settimeout(0.5)  # late console messages
            try:
                while True:
                    handle(json.loads(ws.recv()))
            except Exception:  # the timeout: nothing more came
                pass
        finally:
            ws.close()
            self._devtools(f"/json/close/{target}")
        return run


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chromium]:
    binary = _binary()
    if binary is None:
        _try_install()
        binary = _binary()
    require_or_skip(binary is not None, "Debian chromium is not installed (scripts/ensure-services.sh installs it)")
    try:
        import websocket  # noqa: F401
    except ImportError:
        require_or_skip(False, "websocket-client is not installed (pip install -e '.[dev]')")
    assert binary is not None
    root = Path(tempfile.mkdtemp(prefix="chromium-test-"))
    browser = Chromium(binary, root)
    try:
        yield browser
    finally:
        browser.close()
        shutil.rmtree(root, ignore_errors=True)
