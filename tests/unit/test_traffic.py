"""bench/traffic.py, the counted load of the e2e tier and the benchmarks: vegeta against a small
app on 127.0.0.1 that answers like the demo app (X-Slot, X-Version), switches version and fails
on demand. Needs vegeta built (scripts/toolchain.sh vegeta); skipped, with the reason, without it."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from bench.traffic import LoadToolMissing, Response, Traffic


class App(http.server.ThreadingHTTPServer):
    """Answers every GET with `slot`/`version` in the demo app's headers, or `failing` with 503;
    records the Host header each request came with."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _AppHandler)
        self.slot, self.version, self.failing = "blue", "1.0.0", False
        self.hosts: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> App:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _AppHandler(http.server.BaseHTTPRequestHandler):
    server: App
    protocol_version = "HTTP/1.1"  # kept-alive connections, as the ingress serves them

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hosts.append(self.headers.get("Host", ""))
        body = f"slot={self.server.slot} version={self.server.version}\n".encode()
        self.send_response(503 if self.server.failing else 200)
        self.send_header("X-Slot", self.server.slot)
        self.send_header("X-Version", self.server.version)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_every_response_is_counted_with_its_slot_and_version_and_a_switch_is_timed(vegeta):
    with App() as app, Traffic(app.url, "shop.example.com", rate=100, max_seconds=30, vegeta=vegeta) as traffic:
        time.sleep(0.5)
        switch = time.time()
        time.sleep(0.3)
        app.slot, app.version = "green", "2.0.0"
        time.sleep(0.7)
    figures = traffic.summary()
    assert figures["failed"] == 0 and figures["failures"] == []
    assert set(figures["versions"]) == {"blue/1.0.0", "green/2.0.0"}
    assert sum(figures["versions"].values()) == figures["sent"] == len(app.hosts)  # every request, once
    assert set(app.hosts) == {"shop.example.com"}  # the ingress routes by the Host header
    # From `switch` to the first request green answered, all later ones green too (the app moved
    # 0.3 s after `switch`: a positive time).
    first_green = min(r.sent for r in traffic.responses if r.version == "2.0.0")
    assert all(r.version == "2.0.0" for r in traffic.responses if r.sent > first_green)
    assert traffic.switched(switch, "2.0.0") == round(first_green - switch, 3) > 0
    assert traffic.switched(switch, "1.0.0") is None  # the last answer is not from it
    # Before the switch only blue answered.
    assert set(traffic.summary(until=switch)["versions"]) == {"blue/1.0.0"}


def test_non_2xx_and_refused_connections_are_failures(vegeta):
    with App() as app, Traffic(app.url, "shop.example.com", rate=100, max_seconds=30, vegeta=vegeta) as traffic:
        time.sleep(0.2)
        app.failing = True
        time.sleep(0.3)
        app.failing = False
        time.sleep(0.2)
    failed = traffic.failures()
    assert failed and {r.status for r in failed} == {503} and {r.kind for r in failed} == {"503"}
    assert traffic.summary()["failures"][0] == "503"
    # A port nothing listens on: every request fails, with no HTTP status.
    with App() as closed:
        url = closed.url
    with Traffic(url, "shop.example.com", rate=50, max_seconds=1, vegeta=vegeta) as traffic:
        pass
    refused = traffic.failures()
    assert refused and all(r.status == 0 and r.kind == "connection refused" for r in refused)


def test_the_load_is_bounded_by_its_rate_and_duration(vegeta):
    with App() as app:
        with Traffic(app.url, "shop.example.com", rate=50, max_seconds=1, vegeta=vegeta) as traffic:
            time.sleep(3)  # longer than max_seconds: vegeta stops by itself
        assert 0 < traffic.summary()["sent"] <= 50 and len(app.hosts) == traffic.summary()["sent"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"ingress": "http://10.0.0.1:80"}, "ingress is 'http://10.0.0.1:80'; allowed: http://127.0.0.1:PORT"),
    ({"rate": 120.5}, "rate 120.5/s for 900.0 s; allowed: a whole number up to 1000/s for up to 3600 s"),
    ({"max_seconds": 7200}, "rate 120.0/s for 7200 s; allowed: "),
    ({"workers": 8, "max_workers": 4}, "workers 8, max_workers 4; allowed: 0 < workers <= max_workers <= 1000"),
])
def test_a_load_that_would_leave_the_machine_or_has_no_bound_is_refused(kwargs, message):
    with pytest.raises(ValueError) as error:
        Traffic(**{"ingress": "http://127.0.0.1:18080", "host": "shop.example.com", **kwargs})
    assert str(error.value).startswith(message)


def test_without_vegeta_the_error_says_how_to_build_it(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(LoadToolMissing, match=r"vegeta is not on PATH: build it with `scripts/toolchain.sh vegeta`"):
        Traffic("http://127.0.0.1:18080", "shop.example.com")


def test_a_vegeta_result_becomes_a_response():
    ok = Response.from_vegeta({"code": 200, "timestamp": "2026-11-27T10:00:00.123456789Z", "latency": 2500000,
                               "error": "", "headers": {"X-Slot": ["green"], "X-Version": ["2.0.0"]}})
    assert ok == Response(1795773600.123456, 0.0025, 200, "green", "2.0.0", "") and not ok.failed
    refused = Response.from_vegeta({"code": 0, "timestamp": "2026-11-27T10:00:00Z", "latency": 1000, "headers": None,
                                    "error": 'Get "http://127.0.0.1:1/": dial tcp 127.0.0.1:1: connect: '
                                             "connection refused"})
    assert refused.failed and refused.kind == "connection refused" and (refused.slot, refused.version) == ("", "")
