"""`bluegreen promote --check-for --check-every --max-error-rate --metrics-url`: the duration and rate
parsers, the 5xx share from two scrapes of Traefik's metrics (texts copied from the real Traefik on
the local node), the round loop on a fake clock, the settling retry after the flip, and the
refusals of bad values before anything changes."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from bluegreen.release import checks, metrics
from bluegreen.release.checks import Window, checks_over_time, parse_duration, parse_percent, round_count
from tests.unit.conftest import prod_slot
from tests.unit.fake_world import V2

FIXTURES = Path(__file__).parent / "fixtures"
NS = "bg-e2e-checks"
SERVICES = {"prod": "web-prod", "stage": "web-stage"}


# --- durations and rates --------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [("0", 0.0), ("30s", 30.0), ("2m", 120.0), ("1m30s", 90.0),
                                               ("500ms", 0.5), ("1h", 3600.0), ("1.5s", 1.5), (" 10s ", 10.0)])
def test_durations(text, seconds):
    assert parse_duration("--check-for", text) == seconds


@pytest.mark.parametrize("text", ["", "30", "s", "-5s", "5x", "5 s", "2h", "1m 30s", "10s5", "1e3s", "0s0"])
def test_a_bad_duration_names_the_flag_the_value_and_what_is_allowed(text):
    with pytest.raises(ValueError) as error:
        parse_duration("--check-for", text)
    assert str(error.value) == (f"--check-for is {text!r}; allowed: a duration like 30s, 2m or 1m30s "
                                "(units ms, s, m, h), from 0s to 3600s")


def test_an_interval_has_a_floor():
    assert parse_duration("--check-every", "1s", minimum=1.0) == 1.0
    with pytest.raises(ValueError, match=r"--check-every is '500ms'; allowed: .* from 1s to 3600s"):
        parse_duration("--check-every", "500ms", minimum=1.0)


@pytest.mark.parametrize(("text", "value"), [("0", 0.0), ("5", 5.0), ("0.5", 0.5), ("100", 100.0), ("5%", 5.0)])
def test_rates(text, value):
    assert parse_percent("--max-error-rate", text) == value


@pytest.mark.parametrize("text", ["-1", "101", "five", "nan", ""])
def test_a_bad_rate_is_named(text):
    with pytest.raises(ValueError) as error:
        parse_percent("--max-error-rate", text)
    assert str(error.value) == (f"--max-error-rate is {text!r}; allowed: a number from 0 to 100 "
                                "(a percentage of requests)")


@pytest.mark.parametrize(("window", "every", "rounds"), [(0, 5, 1), (10, 2, 6), (10, 3, 4), (2, 2, 2), (0.9, 1, 1),
                                                         (30, 5, 7)])
def test_round_count(window, every, rounds):
    assert round_count(window, every) == rounds


# --- Traefik's metrics ----------------------------------------------------------------------------

def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_the_real_traefik_text_names_the_chart_services():
    """Copied from the local Traefik (tests/e2e/test_checks_over_time.py keeps each scrape in
    .state/checks-metrics/): web-prod and web-stage were counted under bg-e2e-checks-web-*-http@kubernetes."""
    found = metrics.counts(fixture("traefik-metrics-before.prom"), NS, SERVICES.values())
    assert {s: (c.requests, c.errors) for s, c in found.items()} == {"web-prod": (3046, 0), "web-stage": (8, 0)}
    other = metrics.counts(fixture("traefik-metrics-before.prom"), "bg-other", SERVICES.values())
    assert {s: (c.requests, c.errors) for s, c in other.items()} == {"web-prod": (0, 0), "web-stage": (0, 0)}


def test_the_real_traefik_text_of_an_httproute_names_the_chart_service():
    """Copied from the local Traefik right after the switch to routing gateway, before and after 20
    requests to prod: the HTTPRoute's backend is bg-e2e-checks-web-prod-http-80@kubernetesgateway;
    the Ingress's series is still in the first scrape and gone from the second. Summed, prod's
    counter went down (7157 -> 397) and read as a reset, 397 requests; series by series, 20."""
    before = metrics.counts(fixture("traefik-metrics-gateway-before.prom"), NS, SERVICES.values())
    after = metrics.counts(fixture("traefik-metrics-gateway-after.prom"), NS, SERVICES.values())
    assert (before["web-prod"].requests, after["web-prod"].requests) == (7157, 397)
    assert metrics.share(before["web-prod"], after["web-prod"]) == metrics.Share(20, 0)


@pytest.mark.parametrize(("label", "service", "matched"), [
    (f"{NS}-web-prod-80@kubernetes", "web-prod", True),
    (f"{NS}-web-prod-http@kubernetes", "web-prod", True),
    (f"{NS}-web-stage-80@kubernetescrd", "web-stage", True),
    (f"{NS}-web-stage-http-80@kubernetesgateway", "web-stage", True),  # Gateway API: <port name>-<number>
    (f"{NS}-web-stage-80@kubernetes", "web-prod", False),
    (f"other-{NS}-web-prod-80@kubernetes", "web-prod", False),
    (f"{NS}-web-prod-80@file", "web-prod", False),
    ("ping@internal", "web-prod", False),
    (f"{NS}-web-prod-80", "web-prod", False),
])
def test_the_one_mapping_from_traefik_labels_to_services(label, service, matched):
    assert metrics.matches(label, NS, service) is matched


def test_the_error_share_from_two_real_scrapes():
    """Before and after 3 s of load on a stage running the flaky build (30% answered 500)."""
    before = metrics.counts(fixture("traefik-metrics-before.prom"), NS, SERVICES.values())
    after = metrics.counts(fixture("traefik-metrics-after.prom"), NS, SERVICES.values())
    stage = metrics.share(before["web-stage"], after["web-stage"])
    assert stage == metrics.Share(120, 36) and stage.describe() == "5xx 36/120 (30.0%)"
    assert metrics.share(before["web-prod"], after["web-prod"]) == metrics.Share(607, 0)


def sample(service: str, code: str, value: float) -> str:
    return (f'traefik_service_requests_total{{code="{code}",method="GET",protocol="http",'
            f'service="{NS}-{service}-80@kubernetes"}} {value}\n')


HEAD = "# HELP traefik_service_requests_total How many HTTP requests processed on a service, partitioned by status " \
       "code, protocol, and method.\n# TYPE traefik_service_requests_total counter\n"


def test_the_share_is_the_counter_delta_and_survives_a_reset():
    before = metrics.counts(HEAD + sample("web-prod", "200", 100) + sample("web-prod", "500", 10), NS, ["web-prod"])
    after = metrics.counts(HEAD + sample("web-prod", "200", 170) + sample("web-prod", "500", 40)
                           + sample("web-prod", "404", 5), NS, ["web-prod"])
    assert metrics.share(before["web-prod"], after["web-prod"]) == metrics.Share(105, 30)
    restarted = metrics.counts(HEAD + sample("web-prod", "200", 8) + sample("web-prod", "502", 2), NS, ["web-prod"])
    assert metrics.share(after["web-prod"], restarted["web-prod"]) == metrics.Share(10, 2)
    assert metrics.Share(0, 0).describe() == "no requests" and metrics.Share(0, 0).percent == 0.0


def test_not_prometheus_text_is_a_metrics_error():
    with pytest.raises(metrics.MetricsError, match="not Prometheus text format"):
        metrics.counts("traefik_service_requests_total{service=broken 1\n", NS, ["web-prod"])


# --- the round loop, on a fake clock --------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now, self.slept = 1000.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


def scrapes(monkeypatch, texts: list[str]) -> list[str]:
    """metrics.scrape answers these texts in turn; returns the URLs it was asked for."""
    asked: list[str] = []

    def scrape(url: str, timeout: float = 5.0) -> str:
        asked.append(url)
        return texts[len(asked) - 1]

    monkeypatch.setattr(metrics, "scrape", scrape)
    return asked


def counters(prod: tuple[int, int], stage: tuple[int, int]) -> str:
    return (HEAD + sample("web-prod", "200", prod[0] - prod[1]) + sample("web-prod", "500", prod[1])
            + sample("web-stage", "200", stage[0] - stage[1]) + sample("web-stage", "500", stage[1]))


def run_window(window: Window, clock: Clock, said: list[str], target: str = "stage", check_cmd: str | None = None):
    return checks_over_time(target, "", None, check_cmd, {}, said.append, window, NS, SERVICES,
                            clock=clock, sleep=clock.sleep)


def test_rounds_run_through_the_window_and_read_the_rate_between_scrapes(monkeypatch):
    clock, said = Clock(), []
    # Cumulative counters at each round's scrape: the first is the baseline.
    asked = scrapes(monkeypatch, [counters((0, 0), (0, 0)), counters((100, 0), (50, 1)),
                                  counters((200, 0), (100, 2)), counters((300, 1), (150, 2))])
    result = run_window(Window(6, 2, max_error_rate=5, metrics_url="http://127.0.0.1:9/metrics"), clock, said)
    assert result.failures == [] and len(asked) == 4
    assert clock.slept == [2.0, 2.0, 2.0] and [r["at"] for r in result.rounds] == [0, 2, 4, 6]
    assert said == [
        "    round 1/4 at 0.0s: stage pass; ingress metrics: first scrape (the rates start with round 2)",
        "    round 2/4 at 2.0s: stage pass; web-prod 5xx 0/100 (0.0%), web-stage 5xx 1/50 (2.0%)",
        "    round 3/4 at 4.0s: stage pass; web-prod 5xx 0/100 (0.0%), web-stage 5xx 1/50 (2.0%)",
        "    round 4/4 at 6.0s: stage pass; web-prod 5xx 1/100 (1.0%), web-stage 5xx 0/50 (0.0%)",
    ]
    assert result.summary()["errorRate"] == {"web-prod": {"requests": 300, "errors5xx": 1, "percent": 0.33},
                                             "web-stage": {"requests": 150, "errors5xx": 2, "percent": 1.33}}


def test_the_first_round_above_the_rate_stops_the_window(monkeypatch):
    clock, said = Clock(), []
    scrapes(monkeypatch, [counters((0, 0), (0, 0)), counters((10, 0), (10, 0)), counters((20, 0), (40, 9))])
    result = run_window(Window(10, 2, max_error_rate=5, metrics_url="http://127.0.0.1:9/metrics"), clock, said)
    assert result.failures == ["Service web-stage answered 5xx to 9 of 30 requests (30.0%) in round 3/6, "
                               "above --max-error-rate 5%"]
    assert len(result.rounds) == 3 and said[-1] == f"    FAILED: {result.failures[0]}"
    assert said[-2].startswith("    round 3/6 at 4.0s: stage FAIL; ")


def test_only_the_target_service_is_judged(monkeypatch):
    """Before the flip, prod's errors are the old release's, not the one being promoted."""
    clock, said = Clock(), []
    scrapes(monkeypatch, [counters((0, 0), (0, 0)), counters((10, 9), (10, 0))])
    assert run_window(Window(2, 2, 5, "http://127.0.0.1:9/metrics"), clock, said).failures == []
    scrapes(monkeypatch, [counters((0, 0), (0, 0)), counters((10, 9), (10, 0))])
    assert run_window(Window(2, 2, 5, "http://127.0.0.1:9/metrics"), clock, said, target="prod").failures


def test_a_metrics_endpoint_that_does_not_answer_fails_the_checks():
    clock, said = Clock(), []
    result = run_window(Window(4, 2, 5, "http://127.0.0.1:9/metrics"), clock, said)  # port 9: nothing listens
    assert result.failures[0].startswith("the ingress metrics could not be read: GET http://127.0.0.1:9/metrics:")


def test_a_failing_command_fails_its_round_and_ends_the_window(tmp_path):
    clock, said = Clock(), []
    marker = tmp_path / "rounds"
    # Passes twice, then fails: the third round ends the window.
    command = f'echo x >> {marker}; test "$(wc -l < {marker})" -lt 3'
    result = run_window(Window(10, 2), clock, said, check_cmd=command)
    assert [r["ok"] for r in result.rounds] == [True, True, False]
    assert result.failures == [f"{command!r} exited 1, expected 0"]
    assert [line for line in said if line.startswith("    round ")] == ["    round 1/6 at 0.0s: stage pass",
                                                          "    round 2/6 at 2.0s: stage pass",
                                                          "    round 3/6 at 4.0s: stage FAIL"]


# --- a URL check right after the flip -------------------------------------------------------------

def answers(monkeypatch, replies: list) -> list[str]:
    asked: list[str] = []

    def http_get(address, ingress, timeout):
        asked.append(address)
        reply = replies[min(len(asked), len(replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply

    monkeypatch.setattr(checks, "http_get", http_get)
    return asked


def test_a_url_check_waits_for_routes_to_settle_after_the_flip(monkeypatch):
    clock, said = Clock(), []
    asked = answers(monkeypatch, [ConnectionRefusedError(111, "Connection refused"), 502, 404, 503, 200])
    failures = checks.smoke_checks("prod", "http://shop", "{url}/healthz", None, {}, said.append,
                                   settle_until=clock() + 30, clock=clock, sleep=clock.sleep)
    assert failures == [] and len(asked) == 5 and clock.slept == [1.0] * 4
    assert said[1] == ("    GET http://shop/healthz: [Errno 111] Connection refused; routes and Endpoints may still "
                       "be settling after the flip: asking again once a second, for up to 30s")
    assert said[2] == "    GET http://shop/healthz: 2xx after 4 more tries (routes settled)"


def test_the_settling_retry_is_bounded(monkeypatch):
    clock, said = Clock(), []
    asked = answers(monkeypatch, [503])
    failures = checks.smoke_checks("prod", "http://shop", "{url}/healthz", None, {}, said.append,
                                   settle_until=clock() + 30, clock=clock, sleep=clock.sleep)
    assert failures == ["GET http://shop/healthz: HTTP 503, expected 2xx (also after 30 more tries while routes "
                        "settled)"]
    assert len(asked) == 31 and sum(clock.slept) == 30


@pytest.mark.parametrize("reply", [500, 401, http.client.RemoteDisconnected("closed")])
def test_other_answers_and_stage_checks_fail_at_once(monkeypatch, reply):
    clock, said = Clock(), []
    answers(monkeypatch, [reply if isinstance(reply, Exception) else reply, 200])
    settle = None if isinstance(reply, Exception) else clock() + 30  # before the flip: no settling
    failures = checks.smoke_checks("stage", "http://shop", "{url}/healthz", None, {}, said.append,
                                   settle_until=settle, clock=clock, sleep=clock.sleep)
    assert len(failures) == 1 and clock.slept == []


# --- promote, end to end over the stack and cluster in memory -------------------------------------

@pytest.mark.parametrize(("args", "error"), [
    (["--check-for", "5x", "--check-cmd", "true"],
     "--check-for is '5x'; allowed: a duration like 30s, 2m or 1m30s (units ms, s, m, h), from 0s to 3600s"),
    (["--check-for", "10s", "--check-every", "0s", "--check-cmd", "true"],
     "--check-every is '0s'; allowed: a duration like 30s, 2m or 1m30s (units ms, s, m, h), from 1s to 3600s"),
    (["--check-for", "10s", "--check-every", "20s", "--check-cmd", "true"],
     "--check-every is '20s'; allowed: at most --check-for (10s)"),
    (["--check-for", "10s"], "--check-for is '10s', but there is nothing to check: add --check-url, --check-cmd or "
                             "--max-error-rate"),
    (["--max-error-rate", "5", "--metrics-url", "http://127.0.0.1:9/metrics"],
     "--max-error-rate needs --check-for (the window the ingress metrics are read over, e.g. --check-for 30s): "
     "a rate is a difference between two scrapes"),
    (["--check-for", "10s", "--max-error-rate", "150", "--metrics-url", "http://127.0.0.1:9/metrics"],
     "--max-error-rate is '150'; allowed: a number from 0 to 100 (a percentage of requests)"),
    (["--check-for", "10s", "--max-error-rate", "5"],
     "--max-error-rate needs the ingress controller's metrics: --metrics-url is not given and "
     "$BLUEGREEN_INGRESS_METRICS is not set (scripts/activate sets it for the local cluster; elsewhere: "
     "--metrics-url http://HOST:PORT/metrics, Traefik's Prometheus endpoint)"),
])
def test_bad_values_are_refused_before_anything_changes(tool, world, monkeypatch, args, error):
    monkeypatch.delenv(checks.METRICS_ENV, raising=False)
    tool("deploy", V2)
    before = (json.dumps(world.config), len(world.updates))
    result = tool("promote", *args, expect=2)
    assert result["refused"] is True and result["error"] == error
    assert (json.dumps(world.config), len(world.updates)) == before and prod_slot(world) == "blue"


def test_promote_checks_stage_and_prod_through_the_window(tool, world):
    tool("deploy", V2)
    result = tool("promote", "--check-cmd", "true", "--check-for", "2s", "--check-every", "1s")
    assert [r["round"] for r in result["checks"]["stage"]["rounds"]] == [1, 2, 3]
    assert [r["round"] for r in result["checks"]["prod"]["rounds"]] == [1, 2, 3]
    assert prod_slot(world) == "green" and world.config["productionSlot"] == "green"


def test_a_round_that_fails_after_the_flip_sends_prod_back(tool, world, tmp_path):
    tool("deploy", V2)
    marker = tmp_path / "prod-rounds"
    # Always passes on stage; fails prod's second round.
    command = f'[ "$BLUEGREEN_TARGET" = stage ] || {{ echo x >> {marker}; [ "$(wc -l < {marker})" -lt 2 ]; }}'
    result = tool("promote", "--check-cmd", command, "--check-for", "2s", "--check-every", "1s", expect=1)
    assert "rolled back, prod serves blue" in result["error"]
    assert [r["ok"] for r in result["checks"]["prod"]["rounds"]] == [True, False]
    assert prod_slot(world) == "blue" and world.config["productionSlot"] == "blue"
