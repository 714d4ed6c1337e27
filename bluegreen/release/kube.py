"""Read-only access to the Kubernetes API: Services, EndpointSlices, Deployments, Helm release Secrets.

The release tool changes the cluster only through Pulumi; it reads the cluster to check that a
slot is ready and that prod has ready Endpoints. A small client on the standard library keeps the
project's dependencies to pulumi, pulumi-kubernetes and pytest, and keeps a poll cheap enough to
watch prod's Endpoints at 20 Hz over one kept-alive connection. (The official `kubernetes` client
was measured as the alternative: 0.4-0.55 s to import against 0.1-0.14 s for this module, and eight
more packages to install, for the few GETs the tool makes.)

It reads the kubeconfig the way kubectl does for what clusters hand out: the current context (or
a named one), client certificates and CA files (paths relative to the kubeconfig's directory, or
inline `-data`), a token or tokenFile, and exec credential plugins (EKS, GKE, AKS and others:
client.authentication.k8s.io v1 and v1beta1), whose credential is kept until it expires or the
server answers 401. Of several files in KUBECONFIG, the first is read.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..contract import selected_slot


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
        self._cluster, self._user, self._base_dir = cluster, user, os.path.dirname(os.path.abspath(path))
        self._exec = ExecPlugin(user["exec"], ctx["user"], cluster, self._base_dir) if user.get("exec") else None
        self._lock = threading.Lock()  # guards the credential an exec plugin hands out
        self._ssl = self._ssl_context(cluster, user, self._base_dir) if self._https else None
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token_file = os.path.join(self._base_dir, user["tokenFile"])
            try:
                token = Path(token_file).read_text().strip()
            except OSError as error:
                raise KubeError(f"kubeconfig user {ctx['user']!r}: cannot read tokenFile: {error}") from error
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._local = threading.local()  # one kept-alive connection per thread
        self._generation = 0  # bumped when an exec plugin hands out a new client certificate
        self._exec_certificate = ""

    def _ssl_context(self, cluster: dict, user: dict, base_dir: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self._file(cluster, "certificate-authority", base_dir))
        if cluster.get("insecure-skip-tls-verify"):
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        cert = self._file(user, "client-certificate", base_dir)
        if cert:
            context.load_cert_chain(cert, self._file(user, "client-key", base_dir))
        return context

    def _credential(self, renew: bool = False) -> None:
        """Ask the exec plugin when there is no credential yet, it expired, or (`renew`) the server
        refused it; a client certificate it hands out replaces the TLS context."""
        assert self._exec is not None
        with self._lock:
            credential = self._exec.credential(renew)
            if credential.token:
                self._headers["Authorization"] = f"Bearer {credential.token}"
            if self._https and credential.certificate and credential.certificate != self._exec_certificate:
                self._exec_certificate = credential.certificate
                cert_data = base64.b64encode(credential.certificate.encode()).decode()
                key_data = base64.b64encode(credential.key.encode()).decode()
                user = {"client-certificate-data": cert_data, "client-key-data": key_data}
                self._ssl = self._ssl_context(self._cluster, user, self._base_dir)
                self._generation += 1

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
        if conn is not None and getattr(self._local, "generation", 0) != self._generation:
            conn.close()  # made with a client certificate the exec plugin has since replaced
            conn = None
        if conn is None:
            self._local.generation = self._generation
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, context=self._ssl, timeout=self._timeout)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
        return conn

    def request(self, method: str, path: str, query: dict | None = None) -> dict | None:
        """JSON of the object at `path`, or None when it does not exist (404)."""
        url = self._base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        if self._exec:
            self._credential()
        response, body = self._send(method, url, path)
        if response.status == 401 and self._exec:  # revoked or rotated early: ask the plugin once more
            self._credential(renew=True)
            response, body = self._send(method, url, path)
        if response.status == 404:
            return None
        if response.status >= 300:
            raise KubeError(f"{method} {path}: HTTP {response.status}: {body[:300]!r}")
        return json.loads(body)

    def _send(self, method: str, url: str, path: str) -> tuple[http.client.HTTPResponse, bytes]:
        for attempt in (1, 2):  # a kept-alive connection the server closed is retried once
            conn = self._connection()
            try:
                conn.request(method, url, headers=self._headers)
                response = conn.getresponse()
                return response, response.read()
            except (http.client.HTTPException, OSError) as error:
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise KubeError(f"{method} {path}: {error}") from error
        raise AssertionError("unreachable")

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
                slot = selected_slot(service)
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


@dataclass(frozen=True)
class Credential:
    token: str = ""
    certificate: str = ""  # PEM
    key: str = ""  # PEM
    expires: float | None = None  # epoch seconds; None: until the server refuses it


class ExecPlugin:
    """A kubeconfig user's `exec` credential plugin, run the way client-go runs it: the command
    (a path with a slash is relative to the kubeconfig's directory), its args and env, and
    KUBERNETES_EXEC_INFO; never interactive. Its ExecCredential is kept until it expires."""

    TIMEOUT_S = 60.0

    def __init__(self, spec: dict, user: str, cluster: dict, base_dir: str):
        self._spec, self._user, self._cluster = spec, user, cluster
        command = str(spec.get("command") or "")
        if not command:
            raise KubeError(f"kubeconfig user {user!r}: exec has no command")
        self._command = os.path.join(base_dir, command) if os.sep in command else command
        self._api_version = spec.get("apiVersion") or "client.authentication.k8s.io/v1"
        self._held: Credential | None = None
        self.runs = 0

    def credential(self, renew: bool = False) -> Credential:
        held = self._held
        if held and not renew and (held.expires is None or held.expires - time.time() > 10):
            return held
        self._held = self._run()
        return self._held

    def _run(self) -> Credential:
        what = f"kubeconfig user {self._user!r}: exec plugin {self._command!r}"
        executable = shutil.which(self._command)
        if not executable:
            hint = self._spec.get("installHint")
            raise KubeError(f"{what} not found" + (f"; {hint.strip()}" if hint else ""))
        info: dict[str, Any] = {"apiVersion": self._api_version, "kind": "ExecCredential",
                                "spec": {"interactive": False}}
        if self._spec.get("provideClusterInfo"):
            info["spec"]["cluster"] = {key: self._cluster[source] for key, source in (
                ("server", "server"), ("certificate-authority-data", "certificate-authority-data"),
                ("insecure-skip-tls-verify", "insecure-skip-tls-verify")) if source in self._cluster}
        env = {**os.environ, **{item["name"]: str(item["value"]) for item in self._spec.get("env") or []},
               "KUBERNETES_EXEC_INFO": json.dumps(info)}
        self.runs += 1
        try:
            done = subprocess.run([executable, *map(str, self._spec.get("args") or [])], env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=self.TIMEOUT_S)
        except subprocess.TimeoutExpired as error:
            raise KubeError(f"{what} did not answer within {self.TIMEOUT_S:.0f} s") from error
        except OSError as error:
            raise KubeError(f"{what} could not run: {error}") from error
        if done.returncode != 0:
            raise KubeError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
        try:
            status = json.loads(done.stdout)["status"]
        except (ValueError, KeyError, TypeError) as error:
            raise KubeError(f"{what} printed no ExecCredential with a status: {done.stdout[:200]!r}") from error
        credential = Credential(token=status.get("token") or "",
                                certificate=status.get("clientCertificateData") or "",
                                key=status.get("clientKeyData") or "",
                                expires=_timestamp(status.get("expirationTimestamp")))
        if not credential.token and not (credential.certificate and credential.key):
            raise KubeError(f"{what} returned neither a token nor a client certificate and key")
        return credential


def _timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as error:
        raise KubeError(f"exec plugin: expirationTimestamp {value!r} is not RFC 3339") from error


def _named(items: list[dict], name: str, kind: str) -> dict:
    for item in items:
        if item.get("name") == name:
            return item[kind]
    raise KubeError(f"kubeconfig has no {kind} named {name!r}")


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
