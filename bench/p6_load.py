"""P6's sending side, a separate process: POSTs webhooks at a fixed rate over loopback
(keep-alive connections, a few sender threads) and prints what it sent as JSON."""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time

from bench.common import percentile

THREADS = 8


def main(port: int, rate: int, seconds: float, token: str) -> None:
    total = int(rate * seconds)
    start = time.monotonic() + 0.2
    errors = [0]
    http_ms: list[float] = []
    lock = threading.Lock()

    def sender(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(k, total, THREADS):
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            body = json.dumps({"type": "subscribed", "key": "newsletter", "id": f"p6:{i}",
                               "contact": {"id": f"p6c{i}", "email": f"p6c{i}@example.com"},
                               "properties": {"list": "newsletter", "sent_at": time.time()}})
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/events", body, {"Content-Type": "application/json",
                                                           "Authorization": f"Bearer {token}"})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 202
            except OSError:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                http_ms.append((time.perf_counter() - t0) * 1000)
                if not ok:
                    errors[0] += 1
        conn.close()

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    print(json.dumps({"sent": total - errors[0], "errors": errors[0], "rate": total / elapsed,
                      "p50_ms": percentile(http_ms, 50), "p99_ms": percentile(http_ms, 99)}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
