"""Read-only access to the Kubernetes API: Services, EndpointSlices, Deployments, Helm release Secrets.

The release tool changes the cluster only through Pulumi; it reads the cluster to check that a
slot is ready and that prod has ready Endpoints. A small client on the standard library keeps the
project's dependencies to pulumi, pulumi-kubernetes and pytest, and keeps a poll cheap enough to
watch prod's Endpoints at 20 Hz over one kept-alive connection.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class KubeError(RuntimeError):
    pass


def default_kubeconfig() -> str:
    return os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")


class KubeClient:
    """GETs (and, for `recover`, one DELETE) against the API server of a kubeconfig context."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, timeout: float = 10.0):
        path = kubeconfig or default_kubeconfig()
        try:
            with open(path) as f:
                config = yaml.safe_load(f)
        except OSError as error:
            raise KubeError(f"cannot read kubeconfig {path}: {error}") from error
        context_name = context or config.get("current-context")
        ctx = _named(config.get("contexts", []), context_name, "context")
        cluster = _named(config.get("clusters", []), ctx["cluster"], "cluster")
        user = _named(config.get("users", []), ctx["user"], "user") if ctx.get("user") else {}
        server = urllib.parse.urlparse(cluster["server"])
        self._host, self._port = server.hostname, server.port or (443 if server.scheme == "https" else 80)
        self._https = server.scheme == "https"
        self._base = server.path.rstrip("/")
        self._headers = {"Accept": "application/json"}
        self._timeout = timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="bluegreen-kube-")
        self._ssl = self._ssl_context(cluster, user, os.path.dirname(os.path.abspath(path))) if self._https else None
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = Path(user["tokenFile"]).read_text().strip()
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._local = threading.local()  # one kept-alive connection per thread

    def _ssl_context(self, cluster: dict, user: dict, base_dir: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self._file(cluster, "certificate-authority", base_dir))
        if cluster.get("insecure-skip-tls-verify"):
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        cert = self._file(user, "client-certificate", base_dir)
        if cert:
            context.load_cert_chain(cert, self._file(user, "client-key", base_dir))
        return context

    def _file(self, section: dict, key: str, base_dir: str) -> str | None:
        """A kubeconfig file reference, or its inline `-data` written to a private temp file."""
        if section.get(f"{key}-data"):
            path = os.path.join(self._tmp.name, key)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(base64.b64decode(section[f"{key}-data"]))
            return path
        if section.get(key):
            return os.path.join(base_dir, section[key])
        return None

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, context=self._ssl, timeout=self._timeout)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
        return conn

    def request(self, method: str, path: str, query: dict | None = None) -> dict | None:
        """JSON of the object at `path`, or None when it does not exist (404)."""
        url = self._base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        for attempt in (1, 2):  # a kept-alive connection the server closed is retried once
            conn = self._connection()
            try:
                conn.request(method, url, headers=self._headers)
                response = conn.getresponse()
                body = response.read()
                break
            except (http.client.HTTPException, OSError) as error:
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise KubeError(f"{method} {path}: {error}") from error
        if response.status == 404:
            return None
        if response.status >= 300:
            raise KubeError(f"{method} {path}: HTTP {response.status}: {body[:300]!r}")
        return json.loads(body)

    def get(self, path: str, **query: str) -> dict | None:
        return self.request("GET", path, query or None)

    # --- the objects a release is about -------------------------------------------------------

    def service(self, namespace: str, name: str) -> dict | None:
        return self.get(f"/api/v1/namespaces/{namespace}/services/{name}")

    def deployment(self, namespace: str, name: str) -> dict | None:
        return self.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")

    def namespace(self, name: str) -> dict | None:
        return self.get(f"/api/v1/namespaces/{name}")

    def pods(self, namespace: str, selector: dict[str, str]) -> list[dict]:
        found = self.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=_selector(selector))
        return found["items"] if found else []

    def endpoints(self, namespace: str, service: str) -> Endpoints:
        """The Service's endpoints from its EndpointSlices: ready and not-ready addresses."""
        found = self.get(f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
                         labelSelector=f"kubernetes.io/service-name={service}")
        ready: list[str] = []
        not_ready: list[str] = []
        for item in (found or {}).get("items", []):
            for endpoint in item.get("endpoints") or []:
                is_ready = (endpoint.get("conditions") or {}).get("ready", True)
                (ready if is_ready else not_ready).extend(endpoint.get("addresses", []))
        return Endpoints(sorted(ready), sorted(not_ready))

    def helm_releases(self, namespace: str, release: str) -> list[dict]:
        """Helm's release records (one Secret per revision), newest first, without the payload."""
        found = self.get(f"/api/v1/namespaces/{namespace}/secrets", labelSelector=f"owner=helm,name={release}")
        records = [
            {"name": s["metadata"]["name"], "revision": int(s["metadata"]["labels"]["version"]),
             "status": s["metadata"]["labels"].get("status", "")}
            for s in (found or {}).get("items", [])
        ]
        return sorted(records, key=lambda r: r["revision"], reverse=True)

    def delete_secret(self, namespace: str, name: str) -> None:
        self.request("DELETE", f"/api/v1/namespaces/{namespace}/secrets/{name}")


@dataclass(frozen=True)
class Endpoints:
    ready: list[str]
    not_ready: list[str]


def deployment_ready(deployment: dict | None) -> tuple[int, int]:
    """(available, desired) replicas of a Deployment that has caught up with its spec."""
    if not deployment:
        return 0, 0
    status, desired = deployment.get("status", {}), deployment["spec"].get("replicas", 1)
    if status.get("observedGeneration", 0) < deployment["metadata"].get("generation", 0):
        return 0, desired  # the controller has not seen the latest spec yet
    available = min(status.get("availableReplicas", 0), status.get("updatedReplicas", 0))
    return available, desired


@dataclass
class EndpointWatch:
    """Polls a Service's selector and ready Endpoints in a thread, aiming at `hz` polls a second.

    Used around every flip: a poll with no ready address is an outage a user would have seen.
    """

    client: KubeClient
    namespace: str
    service: str
    hz: float = 25.0  # aim above 20 Hz so that sleep jitter still leaves at least 20
    polls: list[tuple[float, str | None, tuple[str, ...], int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> EndpointWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        period = 1.0 / self.hz
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                service = self.client.service(self.namespace, self.service)
                slot = ((service or {}).get("spec", {}).get("selector") or {}).get("slot")
                endpoints = self.client.endpoints(self.namespace, self.service)
                self.polls.append((time.time(), slot, tuple(endpoints.ready), len(endpoints.not_ready)))
            except KubeError as error:
                self.errors.append(str(error))
            self._stop.wait(max(0.0, period - (time.monotonic() - started)))

    @property
    def empty_polls(self) -> int:
        return sum(1 for _, _, ready, _ in self.polls if not ready)

    @property
    def rate_hz(self) -> float:
        if len(self.polls) < 2:
            return 0.0
        return (len(self.polls) - 1) / (self.polls[-1][0] - self.polls[0][0])

    def summary(self) -> dict:
        return {"polls": len(self.polls), "empty": self.empty_polls, "errors": len(self.errors),
                "rate_hz": round(self.rate_hz, 1), "slots_seen": sorted({p[1] or "" for p in self.polls})}


def _named(items: list[dict], name: str, kind: str) -> dict:
    for item in items:
        if item.get("name") == name:
            return item[kind]
    raise KubeError(f"kubeconfig has no {kind} named {name!r}")


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
