"""P6's sending side, a separate process: POSTs webhooks at a fixed rate over loopback
(keep-alive HTTP/1.1 connections, one sender thread each) and prints what it sent as JSON.

Requests are written and answers read on plain sockets: ``http.client`` parses every
response's headers with the ``email`` package, which doubled the sender's CPU per request
(~0.3 ms against ~0.15 ms), CPU taken from the server and worker it measures on the same
two-CPU machine.

``python -m bench.p6_load PORT RATE SECONDS TOKEN``. A short unstamped warm-up comes first
(a deployed server and worker are long-running: the first requests and the first batch
load code and register the journey's rules); only events carrying ``sent_at`` count.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

from bench.common import percentile

THREADS = 8
WARMUP = 100  # events, sent at WARMUP_RATE before the measured run
WARMUP_RATE = 100


@dataclass
class Tally:
    """What the sender threads saw, under one lock."""

    errors: int = 0
    http_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, ms: float, ok: bool) -> None:
        with self.lock:
            self.http_ms.append(ms)
            self.errors += not ok


def body(i: int, stamped: bool) -> str:
    """A ``subscribed`` webhook for a new contact: it enters the welcome journey, whose
    first step queues an email (the outbox row the latency is measured to). The contact is
    named by email only, as a first-seen contact is, so the embedded sandbox CRM accepts
    the email the outbox then sends (it records it and the ``email_sent`` event re-enters)."""
    props: dict[str, object] = {"list": "newsletter"}
    if stamped:
        props["sent_at"] = time.time()
    prefix = "p6" if stamped else "p6w"
    return json.dumps({"type": "subscribed", "key": "newsletter", "id": f"{prefix}:{i}",
                       "contact": {"email": f"{prefix}c{i}@example.com"},
                       "properties": props})


class Connection:
    """One keep-alive connection: a request out, one answer (status line, headers and a
    ``Content-Length`` body) back."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.head = ("POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Authorization: Bearer {token}\r\nContent-Length: ")
        self.sock: socket.socket | None = None

    def post(self, payload: str) -> int:
        """The answer's status; raises OSError (and drops the socket) if the exchange fails."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = payload.encode()
        try:
            self.sock.sendall(f"{self.head}{len(data)}\r\n\r\n".encode() + data)
            return self._answer()
        except (OSError, ValueError):  # ValueError: an answer that does not parse
            self.close()
            raise OSError("exchange failed") from None

    def _answer(self) -> int:
        assert self.sock is not None
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self._recv()
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                       if line.lower().startswith("content-length:")), None)
        if length is None:
            raise ValueError("an answer without Content-Length")
        while len(rest) < length:
            rest += self._recv()
        if any(line.lower() == "connection: close" for line in lines[1:]):
            self.close()
        return int(lines[0].split()[1])

    def _recv(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise OSError("closed by the server")
        return chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def send(port: int, token: str, rate: float, total: int, stamped: bool, tally: Tally) -> float:
    """Send ``total`` events evenly at ``rate`` over THREADS connections (a thread that falls
    behind sends at once, so the achieved rate shows the server's capacity); returns the
    seconds it took."""
    start = time.monotonic() + 0.1

    def sender(k: int) -> None:
        conn = Connection(port, token)
        for i in range(k, total, THREADS):
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            t0 = time.perf_counter()
            try:
                ok = conn.post(body(i, stamped)) == 202
            except OSError:
                ok = False
            tally.add((time.perf_counter() - t0) * 1000, ok)
        conn.close()

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - start


def main(port: int, rate: int, seconds: float, token: str) -> None:
    warm = Tally()
    send(port, token, WARMUP_RATE, WARMUP, False, warm)
    time.sleep(1.0)  # let the worker take the warm-up events before the clock starts
    tally = Tally()
    total = int(rate * seconds)
    elapsed = send(port, token, rate, total, True, tally)
    print(json.dumps({"sent": total - tally.errors, "errors": tally.errors + warm.errors,
                      "rate": total / elapsed, "p50_ms": percentile(tally.http_ms, 50),
                      "p99_ms": percentile(tally.http_ms, 99), "cpu_s": time.process_time()}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
