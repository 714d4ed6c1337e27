"""Access to the Kubernetes API: Services, EndpointSlices, Deployments, Pods, Helm release Secrets.

The release tool changes the cluster through Pulumi (and, in `repair` and `recover`, through
helm.py); with this client it reads the cluster to check that a slot is ready and that prod has
ready Endpoints, and `recover` deletes two kinds of leftovers: a pending Helm record, and a
Deployment no Helm revision has any more.

It reads your kubeconfig the way kubectl does (README: "Cluster access"). The official
`kubernetes` client does what it covers as kubectl does: its kubeconfig loader maps the cluster's
CA, `insecure-skip-tls-verify`, `tls-server-name`, client certificates and basic auth onto its
urllib3 transport, which also carries the proxy (HTTP CONNECT) and keeps connections alive. The
rest is here, each for a reason the README gives: merging the files in KUBECONFIG (first file wins
per name and for current-context), kubectl's validation, exec credential plugins, token files,
impersonation, choosing the proxy (Go's rules) and asking for compression. The client library is
imported on first use, so `bluegreen --help` and the Pulumi program never load it.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..contract import selected_slot

if TYPE_CHECKING:
    from kubernetes.client import Configuration
    from kubernetes.client.rest import RESTClientObject


class KubeError(RuntimeError):
    pass


class KubeConfigError(KubeError):
    """The kubeconfig cannot be used as it is (found before any request is sent)."""


EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
EXEC_INTERACTIVE_MODES = ("Never", "IfAvailable")  # kubectl's third, Always, needs a terminal: refused
EXEC_CLUSTER_EXTENSION = "client.authentication.k8s.io/exec"  # a cluster's config for its exec plugins
PROXY_SCHEMES = ("http", "https")  # kubectl also takes socks5, refused here (see _proxy)
# kubeconfig keys that name files, made absolute against the file that defines them (as kubectl does).
FILE_KEYS = {"cluster": ("certificate-authority",), "user": ("client-certificate", "client-key", "tokenFile")}
# Characters kept as they are in an Impersonate-Extra-<key> header name (HTTP token characters but
# %): client-go percent-encodes the others.
HEADER_KEY_SAFE = "!#$&'*+-.^_`|~"


def kubeconfig_files(kubeconfig: str | None = None) -> list[str]:
    """The files kubectl reads: the one file given (--kubeconfig), else every file listed in
    KUBECONFIG, else ~/.kube/config."""
    if kubeconfig:
        return [kubeconfig]
    listed = [path for path in os.environ.get("KUBECONFIG", "").split(os.pathsep) if path]
    return listed or [os.path.expanduser("~/.kube/config")]


def default_kubeconfig() -> str:
    """The kubeconfig read when none is given: KUBECONFIG (one file, or several), else ~/.kube/config."""
    return os.pathsep.join(kubeconfig_files())


@dataclass(frozen=True)
class Access:
    """What kubectl uses of the kubeconfig: one context, its cluster and its user (file references
    made absolute against the file that defined each)."""

    files: tuple[str, ...]
    context: str
    namespace: str
    cluster_name: str
    cluster: dict
    user_name: str
    user: dict


def read_kubeconfig(kubeconfig: str | None = None, context: str | None = None) -> Access:
    """The context kubectl would use, merged from the files as kubectl merges them: a missing file in
    KUBECONFIG is skipped, the first file that defines a name wins, and current-context comes from
    the first file that sets it. Refused, naming the key: whatever kubectl refuses."""
    files = kubeconfig_files(kubeconfig)
    merged: dict[str, dict[str, dict]] = {"clusters": {}, "users": {}, "contexts": {}}
    current, found = None, []
    for path in files:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            if kubeconfig:
                raise KubeConfigError(f"kubeconfig {path} does not exist") from None
            continue
        except OSError as error:
            raise KubeConfigError(f"cannot read kubeconfig {path}: {error.strerror or error}") from error
        try:
            document = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise KubeConfigError(f"kubeconfig {path} is not valid YAML: {error}") from error
        if not isinstance(document, dict):
            raise KubeConfigError(f"kubeconfig {path} is not a kubeconfig "
                                  "(a YAML mapping with clusters, users, contexts)")
        found.append(path)
        current = current or document.get("current-context") or None
        base = os.path.dirname(os.path.abspath(path))
        for section, key in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for item in document.get(section) or []:
                if not isinstance(item, dict) or not item.get("name") or not isinstance(item.get(key) or {}, dict):
                    raise KubeConfigError(f"kubeconfig {path}: {section} has an entry that is not "
                                          f"{{name, {key}: {{...}}}}: {item!r}"[:300])
                merged[section].setdefault(item["name"], _absolute(key, item.get(key) or {}, base))
    if not found:
        where = "KUBECONFIG lists " + ", ".join(files) if os.environ.get("KUBECONFIG") else f"{files[0]} does not exist"
        raise KubeConfigError(f"no kubeconfig: {where}; point KUBECONFIG or --kubeconfig at one")
    name = context or current
    if not name:
        raise KubeConfigError(f"kubeconfig {os.pathsep.join(found)} sets no current-context; "
                        "pick one with `kubectl config use-context NAME`")
    ctx = merged["contexts"].get(name)
    if ctx is None:
        raise KubeConfigError(f"kubeconfig has no context named {name!r}; "
                              f"it has: {', '.join(merged['contexts']) or 'none'}")
    cluster_name, user_name = ctx.get("cluster") or "", ctx.get("user") or ""
    cluster = merged["clusters"].get(cluster_name)
    where = os.pathsep.join(found)
    if cluster is None:
        raise KubeConfigError(f"kubeconfig context {name!r}: cluster {cluster_name!r} is not defined in {where}")
    user: dict = {}
    if user_name:
        if user_name not in merged["users"]:
            raise KubeConfigError(f"kubeconfig context {name!r}: user {user_name!r} is not defined in {where}")
        user = merged["users"][user_name]
    access = Access(tuple(found), name, ctx.get("namespace") or "default", cluster_name, cluster, user_name, user)
    problems = _problems(access)
    if problems:
        raise KubeConfigError("kubeconfig: " + "; ".join(problems))
    return access


def _absolute(key: str, section: dict, base: str) -> dict:
    resolved = dict(section)
    for name in FILE_KEYS.get(key, ()):
        if isinstance(resolved.get(name), str) and resolved[name]:
            resolved[name] = os.path.join(base, resolved[name])
    command = (resolved.get("exec") or {}).get("command") if key == "user" else None
    if isinstance(command, str) and os.sep in command:  # a bare name is looked up on PATH
        resolved["exec"] = {**resolved["exec"], "command": os.path.join(base, command)}
    return resolved


def _problems(access: Access) -> list[str]:
    """What kubectl (client-go's validation) refuses, and what this tool refuses on purpose."""
    problems: list[str] = []
    cluster, user = access.cluster, access.user
    where_c, where_u = f"cluster {access.cluster_name!r}", f"user {access.user_name!r}"
    server = str(cluster.get("server") or "")
    scheme = urllib.parse.urlsplit(server).scheme
    if not server:
        problems.append(f"{where_c} has no server")
    elif scheme not in ("http", "https") or not urllib.parse.urlsplit(server).hostname:
        problems.append(f"{where_c}: server {server!r} is not an http:// or https:// URL with a host")
    if cluster.get("insecure-skip-tls-verify") and (cluster.get("certificate-authority")
                                                    or cluster.get("certificate-authority-data")):
        problems.append(f"{where_c}: insecure-skip-tls-verify and a certificate-authority together are not allowed "
                        "(kubectl refuses them too); keep one")
    for section, where, keys in ((cluster, where_c, ("certificate-authority",)),
                                 (user, where_u, ("client-certificate", "client-key", "tokenFile"))):
        for key in keys:  # a file whose inline -data is given is not read
            if section.get(key) and not section.get(f"{key}-data") and not os.access(section[key], os.R_OK):
                problems.append(f"{where}: {key} {section[key]} cannot be read "
                                f"({'does not exist' if not os.path.exists(section[key]) else 'permission denied'})")
    for section, where, key in ((cluster, where_c, "certificate-authority-data"),
                                (user, where_u, "client-certificate-data"), (user, where_u, "client-key-data")):
        if section.get(key):
            try:
                base64.b64decode(str(section[key]), validate=True)
            except (binascii.Error, ValueError):
                problems.append(f"{where}: {key} is not base64 (it holds the PEM file base64-encoded)")
    has_cert = bool(user.get("client-certificate") or user.get("client-certificate-data"))
    has_key = bool(user.get("client-key") or user.get("client-key-data"))
    if has_cert != has_key:
        problems.append(f"{where_u}: {'client-key' if has_cert else 'client-certificate'} (or its -data) is missing; "
                        "a client certificate needs both")
    if (user.get("token") or user.get("tokenFile")) and (user.get("username") or user.get("password")):
        problems.append(f"{where_u}: more than one authentication method (token and username/password); "
                        "only one is allowed")
    if (user.get("username") or user.get("password")) and not (user.get("username") and user.get("password")):
        problems.append(f"{where_u}: username and password go together")
    if (user.get("as-uid") or user.get("as-groups") or user.get("as-user-extra")) and not user.get("as"):
        problems.append(f"{where_u}: as-uid, as-groups or as-user-extra without `as` (the user to impersonate)")
    if user.get("auth-provider"):
        provider = (user["auth-provider"] or {}).get("name", "")
        replacement = {"gcp": "the gke-gcloud-auth-plugin exec plugin", "azure": "the kubelogin exec plugin"}.get(
            provider, "an exec credential plugin (for OIDC: kubelogin, `kubectl oidc-login get-token`)")
        problems.append(f"{where_u}: auth-provider {provider!r} is not supported; use {replacement} instead")
    if user.get("exec"):
        problems += _exec_problems(user["exec"], where_u, bool(user.get("auth-provider")))
    proxy = cluster.get("proxy-url")
    if proxy:
        try:
            _proxy(str(proxy), f"{where_c}: proxy-url", explicit=True)
        except KubeError as error:
            problems.append(str(error))
    return problems


def _exec_problems(spec: Any, where: str, with_auth_provider: bool) -> list[str]:
    if not isinstance(spec, dict):
        return [f"{where}: exec is not a mapping"]
    problems = []
    if with_auth_provider:
        problems.append(f"{where}: exec and auth-provider together are not allowed")
    if not spec.get("command"):
        problems.append(f"{where}: exec has no command")
    if spec.get("apiVersion") not in EXEC_API_VERSIONS:
        problems.append(f"{where}: exec apiVersion is {spec.get('apiVersion')!r}; "
                        f"allowed: {', '.join(EXEC_API_VERSIONS)}")
    # v1beta1 defaults it to IfAvailable; v1 must say (kubectl refuses an exec without one too)
    mode = spec.get("interactiveMode") or ("IfAvailable" if spec.get("apiVersion") == EXEC_API_VERSIONS[1] else None)
    if mode not in EXEC_INTERACTIVE_MODES:
        problems.append(f"{where}: exec interactiveMode is {mode!r}; allowed: {', '.join(EXEC_INTERACTIVE_MODES)} "
                        "(the release tool runs credential plugins without a terminal)")
    for item in spec.get("env") or []:
        if not isinstance(item, dict) or not item.get("name"):
            problems.append(f"{where}: exec env entry {item!r} has no name")
    return problems


@dataclass(frozen=True)
class Proxy:
    url: str  # without credentials
    source: str  # where it was set, for messages: "cluster 'x': proxy-url", "HTTPS_PROXY"
    authorization: str | None = None  # Proxy-Authorization, from credentials in the URL


def _proxy(value: str, source: str, explicit: bool) -> Proxy:
    """A proxy URL as Go reads it: from the environment a bare host:port means http://; the scheme
    must be http or https (HTTP CONNECT). kubectl also takes socks5, which is refused here: the
    client library's SOCKS support needs PySocks, not maintained since 2019."""
    if "://" not in value and not explicit:
        value = "http://" + value
    parts = urllib.parse.urlsplit(value)
    shown = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl() \
        if parts.hostname else value
    if parts.scheme.startswith("socks"):
        raise KubeConfigError(f"{source} is {shown!r}: SOCKS proxies are not supported here; "
                        f"allowed: an {' or '.join(s + '://' for s in PROXY_SCHEMES)} proxy (HTTP CONNECT)")
    if parts.scheme not in PROXY_SCHEMES or not parts.hostname:
        raise KubeConfigError(f"{source} is {shown!r}; allowed: an {' or '.join(s + '://' for s in PROXY_SCHEMES)} "
                        "URL with a host")
    authorization = None
    if parts.username is not None:
        pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return Proxy(shown, source, authorization)


def choose_proxy(access: Access, environ: Mapping[str, str] = os.environ) -> Proxy | None:
    """The proxy kubectl would use: the cluster's proxy-url, for every request; else, like Go,
    HTTPS_PROXY (https servers) or HTTP_PROXY (http), upper case first, unless NO_PROXY matches the
    server or the server is localhost or a loopback address (never proxied from the environment)."""
    if access.cluster.get("proxy-url"):
        return _proxy(str(access.cluster["proxy-url"]), f"cluster {access.cluster_name!r}: proxy-url", explicit=True)
    server = urllib.parse.urlsplit(access.cluster["server"])
    names = ("HTTPS_PROXY", "https_proxy") if server.scheme == "https" else ("HTTP_PROXY", "http_proxy")
    if server.scheme == "http" and environ.get("REQUEST_METHOD"):
        return None  # Go ignores HTTP_PROXY in a CGI process (httpoxy)
    name = next((n for n in names if environ.get(n)), None)
    host = server.hostname or ""
    if name is None or host == "localhost" or _is_loopback(host):
        return None
    from kubernetes.client.rest import should_bypass_proxies

    if should_bypass_proxies(access.cluster["server"], environ.get("NO_PROXY") or environ.get("no_proxy") or ""):
        return None
    return _proxy(environ[name], name, explicit=False)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _impersonation(user: dict) -> list[tuple[str, str]]:
    """The Impersonate-* headers of a user's as, as-uid, as-groups and as-user-extra."""
    headers = []
    if user.get("as"):
        headers.append(("Impersonate-User", str(user["as"])))
    if user.get("as-uid"):
        headers.append(("Impersonate-Uid", str(user["as-uid"])))
    headers += [("Impersonate-Group", str(group)) for group in user.get("as-groups") or []]
    for key, values in (user.get("as-user-extra") or {}).items():
        name = "Impersonate-Extra-" + urllib.parse.quote(str(key), safe=HEADER_KEY_SAFE)
        headers += [(name, str(value)) for value in values or []]
    return headers


class KubeClient:
    """GETs (and, for `recover`, DELETEs) against the API server of a kubeconfig context."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, timeout: float = 10.0):
        self.access = read_kubeconfig(kubeconfig, context)
        self.context, self.default_namespace = self.access.context, self.access.namespace
        self.server = str(self.access.cluster["server"]).rstrip("/")
        user = self.access.user
        self._timeout = timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="bluegreen-kube-")
        self._lock = threading.Lock()  # guards the credential and the transport an exec plugin replaces
        self._token_file = user.get("tokenFile") or None
        self._token = self._read_token_file() if self._token_file else (user.get("token") or None)
        self._exec = ExecPlugin(user["exec"], self.access) if user.get("exec") else None
        self._exec_certificate = ""
        self._headers: list[tuple[str, str]] = [("Accept", "application/json"), *_impersonation(user)]
        if not self.access.cluster.get("disable-compression"):
            self._headers.append(("Accept-Encoding", "gzip"))  # as Go's transport asks by default
        self.proxy = choose_proxy(self.access)
        # The client library's configuration and transport are made on the first request: importing
        # the library takes about 0.3 s, which a release command spends while its update starts.
        self._configuration: Configuration | None = None
        self._basic: str | None = None
        self._rest: RESTClientObject | None = None

    def _connect(self) -> None:
        with self._lock:
            if self._rest is None:
                self._configuration = self._load()
                self._basic = self._configuration.api_key.get("BearerToken")  # username/password, from the loader
                self._rest = self._transport()

    def _load(self) -> Configuration:
        """The client library's loader, given the context's cluster TLS settings and the user's
        client certificate and basic auth (exec, tokens, impersonation and the proxy are ours)."""
        try:
            from kubernetes.client import Configuration
            from kubernetes.config.config_exception import ConfigException
            from kubernetes.config.kube_config import KubeConfigLoader
        except ImportError as error:  # pragma: no cover - a broken install
            raise KubeError(f"the kubernetes package is missing ({error}); pip install -r requirements.txt") from error
        cluster = {k: v for k, v in self.access.cluster.items() if k in (
            "server", "certificate-authority", "certificate-authority-data", "insecure-skip-tls-verify",
            "tls-server-name")}
        user = {k: v for k, v in self.access.user.items() if k in (
            "client-certificate", "client-certificate-data", "client-key", "client-key-data", "username", "password")}
        config = {"current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                  "clusters": [{"name": "c", "cluster": cluster}], "users": [{"name": "u", "user": user}]}
        configuration = Configuration()
        try:
            KubeConfigLoader(config).load_and_set(configuration)  # -data: private temp files, removed at exit
        except (ConfigException, OSError, ValueError) as error:
            raise KubeConfigError(f"kubeconfig context {self.context!r}: {error}") from error
        configuration.proxy, configuration.no_proxy = (self.proxy.url if self.proxy else None), None
        if self.proxy and self.proxy.authorization:
            configuration.proxy_headers = {"Proxy-Authorization": self.proxy.authorization}
        return configuration

    def _transport(self) -> RESTClientObject:
        from kubernetes.client.rest import RESTClientObject

        try:
            return RESTClientObject(self._configuration)
        except (OSError, ValueError) as error:  # e.g. a client certificate that is no PEM
            raise KubeError(f"kubeconfig context {self.context!r}: TLS set-up failed: {error}") from error

    def _read_token_file(self) -> str:
        try:
            return Path(self._token_file or "").read_text().strip()
        except OSError as error:
            raise KubeError(f"kubeconfig user {self.access.user_name!r}: cannot read tokenFile "
                            f"{self._token_file}: {error.strerror or error}") from error

    def _credential(self, renew: bool = False) -> None:
        """Ask the exec plugin when there is no credential yet, it expired, or (`renew`) the server
        refused it; a client certificate it hands out replaces the transport."""
        assert self._exec is not None
        with self._lock:
            credential = self._exec.credential(renew)
            if credential.token:
                self._token = credential.token
            if credential.certificate and credential.certificate != self._exec_certificate:
                self._exec_certificate = credential.certificate
                for name, pem in (("exec-client.crt", credential.certificate), ("exec-client.key", credential.key)):
                    path = os.path.join(self._tmp.name, name)
                    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                        f.write(pem)
                assert self._configuration is not None  # _connect ran: request() makes it first
                self._configuration.cert_file = os.path.join(self._tmp.name, "exec-client.crt")
                self._configuration.key_file = os.path.join(self._tmp.name, "exec-client.key")
                replaced, self._rest = self._rest, self._transport()
                getattr(replaced, "close", lambda: None)()  # kubernetes 36's client has no close

    def request(self, method: str, path: str, query: dict | None = None) -> dict | None:
        """JSON of the object at `path`, or None when it does not exist (404)."""
        url = self.server + path + ("?" + urllib.parse.urlencode(query) if query else "")
        self._connect()
        if self._exec:
            self._credential()
        status, body = self._send(method, url, path)
        if status == 401 and (self._exec or self._token_file):  # revoked or rotated early: renew once
            if self._exec:
                self._credential(renew=True)
            else:
                self._token = self._read_token_file()
            status, body = self._send(method, url, path)
        if status == 404:
            return None
        if status >= 300:
            raise KubeError(f"{method} {path}: HTTP {status}: {body[:300]!r}")
        try:
            return json.loads(body)
        except ValueError as error:
            raise KubeError(f"{method} {path}: the answer is not JSON: {body[:200]!r}") from error

    def _send(self, method: str, url: str, path: str) -> tuple[int, bytes]:
        from kubernetes.client.exceptions import ApiException
        from urllib3 import HTTPHeaderDict
        from urllib3.exceptions import HTTPError, MaxRetryError, ProxyError

        headers = HTTPHeaderDict()
        for name, value in self._headers:
            headers.add(name, value)
        authorization = f"Bearer {self._token}" if self._token else self._basic
        if authorization:
            headers["Authorization"] = authorization
        assert self._rest is not None  # _connect ran: request() makes it first
        try:
            response = self._rest.request(method, url, headers=headers, _request_timeout=self._timeout)
            # kubernetes 36 reads the body into .data; later versions read it on .read()
            body = response.data if getattr(response, "data", None) is not None else response.read()
            return response.status, body
        except ApiException as error:
            if error.status:  # kubernetes 36 raises on an HTTP error status: the answer, as later versions return it
                return error.status, error.body if isinstance(error.body, bytes) else (error.body or "").encode()
            raise KubeError(f"{method} {path}: {_plain(error)}") from error
        except (HTTPError, OSError) as error:
            reason: BaseException = error.reason if isinstance(error, MaxRetryError) and error.reason else error
            if isinstance(reason, ProxyError) and self.proxy:
                cause = reason.original_error if isinstance(reason.original_error, BaseException) else reason
                raise KubeError(f"{method} {path}: cannot reach the proxy {self.proxy.url} ({self.proxy.source}) "
                                f"for {self.server}: {_plain(cause)}") from error
            via = f" through the proxy {self.proxy.url} ({self.proxy.source})" if self.proxy else ""
            raise KubeError(f"{method} {path}: cannot reach {self.server}{via}: {_plain(reason)}") from error

    def get(self, path: str, **query: str) -> dict | None:
        return self.request("GET", path, query or None)

    def not_ready(self) -> str | None:
        """None when the API server answers its /readyz with 200; otherwise why not (its answer,
        or why it cannot be reached)."""
        try:
            self._connect()
            if self._exec:
                self._credential()
            status, body = self._send("GET", self.server + "/readyz", "/readyz")
        except KubeError as error:
            return str(error)
        if status == 200:
            return None
        return f"GET /readyz: HTTP {status}: {body[:200].decode(errors='replace').strip()}"

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


def _plain(error: BaseException) -> str:
    """An OS or TLS error as a person reads it: 'Connection refused', not the urllib3 object."""
    while error.__context__ is not None and not isinstance(error, OSError):
        error = error.__context__
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error)
    return text.split(": ", 1)[1] if text.startswith("<urllib3") and ": " in text else text


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
    (a path with a slash is relative to the kubeconfig that defines it), its args and env, and
    KUBERNETES_EXEC_INFO (with the cluster, when it asks: provideClusterInfo); never interactive.
    Its ExecCredential is kept until it expires or the server answers 401."""

    TIMEOUT_S = 60.0

    def __init__(self, spec: dict, access: Access):
        self._spec, self._user = spec, access.user_name
        self._command = str(spec["command"])
        self._api_version = spec["apiVersion"]
        self._cluster = _exec_cluster(access.cluster) if spec.get("provideClusterInfo") else None
        self._held: Credential | None = None

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
        if self._cluster is not None:
            info["spec"]["cluster"] = self._cluster
        env = {**os.environ, **{item["name"]: str(item.get("value") or "") for item in self._spec.get("env") or []},
               "KUBERNETES_EXEC_INFO": json.dumps(info)}
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
            printed = json.loads(done.stdout)
            status = printed["status"]
        except (ValueError, KeyError, TypeError) as error:
            raise KubeError(f"{what} printed no ExecCredential with a status: {done.stdout[:200]!r}") from error
        if printed.get("apiVersion") != self._api_version:
            raise KubeError(f"{what} answered in {printed.get('apiVersion')!r}; the kubeconfig asks for "
                            f"{self._api_version!r}")
        credential = Credential(token=status.get("token") or "",
                                certificate=status.get("clientCertificateData") or "",
                                key=status.get("clientKeyData") or "",
                                expires=_timestamp(status.get("expirationTimestamp")))
        if not credential.token and not (credential.certificate and credential.key):
            raise KubeError(f"{what} returned neither a token nor a client certificate and key")
        return credential


def _exec_cluster(cluster: dict) -> dict:
    """The cluster as client-go hands it to a plugin (ExecCredential spec.cluster): the CA file's
    content as certificate-authority-data, and the cluster's exec extension as config."""
    described: dict[str, Any] = {"server": cluster["server"]}
    ca = cluster.get("certificate-authority-data")
    if not ca and cluster.get("certificate-authority"):
        ca = base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
    for key, value in (("tls-server-name", cluster.get("tls-server-name")),
                       ("insecure-skip-tls-verify", cluster.get("insecure-skip-tls-verify")),
                       ("certificate-authority-data", ca), ("proxy-url", cluster.get("proxy-url")),
                       ("disable-compression", cluster.get("disable-compression"))):
        if value:
            described[key] = value
    for extension in cluster.get("extensions") or []:
        if isinstance(extension, dict) and extension.get("name") == EXEC_CLUSTER_EXTENSION:
            described["config"] = extension.get("extension")
    return described


def _timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as error:
        raise KubeError(f"exec plugin: expirationTimestamp {value!r} is not RFC 3339") from error


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
