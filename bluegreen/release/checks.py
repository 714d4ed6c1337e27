"""Checks around a flip: is a slot ready, does prod serve the right pods, do the smoke checks pass."""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..contract import Names, selected_slot
from . import metrics
from .kube import KubeClient, KubeError, deployment_ready

# --check-for, --check-every and --max-error-rate: their defaults and bounds, held here only.
CHECK_FOR_DEFAULT = "0"  # once, as without a window
CHECK_EVERY_DEFAULT = "5s"
MAX_WINDOW = 3600.0  # seconds: a window longer than an hour is a soak test, not a release check
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Right after the flip, routes and Endpoints settle: a URL check that meets one of these answers
# (None: no connection) is asked again, for this long after the flip, before it counts as failed.
SETTLING = (None, 404, 502, 503)
SETTLE_SECONDS = 30.0
# Where --metrics-url comes from when it is not given (the local cluster sets it: scripts/activate).
METRICS_ENV = "BLUEGREEN_INGRESS_METRICS"


def parse_duration(flag: str, text: str, minimum: float = 0.0) -> float:
    """Seconds in `text` (`30s`, `2m`, `1m30s`, `500ms`, `0`); a ValueError naming `flag`, the value
    and what is allowed otherwise."""
    allowed = (f"a duration like 30s, 2m or 1m30s (units ms, s, m, h), from {minimum:g}s to "
               f"{MAX_WINDOW:g}s")
    value = text.strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value)
    if value == "0":
        seconds = 0.0
    elif parts and "".join(number + unit for number, unit in parts) == value:
        seconds = sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)
    else:
        raise ValueError(f"{flag} is {text!r}; allowed: {allowed}")
    if not minimum <= seconds <= MAX_WINDOW:
        raise ValueError(f"{flag} is {text!r}; allowed: {allowed}")
    return seconds


def parse_percent(flag: str, text: str) -> float:
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        value = math.nan
    if not 0 <= value <= 100:  # NaN fails this too
        raise ValueError(f"{flag} is {text!r}; allowed: a number from 0 to 100 (a percentage of requests)")
    return value


def round_count(window: float, every: float) -> int:
    """Rounds at 0, every, 2*every, ... up to the end of the window; one when there is no window."""
    return 1 if window <= 0 else int(math.floor(window / every + 1e-9)) + 1


def slot_readiness(kube: KubeClient, names: Names, slot: str) -> tuple[int, int]:
    """(available, desired) replicas of a slot's Deployment; (0, 0) when it has none."""
    return deployment_ready(kube.deployment(names.namespace, names.deployment(slot)))


def wait_available(kube: KubeClient, names: Names, slot: str, timeout: float, say) -> tuple[int, int]:
    deadline, last = time.monotonic() + timeout, None
    while True:
        available, desired = slot_readiness(kube, names, slot)
        if (available, desired) != last:
            say(f"    {slot}: {available}/{desired} available")
            last = (available, desired)
        if desired and available == desired:
            return available, desired
        if time.monotonic() > deadline:
            return available, desired
        time.sleep(0.5)


def pod_ready(pod: dict) -> bool:
    """The pod is Ready and not terminating."""
    conditions = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []}
    return conditions.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp")


API_READY_SECONDS = 60  # how long a step waits for the API server after a failure, before it acts


def wait_api_server(kube: KubeClient, timeout: float, say, interval: float = 1.0, every: float = 5.0) -> str | None:
    """Wait until the API server is ready (/readyz), saying so every `every` s; None once it is,
    else why it was not after `timeout` s."""
    started = time.monotonic()
    said = None
    while True:
        problem = kube.not_ready()
        waited = time.monotonic() - started
        if problem is None:
            if said is not None:
                say(f"    the API server is ready after {waited:.0f} s")
            return None
        if said is None or waited - said >= every:
            say(f"    waiting for the API server ({waited:.0f} of {timeout:.0f} s): {problem}")
            said = waited
        if waited >= timeout:
            return problem
        time.sleep(interval)


def ready_pod_ips(kube: KubeClient, names: Names, slot: str) -> list[str]:
    return sorted(pod["status"]["podIP"] for pod in kube.pods(names.namespace, names.pod_selector(slot))
                  if pod_ready(pod) and pod["status"].get("podIP"))


def verify_serving(kube: KubeClient, names: Names, role: str, slot: str, timeout: float = 30.0) -> str | None:
    """None when the `role` Service selects `slot` and its ready Endpoints are exactly that slot's
    ready pods; otherwise what is wrong (after waiting up to `timeout` for the controllers)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            service = kube.service(names.namespace, names.service(role))
            selected = selected_slot(service)
            endpoints = kube.endpoints(names.namespace, names.service(role)).ready
            pods = ready_pod_ips(kube, names, slot)
            if selected != slot:
                problem = f"Service {names.service(role)} selects slot {selected!r}, not {slot}"
            elif not endpoints:
                problem = f"Service {names.service(role)} has no ready Endpoints"
            elif endpoints != pods:
                problem = f"Service {names.service(role)} Endpoints {endpoints} are not the {slot} pods {pods}"
            else:
                return None
        except KubeError as error:
            problem = str(error)
        if time.monotonic() > deadline:
            return problem
        time.sleep(0.5)


def smoke_checks(target: str, url: str, check_url: str | None, check_cmd: str | None,
                 env: dict[str, str], say, timeout: float = 10.0, cwd: str | None = None,
                 settle_until: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Run the user's checks against `target` (stage or prod); returns the failures.

    `check_url` may use {url}, the target's URL without its trailing slash
    (e.g. '{url}/healthz'); `check_cmd` runs in a shell with BLUEGREEN_TARGET, BLUEGREEN_URL,
    BLUEGREEN_SLOT, BLUEGREEN_SERVICE and BLUEGREEN_NAMESPACE set. Until `settle_until` (a
    `clock` time: right after the flip), a URL check that gets no connection, 404, 502 or 503 is
    asked again, once a second, before it counts as failed.
    """
    failures = []
    base = url.rstrip("/")
    if check_url and "{url}" in check_url and not base:
        # stageAccess internal: the stage host has no route, so there is no URL to put in.
        failures.append(f"{target} has no URL (stageAccess is internal): check it in the cluster with --check-cmd "
                        "(BLUEGREEN_SERVICE, BLUEGREEN_NAMESPACE; e.g. through kubectl port-forward)")
    elif check_url:
        address = check_url.replace("{url}", base)
        ingress = os.environ.get("BLUEGREEN_INGRESS")
        say(f"    check {target}: GET {address}" + (f" (through {ingress})" if ingress else ""))
        failure = _url_check(address, ingress, timeout, settle_until, say, clock, sleep)
        if failure:
            failures.append(failure)
    if check_cmd:
        say(f"    check {target}: {check_cmd}")
        done = subprocess.run(check_cmd, shell=True, env={**os.environ, **env, "BLUEGREEN_TARGET": target,
                                                           "BLUEGREEN_URL": base}, timeout=300, cwd=cwd)
        if done.returncode != 0:
            failures.append(f"{check_cmd!r} exited {done.returncode}, expected 0")
    for failure in failures:
        say(f"    FAILED: {failure}")
    return failures


def _url_check(address: str, ingress: str | None, timeout: float, settle_until: float | None, say,
               clock: Callable[[], float], sleep: Callable[[float], None]) -> str | None:
    """None when GET `address` answers 2xx; otherwise what it answered."""
    import http.client  # here, as in http_get: a command's start (rollback's) needs no HTTP client
    import urllib.error

    retried = 0
    while True:
        try:
            status: int | None = http_get(address, ingress, timeout)
            answer = f"HTTP {status}, expected 2xx"
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            status, answer = None, str(getattr(error, "reason", error))
        except ValueError as error:  # a malformed URL or BLUEGREEN_INGRESS: asking again will not help
            return f"GET {address}: {error}"
        if status is not None and 200 <= status < 300:
            if retried:
                say(f"    GET {address}: 2xx after {retried} more tries (routes settled)")
            return None
        if status not in SETTLING or settle_until is None or clock() >= settle_until:
            return f"GET {address}: {answer}" + (f" (also after {retried} more tries while routes settled)"
                                                 if retried else "")
        if not retried:
            say(f"    GET {address}: {answer}; routes and Endpoints may still be settling after the flip: "
                f"asking again once a second, for up to {max(0.0, settle_until - clock()):.0f}s")
        retried += 1
        sleep(1.0)


@dataclass
class Window:
    """How long and how often the checks run, and the metrics they read (`bluegreen promote
    --check-for --check-every --max-error-rate --metrics-url`)."""

    seconds: float = field(default_factory=lambda: parse_duration("--check-for", CHECK_FOR_DEFAULT))
    every: float = field(default_factory=lambda: parse_duration("--check-every", CHECK_EVERY_DEFAULT))
    max_error_rate: float | None = None
    metrics_url: str | None = None

    @property
    def rounds(self) -> int:
        return round_count(self.seconds, self.every)


@dataclass
class WindowResult:
    failures: list[str] = field(default_factory=list)
    rounds: list[dict] = field(default_factory=list)  # one entry a round: its time, result, shares
    totals: dict[str, metrics.Share] = field(default_factory=dict)  # Service -> 5xx share over the window

    def summary(self) -> dict:
        return {"rounds": self.rounds, "failures": self.failures,
                "errorRate": {service: {"requests": total.requests, "errors5xx": total.errors,
                                        "percent": round(total.percent, 2)}
                              for service, total in self.totals.items()}}


def checks_over_time(target: str, url: str, check_url: str | None, check_cmd: str | None,
                     env: dict[str, str], say, window: Window, namespace: str, services: dict[str, str],
                     cwd: str | None = None, settle_until: float | None = None,
                     clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep) -> WindowResult:
    """The user's checks against `target`, round after round through the window, and with
    `window.max_error_rate` the 5xx share of each Service in `services` (role -> Service name)
    between one round's scrape of the ingress controller's metrics and the next. Stops at the
    first round that fails; the target's own Service is the one judged against the rate."""
    result = WindowResult()
    rounds, started = window.rounds, clock()
    reading = window.max_error_rate is not None and window.metrics_url
    previous: dict[str, metrics.Counts] = {}
    if reading:
        assert window.metrics_url
        try:
            previous = metrics.counts(metrics.scrape(window.metrics_url), namespace, services.values())
        except metrics.MetricsError as error:
            result.failures.append(f"the ingress metrics could not be read: {error}")
            say(f"    FAILED: {result.failures[-1]}")
            return result
        result.totals = {service: metrics.Share(0, 0) for service in services.values()}
    for number in range(1, rounds + 1):
        wait = started + (number - 1) * window.every - clock()
        if wait > 0:
            sleep(wait)
        lines: list[str] = []
        quiet = lines.append if rounds > 1 else say  # one line a round in a window; every detail once
        failures = smoke_checks(target, url, check_url, check_cmd, env, quiet, cwd=cwd,
                                settle_until=settle_until, clock=clock, sleep=sleep)
        shares: dict[str, metrics.Share] = {}
        if reading and number > 1:
            assert window.metrics_url and window.max_error_rate is not None
            try:
                now = metrics.counts(metrics.scrape(window.metrics_url), namespace, services.values())
            except metrics.MetricsError as error:
                failures.append(f"the ingress metrics could not be read: {error}")
            else:
                shares = {service: metrics.share(previous[service], now[service]) for service in services.values()}
                previous = now
                for service, part in shares.items():
                    result.totals[service] += part
                judged = shares[services[target]]
                if judged.requests and judged.percent > window.max_error_rate:
                    failures.append(f"Service {services[target]} answered 5xx to {judged.errors} of "
                                    f"{judged.requests} requests ({judged.percent:.1f}%) in round {number}/{rounds}, "
                                    f"above --max-error-rate {window.max_error_rate:g}%")
        verdict = "FAIL" if failures else "pass"
        at = clock() - started
        shown = ", ".join(f"{service} {part.describe()}" for service, part in shares.items())
        if reading and number == 1:
            shown = "ingress metrics: first scrape (the rates start with round 2)"
        result.rounds.append({"round": number, "at": round(at, 2), "ok": not failures, "failures": failures,
                              **({"errorRate": {s: [p.requests, p.errors] for s, p in shares.items()}}
                                 if shares else {})})
        if rounds > 1 or shown:
            say(f"    round {number}/{rounds} at {at:.1f}s: {target} {verdict}" + (f"; {shown}" if shown else ""))
        if failures:
            if rounds > 1:
                for failure in failures:
                    say(f"    FAILED: {failure}")
            result.failures = failures
            return result
    return result


def http_get(address: str, ingress: str | None, timeout: float) -> int:
    """The HTTP status of GET `address`. With `ingress` (BLUEGREEN_INGRESS, http://HOST:PORT), the
    request goes there with the URL's host in the Host header, like `curl --connect-to`: how the
    local cluster's ingress is reached, and how a user tests an ingress before DNS points at it."""
    import http.client  # imported on the first check: the tool's start path, which needs none, stays short
    import urllib.error
    import urllib.parse
    import urllib.request

    if not ingress:
        try:
            with urllib.request.urlopen(address, timeout=timeout) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
    url, via = urllib.parse.urlsplit(address), urllib.parse.urlsplit(ingress)
    if via.scheme != "http" or not via.hostname:
        raise ValueError(f"BLUEGREEN_INGRESS is {ingress!r}; allowed: http://HOST:PORT")
    conn = http.client.HTTPConnection(via.hostname, via.port or 80, timeout=timeout)
    try:
        target = (url.path or "/") + ("?" + url.query if url.query else "")
        conn.request("GET", target, headers={"Host": url.netloc})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()
