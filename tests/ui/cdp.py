"""A minimal Chrome DevTools Protocol client over the ``websocket-client`` package (the
``dev`` extra).  Enough to load a page in headless chromium, collect what its console
and network log say, and evaluate expressions in it."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket


class Browser:
    def __init__(self, exe: str, profile: Path, timeout: float = 60.0):
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.sock: websocket.WebSocket | None = None
        port = self._port()
        url = None
        deadline = time.monotonic() + timeout
        while url is None and time.monotonic() < deadline:   # the first tab may take a moment to appear
            pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout))
            url = next((p["webSocketDebuggerUrl"] for p in pages if p.get("type") == "page"), None)
            if url is None:
                time.sleep(0.2)
        if url is None:
            self.close()
            raise RuntimeError("chromium opened no page to drive")
        # no proxy: the DevTools port is on this host, whatever http_proxy says
        self.sock = websocket.create_connection(url, timeout=timeout, suppress_origin=True,
                                                http_no_proxy=["127.0.0.1", "localhost"])
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _port(self) -> int:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + self.timeout
        seen = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stderr], [], [], 0.5)
            if r:
                chunk = os.read(self.proc.stderr.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
                m = re.search(rb"DevTools listening on ws://[^:]+:(\d+)/", seen)
                if m:
                    return int(m.group(1))
        self.close()
        raise RuntimeError(f"chromium did not open its DevTools port: {seen.decode(errors='replace')[-1500:]}")

    # -- protocol -------------------------------------------------------------

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        assert self.sock is not None
        self.sock.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = self._receive()
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, event: str) -> dict[str, Any]:
        for i, e in enumerate(self.events):
            if e.get("method") == event:
                return self.events.pop(i)
        while True:
            msg = self._receive()
            if msg.get("method") == event:
                return msg
            self.events.append(msg)

    def _receive(self) -> dict[str, Any]:
        """The next message (websocket-client answers pings and joins fragments itself)."""
        assert self.sock is not None
        try:
            data = self.sock.recv()
        except websocket.WebSocketConnectionClosedException:
            raise RuntimeError("the browser closed the DevTools connection") from None
        return json.loads(data)

    # -- what the tests use -----------------------------------------------------

    def load(self, url: str) -> None:
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.send(domain)
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluating {expression!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and failed loads seen so far."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                out.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description", "")))
                                                                   for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: " + str(d.get("exception", {}).get("description", d.get("text", ""))))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                entry = p["entry"]
                out.append(f"log.{entry['level']} ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
        return out

    def close(self) -> None:
        try:
            if self.sock is not None:
                try:
                    self.send("Browser.close")
                except (RuntimeError, OSError, websocket.WebSocketException):
                    pass
                self.sock.close()
        finally:
            self.proc.kill()
            self.proc.wait(timeout=10)
            if self.proc.stderr is not None:
                self.proc.stderr.close()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

