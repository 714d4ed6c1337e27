"""The ingress controller's own request counters: the 5xx share of a Service's requests between two
scrapes of its Prometheus endpoint (`bluegreen promote --max-error-rate`).

The local ingress is Traefik (scripts/ingress/traefik.sh serves its metrics on 127.0.0.1): it counts
`traefik_service_requests_total{service=..., code=...}` per Traefik service, which it names after the
Kubernetes Service it routes to (see traefik_service_of). The text is parsed with prometheus_client's
parser; the rest is arithmetic on counters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# The counter Traefik keeps per service (with addServicesLabels), labelled service, code, method, protocol.
REQUESTS = "traefik_service_requests_total"
# Prometheus' text format names a counter family without its _total sample suffix.
REQUESTS_FAMILY = REQUESTS.removesuffix("_total")


class MetricsError(Exception):
    """The metrics endpoint could not be read or parsed."""


# Traefik names a Kubernetes backend `<namespace>-<service>-<port>@<provider>`: for an Ingress
# (`@kubernetes`, seen on the local node: bg-e2e-checks-web-prod-http@kubernetes) and Traefik's own
# CRDs (`@kubernetescrd`) the port is the Service port's name (or number, where the route gives a
# number); for a Gateway API route (`@kubernetesgateway`) it is `<name>-<number>` (web-prod-http-80).
_BACKEND = re.compile(r"-(?P<port>[0-9]+|[a-z0-9]([a-z0-9-]*[a-z0-9])?)@kubernetes(crd|gateway)?")


def matches(label: str, namespace: str, service: str) -> bool:
    """The one mapping from Traefik's `service` label to a Kubernetes Service of the chart: Traefik's
    own services (ping@internal, ...) and its weighted ones (the router's, named after the route)
    match no Service."""
    prefix = f"{namespace}-{service}"
    return label.startswith(prefix) and _BACKEND.fullmatch(label[len(prefix):]) is not None


Series = tuple[tuple[str, str], ...]  # one counter's labels, sorted


@dataclass(frozen=True)
class Counts:
    """A Service's request counters in one scrape, one a series (service label, code, method,
    protocol): counters since Traefik started, or since it first routed to that backend."""

    series: dict[Series, float] = field(default_factory=dict)

    @property
    def requests(self) -> float:
        return sum(self.series.values())

    @property
    def errors(self) -> float:
        return sum(value for key, value in self.series.items() if dict(key).get("code", "").startswith("5"))


def counts(text: str, namespace: str, services: Iterable[str]) -> dict[str, Counts]:
    """Each Service's request counters in one scrape (none for a Service Traefik has not yet
    counted a request for: its series appear with the first one)."""
    from prometheus_client.parser import text_string_to_metric_families  # 0.03 s, for --max-error-rate only

    wanted = list(services)
    found: dict[str, dict[Series, float]] = {service: {} for service in wanted}
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, TypeError) as error:
        raise MetricsError(f"not Prometheus text format: {error}") from error
    for family in families:
        if family.name != REQUESTS_FAMILY:
            continue
        for sample in family.samples:
            if sample.name != REQUESTS:
                continue
            label = sample.labels.get("service", "")
            for service in wanted:
                if matches(label, namespace, service):
                    key = tuple(sorted(sample.labels.items()))
                    found[service][key] = found[service].get(key, 0.0) + sample.value
    return {service: Counts(series) for service, series in found.items()}


@dataclass(frozen=True)
class Share:
    """What a Service answered between two scrapes."""

    requests: int
    errors: int

    @property
    def percent(self) -> float:
        return 100.0 * self.errors / self.requests if self.requests else 0.0

    def describe(self) -> str:
        if not self.requests:
            return "no requests"
        return f"5xx {self.errors}/{self.requests} ({self.percent:.1f}%)"

    def __add__(self, other: Share) -> Share:
        return Share(self.requests + other.requests, self.errors + other.errors)


def share(before: Counts, after: Counts) -> Share:
    """The counter deltas, series by series. A series new since `before` counts from 0 (Traefik
    started routing to that backend, e.g. an HTTPRoute's after a switch of routing); one that went
    down was reset (Traefik restarted); one that is gone counts nothing (Traefik drops the series
    of a backend no route uses any more, e.g. the Ingress's after that switch)."""
    requests = errors = 0.0
    for key, now in after.series.items():
        then = before.series.get(key, 0.0)
        delta = now - then if now >= then else now
        requests += delta
        if dict(key).get("code", "").startswith("5"):
            errors += delta
    return Share(int(round(requests)), int(round(errors)))


def scrape(url: str, timeout: float = 5.0) -> str:
    import http.client  # imported on the first scrape, like the parser (counts)
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        raise MetricsError(f"GET {url}: HTTP {error.code}") from error
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        raise MetricsError(f"GET {url}: {getattr(error, 'reason', error)}") from error
