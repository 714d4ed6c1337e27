"""Real HTTP traffic to one host through the ingress, every response counted.

The evidence behind "no request is lost": a load at a fixed rate (default 120 requests a second)
sent from this machine to the ingress controller on 127.0.0.1 only, bounded in count and in time,
that records each response: when it was sent, its status, and the `X-Slot` and `X-Version` headers
the demo app (scripts/images/demo) puts on every response. A failed request is a non-2xx status, a
connection error or a timeout.

The load is vegeta's (`vegeta attack -rate R/1s -duration D | vegeta encode -to json`, built by
scripts/toolchain.sh vegeta): it keeps the rate whatever the latency, up to `max_workers` requests
in flight, and its JSON results carry each response's headers, read here as they arrive.

    with Traffic(ingress, "shop.example.com") as traffic:
        ...  # a flip
    traffic.summary()               # sent, failed, per version, the failures themselves
    traffic.switched(start, "2.0.0")  # seconds from `start` until every response is 2.0.0
"""

from __future__ import annotations

import datetime
import json
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any

# The network rule: load goes to this machine's loopback only.
LOOPBACK = ("127.0.0.1", "localhost")


class LoadToolMissing(RuntimeError):
    """vegeta is not on PATH."""


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

    @property
    def kind(self) -> str:
        """What failed, in short: the status, or the error's cause (`connection refused`, `EOF`, ...)."""
        return str(self.status) if self.status else self.error.rsplit(": ", 1)[-1]

    @classmethod
    def from_vegeta(cls, result: dict) -> Response:
        """One line of `vegeta encode -to json`."""
        headers = result.get("headers") or {}
        status = int(result.get("code") or 0)
        return cls(datetime.datetime.fromisoformat(result["timestamp"]).timestamp(), result.get("latency", 0) / 1e9,
                   status, (headers.get("X-Slot") or [""])[0], (headers.get("X-Version") or [""])[0],
                   "" if status else result.get("error", ""))


@dataclass
class Traffic:
    """GETs `path` on `host` through `ingress` (http://127.0.0.1:PORT) at `rate` a second (a whole
    number), with `workers` to start with and at most `max_workers` requests in flight, until
    stopped or `max_seconds` pass, so at most rate x max_seconds requests."""

    ingress: str
    host: str
    rate: float = 120.0
    max_seconds: float = 900.0
    path: str = "/"
    workers: int = 8
    max_workers: int = 100
    timeout: float = 5.0
    vegeta: str | None = None  # its path; None: found on PATH
    responses: list[Response] = field(default_factory=list)

    def __post_init__(self) -> None:
        url = urllib.parse.urlsplit(self.ingress)
        if url.scheme != "http" or url.hostname not in LOOPBACK:
            raise ValueError(f"ingress is {self.ingress!r}; "
                             "allowed: http://127.0.0.1:PORT (load stays on this machine)")
        if not (float(self.rate).is_integer() and 0 < self.rate <= 1000 and 0 < self.max_seconds <= 3600):
            raise ValueError(f"rate {self.rate}/s for {self.max_seconds} s; allowed: a whole number up to 1000/s "
                             "for up to 3600 s")
        if not 0 < self.workers <= self.max_workers <= 1000:
            raise ValueError(f"workers {self.workers}, max_workers {self.max_workers}; allowed: "
                             "0 < workers <= max_workers <= 1000")
        vegeta = self.vegeta or shutil.which("vegeta")
        if vegeta is None:
            raise LoadToolMissing("vegeta is not on PATH: build it with `scripts/toolchain.sh vegeta`, then "
                                  "`source scripts/activate`")
        self._vegeta = vegeta
        self._lock = threading.Lock()
        self._first = threading.Event()
        self._procs: list[subprocess.Popen] = []
        self._reader: threading.Thread | None = None
        self._stderr: IO[bytes] | None = None
        self.started = self.stopped = 0.0

    def __enter__(self) -> Traffic:
        target = json.dumps({"method": "GET", "url": f"{self.ingress.rstrip('/')}{self.path}",
                             "header": {"Host": [self.host]}})
        self._stderr = tempfile.TemporaryFile()
        attack = subprocess.Popen(
            [self._vegeta, "attack", "-format=json", f"-rate={int(self.rate)}/1s", f"-duration={self.max_seconds}s",
             f"-timeout={self.timeout}s", f"-workers={self.workers}", f"-max-workers={self.max_workers}",
             "-redirects=-1", "-max-body=0"],  # a redirect is an answer (not 2xx: failed), bodies are not kept
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        assert attack.stdin is not None and attack.stdout is not None
        attack.stdin.write(target.encode() + b"\n")
        attack.stdin.close()
        encode = subprocess.Popen([self._vegeta, "encode", "-to=json"], stdin=attack.stdout, stdout=subprocess.PIPE,
                                  stderr=self._stderr)
        attack.stdout.close()  # encode holds it now
        self._procs = [attack, encode]
        self.started = time.time()
        self._reader = threading.Thread(target=self._read, args=(encode.stdout,), daemon=True)
        self._reader.start()
        # Return once the load flows (its first answer is in), so a step timed from here has it all along.
        if not self._first.wait(self.timeout + 10):
            self.stop()
            raise RuntimeError(f"vegeta sent no request to {self.ingress} within {self.timeout + 10:.0f} s: "
                               f"{self._errors()}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            response = Response.from_vegeta(json.loads(line))
            with self._lock:
                self.responses.append(response)
            self._first.set()
        self._first.set()  # vegeta ended (or failed to start): stop waiting for a first answer

    def stop(self) -> None:
        """Stop the load: vegeta finishes the requests in flight and writes their results."""
        if self._procs:
            attack, encode = self._procs
            if attack.poll() is None:
                attack.send_signal(signal.SIGINT)
            for proc in (attack, encode):
                try:
                    proc.wait(timeout=self.timeout + 10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if self._reader is not None:
                self._reader.join()
            self._procs = []
            self.stopped = self.stopped or time.time()
            failed = [proc.args[1] for proc in (attack, encode) if proc.returncode not in (0, -signal.SIGINT)]
            if failed:
                raise RuntimeError(f"vegeta {' and '.join(failed)} failed: {self._errors()}")

    def _errors(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-2000:] or "(nothing on stderr)"

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
