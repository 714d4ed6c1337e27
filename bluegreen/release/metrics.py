"""The ingress controller's own request counters: the 5xx share of a Service's requests between two
scrapes of its Prometheus endpoint (`bluegreen promote --max-error-rate`).

The local ingress is Traefik (scripts/ingress/traefik.sh serves its metrics on 127.0.0.1): it counts
`traefik_service_requests_total{service=..., code=...}` per Traefik service, which it names after the
Kubernetes Service it routes to (see traefik_service_of). The text is parsed with prometheus_client's
parser; the rest is arithmetic on counters.
"""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

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


@dataclass(frozen=True)
class Counts:
    """Requests a Service was sent and how many were answered 5xx (counters since Traefik started)."""

    requests: float = 0.0
    errors: float = 0.0


def counts(text: str, namespace: str, services: Iterable[str]) -> dict[str, Counts]:
    """Each Service's request and 5xx counters in one scrape (0 for a Service Traefik has not yet
    counted a request for: its series appear with the first one)."""
    wanted = list(services)
    totals = {service: [0.0, 0.0] for service in wanted}
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
                    totals[service][0] += sample.value
                    if sample.labels.get("code", "").startswith("5"):
                        totals[service][1] += sample.value
    return {service: Counts(*pair) for service, pair in totals.items()}


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
    """The counter deltas. A counter that went down was reset (Traefik restarted): what it holds
    now was all counted since."""
    requests = after.requests - before.requests
    errors = after.errors - before.errors
    if requests < 0 or errors < 0:
        requests, errors = after.requests, after.errors
    return Share(int(round(requests)), int(round(errors)))


def scrape(url: str, timeout: float = 5.0) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        raise MetricsError(f"GET {url}: HTTP {error.code}") from error
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        raise MetricsError(f"GET {url}: {getattr(error, 'reason', error)}") from error
