"""Real HTTP traffic to one host through the ingress, every response counted.

The evidence behind "no request is lost": a load at a fixed rate (default 120 requests a second)
sent from this machine to the ingress controller on 127.0.0.1 only, bounded in count and in time,
that records each response: when it was sent, its status, and the `X-Slot` and `X-Version` headers
the demo app (scripts/images/demo) puts on every response. A failed request is a non-2xx status, a
connection error or a timeout.

    with Traffic(ingress, "shop.example.com") as traffic:
        ...  # a flip
    traffic.summary()               # sent, failed, per version, the failures themselves
    traffic.switched(start, "2.0.0")  # seconds from `start` until every response is 2.0.0
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# The network rule: load goes to this machine's loopback only.
LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Response:
    sent: float  # time.time() when the request was sent
    seconds: float  # until the whole response was read
    status: int  # 0: no HTTP response (connection error or timeout)
    slot: str
    version: str
    error: str = ""

    @property
    def failed(self) -> bool:
        return not 200 <= self.status < 300


@dataclass
class Traffic:
    """GETs `path` on `host` through `ingress` (http://127.0.0.1:PORT) at `rate` a second, from
    `workers` threads with kept-alive connections, until stopped, `max_seconds` pass or
    rate x max_seconds requests were sent, whichever comes first."""

    ingress: str
    host: str
    rate: float = 120.0
    max_seconds: float = 900.0
    path: str = "/"
    workers: int = 8
    timeout: float = 5.0
    responses: list[Response] = field(default_factory=list)

    def __post_init__(self) -> None:
        url = urllib.parse.urlsplit(self.ingress)
        if url.scheme != "http" or url.hostname not in LOOPBACK:
            raise ValueError(f"ingress is {self.ingress!r}; "
                             "allowed: http://127.0.0.1:PORT (load stays on this machine)")
        if not 0 < self.rate <= 1000 or not 0 < self.max_seconds <= 3600:
            raise ValueError(f"rate {self.rate}/s for {self.max_seconds} s; allowed: up to 1000/s for up to 3600 s")
        self._address = (url.hostname, url.port or 80)
        self._max_requests = int(self.rate * self.max_seconds)
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(self.workers)]
        self.started = self.stopped = 0.0

    def __enter__(self) -> Traffic:
        self.started = time.time()
        self._t0 = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.stopped = self.stopped or time.time()

    def _ticket(self) -> float | None:
        """The monotonic time the next request is due, or None when the load is over."""
        with self._lock:
            index, self._next = self._next, self._next + 1
        due = self._t0 + index / self.rate
        if index >= self._max_requests or due - self._t0 > self.max_seconds:
            return None
        return due

    def _work(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            due = self._ticket()
            if due is None:
                return
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            if conn is None:
                conn = http.client.HTTPConnection(*self._address, timeout=self.timeout)
            sent, t0 = time.time(), time.monotonic()
            try:
                conn.request("GET", self.path, headers={"Host": self.host})
                reply = conn.getresponse()
                reply.read()
                response = Response(sent, time.monotonic() - t0, reply.status,
                                    reply.getheader("X-Slot", ""), reply.getheader("X-Version", ""))
                if reply.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (http.client.HTTPException, OSError) as error:
                response = Response(sent, time.monotonic() - t0, 0, "", "", f"{type(error).__name__}: {error}")
                conn.close()
                conn = None
            with self._lock:
                self.responses.append(response)
        if conn is not None:
            conn.close()

    # --- what happened -----------------------------------------------------------------------

    def _window(self, since: float | None, until: float | None) -> list[Response]:
        with self._lock:
            responses = sorted(self.responses, key=lambda r: r.sent)
        return [r for r in responses if (since is None or r.sent >= since) and (until is None or r.sent <= until)]

    def failures(self, since: float | None = None, until: float | None = None) -> list[Response]:
        return [r for r in self._window(since, until) if r.failed]

    def switched(self, since: float, version: str) -> float | None:
        """Seconds from `since` until every response sent from then on came from `version`; None
        when the last response is not from it."""
        responses = self._window(since, None)
        if not responses or responses[-1].version != version or responses[-1].failed:
            return None
        last_other = max((r.sent for r in responses if r.version != version or r.failed), default=since)
        first_after = min(r.sent for r in responses if r.sent > last_other or last_other == since)
        return round(max(0.0, first_after - since), 3)

    def summary(self, since: float | None = None, until: float | None = None) -> dict:
        responses = self._window(since, until)
        span = (responses[-1].sent - responses[0].sent) if len(responses) > 1 else 0.0
        failed = [r for r in responses if r.failed]
        return {
            "sent": len(responses),
            "failed": len(failed),
            "rate_rps": round((len(responses) - 1) / span, 1) if span else 0.0,
            "versions": dict(Counter(f"{r.slot}/{r.version}" for r in responses if not r.failed)),
            "failures": [f"{r.status or r.error}" for r in failed[:5]],
        }
