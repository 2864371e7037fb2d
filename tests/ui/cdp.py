"""A minimal Chrome DevTools Protocol client: the standard library only (no npm, no
websocket package).  Enough to load a page in headless chromium, collect what its
console and network log say, and evaluate expressions in it."""

from __future__ import annotations

import base64
import json
import os
import re
import select
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any


class Browser:
    def __init__(self, exe: str, profile: Path, timeout: float = 60.0):
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.sock: socket.socket | None = None
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
        self.sock = _connect(url, timeout)
        self.buf = b""
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
        _send_frame(self.sock, json.dumps({"id": ident, "method": method, "params": params}).encode())
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
        data = b""
        while True:
            fin, opcode, payload = self._frame()
            if opcode == 0x9:   # ping
                _send_frame(self.sock, payload, opcode=0xA)
                continue
            if opcode == 0x8:
                raise RuntimeError("the browser closed the DevTools connection")
            data += payload
            if fin:
                return json.loads(data)

    def _frame(self) -> tuple[bool, int, bytes]:
        head = self._read(2)
        fin, opcode, n = bool(head[0] & 0x80), head[0] & 0x0F, head[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._read(8))[0]
        mask = self._read(4) if head[1] & 0x80 else b""
        payload = self._read(n)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return fin, opcode, payload

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise RuntimeError("the DevTools connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

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
                except (RuntimeError, OSError):
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


def _connect(url: str, timeout: float) -> socket.socket:
    m = re.match(r"ws://([^:/]+):(\d+)(/.*)", url)
    assert m, url
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    sock = socket.create_connection((host, port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise RuntimeError("DevTools handshake failed")
        head += chunk
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"DevTools handshake refused: {head[:200]!r}")
    return sock


def _send_frame(sock: socket.socket, payload: bytes, opcode: int = 0x1) -> None:
    """A client frame: FIN, the opcode, a masked payload (RFC 6455 §5.2, §5.3)."""
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
