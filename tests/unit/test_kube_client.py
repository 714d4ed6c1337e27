"""The release tool's cluster access (bluegreen/release/kube.py) against a fake API server on
127.0.0.1, plain or TLS, that accepts only the credentials it is told to and records what each
request carried; and a small HTTP CONNECT proxy on 127.0.0.1 that records what went through it.

Every kubeconfig field kubectl honours is tried: exec credential plugins (run, kept, renewed on
expiry and on 401, their failures as messages), tokens and token files, client certificates and
CAs (files relative to the kubeconfig, inline -data), tls-server-name, insecure-skip-tls-verify,
proxy-url and HTTPS_PROXY/NO_PROXY, impersonation, disable-compression, basic auth, the context's
namespace, several files in KUBECONFIG; and what kubectl refuses is refused, naming the key."""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.server
import json
import os
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from bluegreen.release.kube import KubeClient, KubeError, choose_proxy, read_kubeconfig
from tests.conftest import REPO_ROOT

SERVICE = {"kind": "Service", "metadata": {"name": "web-prod"}, "spec": {"selector": {"slot": "blue"}}}
ANYONE = None  # FakeAPIServer.accepted: no Authorization needed


class FakeAPIServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.accepted: set[str] | None = set()  # bearer tokens or "Basic ..." values let in
        self.seen: list[str] = []  # the Authorization header of each request
        self.requests: list[http.client.HTTPMessage] = []  # every request's headers
        self.peers: list[str] = []  # the client certificate's CN of each TLS request
        self.server_names: list[str | None] = []  # SNI of each TLS handshake
        self.connections = 0
        self.readyz = (200, b"ok")  # what GET /readyz answers
        self.tls = tls
        if tls:
            tls.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    def process_request(self, request, client_address):
        self.connections += 1
        super().process_request(request, client_address)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.server_address[1]}"

    @property
    def port(self) -> int:
        return self.server_address[1]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the API server does
    wbufsize = 65536  # a response in one write, as the API server sends it (flushed after each request)

    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        self.server.seen.append(auth)
        self.server.requests.append(self.headers)
        if self.server.tls:
            peer = self.connection.getpeercert() or {}
            self.server.peers.append(dict(x[0] for x in peer.get("subject", ())).get("commonName", ""))
        accepted = self.server.accepted
        allowed = accepted is ANYONE or auth.removeprefix("Bearer ") in accepted or auth in accepted
        status, body = (200, SERVICE) if allowed else (401, {"kind": "Status", "code": 401})
        data = json.dumps(body).encode()
        if self.path == "/readyz":
            status, data = self.server.readyz
        gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
        if gzipped:
            data = gzip.compress(data)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def serve(server):
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server


@pytest.fixture
def server():
    srv = serve(FakeAPIServer())
    yield srv
    srv.shutdown()
    srv.server_close()


# --- certificates (openssl, into a temp dir) ----------------------------------------------------

class PKI:
    def __init__(self, directory: Path):
        self.dir = directory
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=test-ca", "-days", "2")
        self.issue("server-ip", "kube", "IP:127.0.0.1")  # the server's certificate for its address
        self.issue("server-name", "kube", "DNS:kube.test")  # ... for a name only (tls-server-name)
        self.issue("alice", "alice")  # a client certificate, user alice
        self.issue("bob", "bob")

    def _openssl(self, *args: str) -> None:
        subprocess.run(["openssl", *args], cwd=self.dir, check=True, capture_output=True)

    def issue(self, name: str, cn: str, san: str = "") -> None:
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                      f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        extensions = self.dir / f"{name}.ext"
        extensions.write_text(f"subjectAltName={san}\n" if san else "extendedKeyUsage=clientAuth\n")
        self._openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                      "-out", f"{name}.crt", "-days", "2", "-extfile", extensions.name)

    def path(self, name: str) -> Path:
        return self.dir / name

    def data(self, name: str) -> str:
        return base64.b64encode(self.path(name).read_bytes()).decode()

    def server_context(self, cert: str, client_certs: bool = True) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.path(f"{cert}.crt"), self.path(f"{cert}.key"))
        if client_certs:
            context.load_verify_locations(self.path("ca.crt"))
            context.verify_mode = ssl.CERT_OPTIONAL
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_server(pki):
    """A TLS API server whose certificate is for 127.0.0.1, taking client certificates of the CA."""
    srv = serve(FakeAPIServer(pki.server_context("server-ip")))
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def named_server(pki):
    """A TLS API server whose certificate is for the name kube.test only."""
    srv = serve(FakeAPIServer(pki.server_context("server-name")))
    yield srv
    srv.shutdown()
    srv.server_close()


# --- a small HTTP CONNECT proxy ------------------------------------------------------------------

class ConnectProxy(socketserver.ThreadingTCPServer):
    """HTTP CONNECT only, to 127.0.0.1 (and kube.test, which it maps there: the client sends the
    name, and nothing is looked up). Records each request line and its headers."""

    daemon_threads = True
    allow_reuse_address = True
    NAMES = {"127.0.0.1": "127.0.0.1", "kube.test": "127.0.0.1"}

    def __init__(self, credentials: str | None = None):
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.credentials = credentials  # "user:password" the proxy demands, or None
        self.requests: list[tuple[str, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ProxyHandler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline().decode().strip()
        headers = {}
        while (header := self.rfile.readline().decode()).strip():
            key, value = header.split(":", 1)
            headers[key.strip().lower()] = value.strip()
        self.server.requests.append((line, headers))
        method, target, _ = line.split()
        host, port = target.rsplit(":", 1)
        expected = self.server.credentials and "Basic " + base64.b64encode(self.server.credentials.encode()).decode()
        if method != "CONNECT" or host not in ConnectProxy.NAMES:
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        if expected and headers.get("proxy-authorization") != expected:
            self.wfile.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            return
        upstream = socket.create_connection((ConnectProxy.NAMES[host], int(port)))
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()

        def copy(source, target):
            try:
                while data := source.recv(65536):
                    target.sendall(data)
            except OSError:
                pass
            finally:
                for sock in (source, target):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=copy, args=(upstream, self.connection), daemon=True)
        back.start()
        copy(self.connection, upstream)
        back.join(timeout=5)
        upstream.close()


@pytest.fixture
def proxy():
    srv = serve(ConnectProxy())
    yield srv
    srv.shutdown()
    srv.server_close()


# --- kubeconfigs ---------------------------------------------------------------------------------

# A plugin that hands out token-<n> on its n-th run (counted in a file), valid for $TTL seconds,
# and records what it was given.
PLUGIN = """#!{python}
import json, os, sys, datetime
count_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs")
runs = int(open(count_file).read()) + 1 if os.path.exists(count_file) else 1
open(count_file, "w").write(str(runs))
open(count_file + ".info", "w").write(os.environ["KUBERNETES_EXEC_INFO"] + "\\n" + " ".join(sys.argv[1:]))
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=float(os.environ["TTL"]))
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {{"token": "token-%d" % runs,
                              "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}}}))
"""


def kubeconfig(directory: Path, server_url: str, user: dict, name: str = "kubeconfig", **cluster) -> Path:
    context = {"cluster": "local", "user": "someone", **cluster.pop("context", {})}
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "here",
              "clusters": [{"name": "local", "cluster": {"server": server_url, **cluster}}],
              "users": [{"name": "someone", "user": user}],
              "contexts": [{"name": "here", "context": context}]}
    path = directory / name
    path.write_text(yaml.safe_dump(config))
    return path


def exec_user(tmp_path: Path, ttl: float = 3600, **extra) -> dict:
    plugin = tmp_path / "bin" / "get-token"
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN.format(python=sys.executable))
    plugin.chmod(0o755)
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "./bin/get-token",
                     "args": ["--cluster", "local"], "env": [{"name": "TTL", "value": str(ttl)}],
                     "interactiveMode": "Never", **extra}}


def script_user(tmp_path: Path, name: str, body: str) -> dict:
    plugin = tmp_path / name
    plugin.write_text(body)
    plugin.chmod(0o755)
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
                     "interactiveMode": "Never"}}


def runs(tmp_path: Path) -> int:
    return int((tmp_path / "bin" / "runs").read_text())


# --- exec credential plugins ---------------------------------------------------------------------

def test_the_exec_plugins_token_is_used_and_kept(server, tmp_path):
    server.accepted = {"token-1"}
    client = KubeClient(str(kubeconfig(tmp_path, server.url, exec_user(tmp_path))))
    for _ in range(3):
        assert client.service("shop", "web-prod") == SERVICE
    assert runs(tmp_path) == 1  # one run, the credential kept for the next requests
    assert server.seen == ["Bearer token-1"] * 3
    info, args = (tmp_path / "bin" / "runs.info").read_text().split("\n")
    assert json.loads(info) == {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                                "spec": {"interactive": False}}
    assert args == "--cluster local"


def test_a_refused_token_is_renewed_once(server, tmp_path):
    server.accepted = {"token-2"}  # the first token was revoked
    client = KubeClient(str(kubeconfig(tmp_path, server.url, exec_user(tmp_path))))
    assert client.service("shop", "web-prod") == SERVICE
    assert server.seen == ["Bearer token-1", "Bearer token-2"]
    server.accepted = set()  # nothing is accepted any more: the 401 is an error, not a loop
    with pytest.raises(KubeError, match="HTTP 401"):
        client.service("shop", "web-prod")
    assert runs(tmp_path) == 3


def test_an_expired_token_is_renewed_before_it_is_sent(server, tmp_path):
    server.accepted = {"token-1", "token-2"}
    client = KubeClient(str(kubeconfig(tmp_path, server.url, exec_user(tmp_path, ttl=5))))
    client.service("shop", "web-prod")
    client.service("shop", "web-prod")  # expires in 5 s: renewed ahead of time (10 s margin)
    assert server.seen == ["Bearer token-1", "Bearer token-2"]


def test_the_plugin_gets_the_cluster_when_it_asks(server, tmp_path, pki):
    server.accepted = {"token-1"}
    (tmp_path / "ca.crt").write_bytes(pki.path("ca.crt").read_bytes())
    extension = {"name": "client.authentication.k8s.io/exec", "extension": {"audience": "shop"}}
    path = kubeconfig(tmp_path, server.url, exec_user(tmp_path, provideClusterInfo=True), **{
        "certificate-authority": "ca.crt", "tls-server-name": "kube.test", "disable-compression": True,
        "extensions": [extension]})
    KubeClient(str(path)).service("shop", "web-prod")
    info = json.loads((tmp_path / "bin" / "runs.info").read_text().split("\n")[0])
    # as client-go describes it: the CA file's content as data, the exec extension as config
    assert info["spec"]["cluster"] == {"server": server.url, "tls-server-name": "kube.test",
                                       "certificate-authority-data": pki.data("ca.crt"),
                                       "disable-compression": True, "config": {"audience": "shop"}}


def test_a_missing_plugin_names_itself_and_its_install_hint(server, tmp_path):
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "no-such-credential-helper",
                     "installHint": "Install it with: apt install no-such-credential-helper"}}
    client = KubeClient(str(kubeconfig(tmp_path, server.url, user)))
    with pytest.raises(KubeError) as error:
        client.service("shop", "web-prod")
    assert str(error.value) == ("kubeconfig user 'someone': exec plugin 'no-such-credential-helper' not found; "
                                "Install it with: apt install no-such-credential-helper")
    assert server.seen == []  # nothing was sent without a credential


def test_a_failing_plugin_is_a_message_with_its_output(server, tmp_path):
    user = script_user(tmp_path, "fail", "#!/bin/sh\necho 'token expired, run: cloud login' >&2\nexit 3\n")
    client = KubeClient(str(kubeconfig(tmp_path, server.url, user)))
    with pytest.raises(KubeError, match=r"exec plugin '.*/fail' failed \(exit 3\): token expired, run: cloud login"):
        client.service("shop", "web-prod")


def test_a_plugin_printing_no_credential_is_refused(server, tmp_path):
    user = script_user(tmp_path, "empty", '#!/bin/sh\necho \'{"apiVersion": "client.authentication.k8s.io/v1", '
                                          '"kind": "ExecCredential", "status": {}}\'\n')
    client = KubeClient(str(kubeconfig(tmp_path, server.url, user)))
    with pytest.raises(KubeError, match="returned neither a token nor a client certificate"):
        client.service("shop", "web-prod")


def test_a_plugin_answering_in_another_api_version_is_refused(server, tmp_path):
    user = script_user(tmp_path, "old", '#!/bin/sh\necho \'{"apiVersion": "client.authentication.k8s.io/v1beta1", '
                                        '"kind": "ExecCredential", "status": {"token": "t"}}\'\n')
    with pytest.raises(KubeError, match="answered in 'client.authentication.k8s.io/v1beta1'; the kubeconfig asks "
                                        "for 'client.authentication.k8s.io/v1'"):
        KubeClient(str(kubeconfig(tmp_path, server.url, user))).service("shop", "web-prod")


def test_a_plugins_client_certificate_is_used(tls_server, tmp_path, pki):
    """A plugin that hands out a client certificate (no token): the TLS connection presents it."""
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"clientCertificateData": pki.path("alice.crt").read_text(),
                             "clientKeyData": pki.path("alice.key").read_text()}}
    (tmp_path / "credential.json").write_text(json.dumps(credential))
    user = script_user(tmp_path, "cert", f"#!/bin/sh\ncat {tmp_path / 'credential.json'}\n")
    tls_server.accepted = ANYONE
    path = kubeconfig(tmp_path, tls_server.url, user, **{"certificate-authority-data": pki.data("ca.crt")})
    assert KubeClient(str(path)).service("shop", "web-prod") == SERVICE
    assert tls_server.peers == ["alice"]


# --- tokens, basic auth ---------------------------------------------------------------------------

def test_a_relative_token_file_is_read_from_the_kubeconfigs_directory(server, tmp_path, monkeypatch):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text("file-token\n")
    server.accepted = {"file-token"}
    path = kubeconfig(tmp_path, server.url, {"tokenFile": "secrets/token"})
    monkeypatch.chdir("/")  # not where the kubeconfig is
    assert KubeClient(str(path)).service("shop", "web-prod") == SERVICE


def test_the_token_file_wins_over_the_token_and_is_read_again_on_401(server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("rotated-1\n")
    server.accepted = {"rotated-1"}
    client = KubeClient(str(kubeconfig(tmp_path, server.url, {"token": "static", "tokenFile": str(token_file)})))
    client.service("shop", "web-prod")
    token_file.write_text("rotated-2\n")  # rotated, and the old one revoked
    server.accepted = {"rotated-2"}
    assert client.service("shop", "web-prod") == SERVICE
    assert server.seen == ["Bearer rotated-1", "Bearer rotated-1", "Bearer rotated-2"]


def test_readyz_answers_whether_the_api_server_is_ready_and_why_not(server, tmp_path):
    server.accepted = ANYONE
    client = KubeClient(str(kubeconfig(tmp_path, server.url, {"token": "t"})))
    assert client.not_ready() is None
    server.readyz = (503, b"[-]etcd failed: reason withheld\nreadyz check failed")
    assert client.not_ready() == "GET /readyz: HTTP 503: [-]etcd failed: reason withheld\nreadyz check failed"
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{unused.getsockname()[1]}"
    gone = KubeClient(str(kubeconfig(tmp_path, nobody, {"token": "t"}, name="gone"))).not_ready()
    assert gone and gone.startswith(f"GET /readyz: cannot reach {nobody}"), gone


def test_a_token_is_sent_as_a_bearer_token(server, tmp_path):
    server.accepted = {"s3cret"}
    assert KubeClient(str(kubeconfig(tmp_path, server.url, {"token": "s3cret"}))).service("a", "b") == SERVICE


def test_username_and_password_are_sent_as_basic_auth(server, tmp_path):
    server.accepted = {"Basic " + base64.b64encode(b"admin:pa:ss").decode()}
    client = KubeClient(str(kubeconfig(tmp_path, server.url, {"username": "admin", "password": "pa:ss"})))
    assert client.service("shop", "web-prod") == SERVICE


# --- TLS: CA, client certificates, tls-server-name, insecure -----------------------------------

def test_client_certificate_and_ca_files_relative_to_the_kubeconfig(tls_server, tmp_path, pki, monkeypatch):
    (tmp_path / "pki").mkdir()
    for name in ("ca.crt", "alice.crt", "alice.key"):
        (tmp_path / "pki" / name).write_bytes(pki.path(name).read_bytes())
    tls_server.accepted = ANYONE
    path = kubeconfig(tmp_path, tls_server.url, {"client-certificate": "pki/alice.crt", "client-key": "pki/alice.key"},
                      **{"certificate-authority": "pki/ca.crt"})
    monkeypatch.chdir("/")
    assert KubeClient(str(path)).service("shop", "web-prod") == SERVICE
    assert tls_server.peers == ["alice"]


def test_inline_certificate_data(tls_server, tmp_path, pki):
    tls_server.accepted = ANYONE
    user = {"client-certificate-data": pki.data("bob.crt"), "client-key-data": pki.data("bob.key")}
    path = kubeconfig(tmp_path, tls_server.url, user, **{"certificate-authority-data": pki.data("ca.crt")})
    assert KubeClient(str(path)).service("shop", "web-prod") == SERVICE
    assert tls_server.peers == ["bob"]


def test_an_unknown_ca_is_refused_with_a_message(tls_server, tmp_path, pki):
    (tmp_path / "other").mkdir()
    other = PKI(tmp_path / "other")  # a CA that did not sign the server's certificate
    path = kubeconfig(tmp_path, tls_server.url, {}, **{"certificate-authority-data": other.data("ca.crt")})
    with pytest.raises(KubeError, match=r"GET /api/v1/namespaces/shop/services/web-prod: cannot reach https://"
                                        r"127\.0\.0\.1:\d+: .*certificate verify failed"):
        KubeClient(str(path)).service("shop", "web-prod")


def test_tls_server_name_is_the_name_sent_and_checked(named_server, tmp_path, pki):
    """The certificate names kube.test, the server is addressed as 127.0.0.1: only with
    tls-server-name kube.test does the client send that name (SNI) and accept the certificate."""
    named_server.accepted = ANYONE
    cluster = {"certificate-authority-data": pki.data("ca.crt")}
    without = kubeconfig(tmp_path, named_server.url, {}, name="without", **cluster)
    with pytest.raises(KubeError, match="certificate verify failed.*127.0.0.1"):
        KubeClient(str(without)).service("shop", "web-prod")
    named = kubeconfig(tmp_path, named_server.url, {}, name="named", **cluster, **{"tls-server-name": "kube.test"})
    assert KubeClient(str(named)).service("shop", "web-prod") == SERVICE
    assert named_server.server_names[-1] == "kube.test"


def test_insecure_skip_tls_verify_takes_any_certificate(named_server, tmp_path):
    named_server.accepted = ANYONE
    path = kubeconfig(tmp_path, named_server.url, {}, **{"insecure-skip-tls-verify": True})
    with pytest.warns(Warning, match="Unverified HTTPS request"):  # urllib3 says so, as it should
        assert KubeClient(str(path)).service("shop", "web-prod") == SERVICE


# --- proxies ---------------------------------------------------------------------------------------

def test_proxy_url_carries_every_request_through_connect(tls_server, proxy, tmp_path, pki):
    tls_server.accepted = {"t"}
    path = kubeconfig(tmp_path, tls_server.url, {"token": "t"},
                      **{"certificate-authority-data": pki.data("ca.crt"), "proxy-url": proxy.url})
    client = KubeClient(str(path))
    for _ in range(5):
        assert client.service("shop", "web-prod") == SERVICE
    assert [line.rsplit(" ", 1)[0] for line, _ in proxy.requests] == [f"CONNECT 127.0.0.1:{tls_server.port}"]
    assert all("authorization" not in headers for _, headers in proxy.requests)  # the token goes inside the tunnel


def test_credentials_in_the_proxy_url_go_to_the_proxy(tls_server, tmp_path, pki):
    proxy = serve(ConnectProxy(credentials="me:p@ss"))
    try:
        tls_server.accepted = ANYONE
        url = proxy.url.replace("http://", "http://me:p%40ss@")
        path = kubeconfig(tmp_path, tls_server.url, {},
                          **{"certificate-authority-data": pki.data("ca.crt"), "proxy-url": url})
        assert KubeClient(str(path)).service("shop", "web-prod") == SERVICE
        assert proxy.requests[0][1]["proxy-authorization"] == "Basic " + base64.b64encode(b"me:p@ss").decode()
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_https_proxy_from_the_environment(named_server, proxy, tmp_path, pki, monkeypatch):
    """HTTPS_PROXY, as Go reads it: the client asks the proxy for kube.test (it looks nothing up)."""
    named_server.accepted = ANYONE
    monkeypatch.setenv("HTTPS_PROXY", proxy.url.removeprefix("http://"))  # a bare host:port means http://
    path = kubeconfig(tmp_path, f"https://kube.test:{named_server.port}", {},
                      **{"certificate-authority-data": pki.data("ca.crt")})
    assert KubeClient(str(path)).service("shop", "web-prod") == SERVICE
    assert [line.rsplit(" ", 1)[0] for line, _ in proxy.requests] == [f"CONNECT kube.test:{named_server.port}"]


def test_loopback_is_never_proxied_from_the_environment(tls_server, proxy, tmp_path, pki, monkeypatch):
    tls_server.accepted = ANYONE
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    path = kubeconfig(tmp_path, tls_server.url, {}, **{"certificate-authority-data": pki.data("ca.crt")})
    assert KubeClient(str(path)).service("shop", "web-prod") == SERVICE
    assert proxy.requests == []


@pytest.mark.parametrize("server_url, environment, expected", [
    ("https://kube.example:6443", {"HTTPS_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
    ("https://kube.example:6443", {"https_proxy": "proxy:3128"}, "http://proxy:3128"),
    ("https://kube.example:6443", {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:1"}, "http://upper:1"),
    ("https://kube.example:6443", {"HTTP_PROXY": "http://proxy:3128"}, None),  # an https server: HTTPS_PROXY only
    ("http://kube.example:8080", {"HTTP_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
    ("http://kube.example:8080", {"HTTP_PROXY": "http://proxy:3128", "REQUEST_METHOD": "GET"}, None),  # CGI
    ("https://kube.example:6443", {"HTTPS_PROXY": "http://proxy:3128", "ALL_PROXY": "x"}, "http://proxy:3128"),
    ("https://kube.example:6443", {"ALL_PROXY": "http://proxy:3128"}, None),  # Go does not read it
    ("https://kube.example:6443", {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "example"}, None),
    ("https://kube.example:6443", {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ".example"}, None),
    ("https://kube.example:6443", {"HTTPS_PROXY": "http://proxy:3128", "no_proxy": "other.example"},
     "http://proxy:3128"),
    ("https://10.0.0.5:6443", {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "10.0.0.0/8"}, None),
    ("https://localhost:6443", {"HTTPS_PROXY": "http://proxy:3128"}, None),
    ("https://[::1]:6443", {"HTTPS_PROXY": "http://proxy:3128"}, None),
])
def test_which_proxy_from_the_environment(tmp_path, server_url, environment, expected):
    access = read_kubeconfig(str(kubeconfig(tmp_path, server_url, {})))
    chosen = choose_proxy(access, environment)
    assert (chosen.url if chosen else None) == expected
    assert chosen is None or chosen.source in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY")


def test_proxy_url_wins_over_the_environment_and_over_no_proxy(tmp_path):
    path = kubeconfig(tmp_path, "https://127.0.0.1:6443", {}, **{"proxy-url": "https://corp-proxy:8443"})
    chosen = choose_proxy(read_kubeconfig(str(path)), {"HTTPS_PROXY": "http://other:1", "NO_PROXY": "*"})
    assert (chosen.url, chosen.source) == ("https://corp-proxy:8443", "cluster 'local': proxy-url")


def test_a_stopped_proxy_is_a_message_naming_it(tls_server, tmp_path, pki):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    path = kubeconfig(tmp_path, tls_server.url, {"token": "t"},
                      **{"certificate-authority-data": pki.data("ca.crt"), "proxy-url": f"http://127.0.0.1:{port}"})
    with pytest.raises(KubeError) as error:
        KubeClient(str(path)).service("shop", "web-prod")
    assert str(error.value) == (f"GET /api/v1/namespaces/shop/services/web-prod: cannot reach the proxy "
                                f"http://127.0.0.1:{port} (cluster 'local': proxy-url) for {tls_server.url}: "
                                "Connection refused")
    assert tls_server.seen == []


def test_a_proxy_that_refuses_is_a_message(tls_server, proxy, tmp_path, pki):
    proxy.credentials = "me:secret"  # and the kubeconfig gives none: 407
    path = kubeconfig(tmp_path, tls_server.url, {},
                      **{"certificate-authority-data": pki.data("ca.crt"), "proxy-url": proxy.url})
    with pytest.raises(KubeError, match=r"cannot reach the proxy http://127\.0\.0\.1:\d+ \(cluster 'local': "
                                        r"proxy-url\) for https://127\.0\.0\.1:\d+: .*407"):
        KubeClient(str(path)).service("shop", "web-prod")


@pytest.mark.parametrize("url, message", [
    ("socks5://127.0.0.1:1080", "cluster 'local': proxy-url is 'socks5://127.0.0.1:1080': SOCKS proxies are not "
                                "supported here; allowed: an http:// or https:// proxy (HTTP CONNECT)"),
    ("ftp://proxy:21", "cluster 'local': proxy-url is 'ftp://proxy:21'; allowed: an http:// or https:// URL "
                       "with a host"),
    ("http://user:hidden@proxy:3128?x", None),  # fine, and its password is never printed
])
def test_proxy_url_schemes(server, tmp_path, url, message):
    path = kubeconfig(tmp_path, server.url, {}, **{"proxy-url": url})
    if message is None:
        assert KubeClient(str(path)).proxy.url == "http://proxy:3128?x"
        return
    with pytest.raises(KubeError) as error:
        KubeClient(str(path))
    assert str(error.value) == f"kubeconfig: {message}"


def test_a_socks_proxy_from_the_environment_is_refused(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "socks5://127.0.0.1:1080")
    path = kubeconfig(tmp_path, server.url.replace("127.0.0.1", "kube.test"), {})
    with pytest.raises(KubeError, match="HTTP_PROXY is 'socks5://127.0.0.1:1080': SOCKS proxies are not supported"):
        KubeClient(str(path))


# --- headers: impersonation, compression -----------------------------------------------------------

def test_impersonation_headers(server, tmp_path):
    server.accepted = ANYONE
    user = {"token": "t", "as": "jane", "as-uid": "1234", "as-groups": ["developers", "on-call"],
            "as-user-extra": {"scopes": ["view", "deploy"], "example.com/team": ["shop"]}}
    KubeClient(str(kubeconfig(tmp_path, server.url, user))).service("shop", "web-prod")
    headers = server.requests[0]
    assert headers["Impersonate-User"] == "jane"
    assert headers["Impersonate-Uid"] == "1234"
    assert headers.get_all("Impersonate-Group") == ["developers", "on-call"]  # one header line each
    assert headers.get_all("Impersonate-Extra-scopes") == ["view", "deploy"]
    assert headers.get_all("Impersonate-Extra-example.com%2Fteam") == ["shop"]  # escaped as client-go does


def test_compression_is_asked_for_unless_disabled(server, tmp_path):
    server.accepted = ANYONE
    # the fake server gzips whenever it may: the client decodes it
    assert KubeClient(str(kubeconfig(tmp_path, server.url, {}, name="a"))).service("shop", "web-prod") == SERVICE
    disabled = kubeconfig(tmp_path, server.url, {}, name="b", **{"disable-compression": True})
    assert KubeClient(str(disabled)).service("shop", "web-prod") == SERVICE
    assert [r.get("Accept-Encoding") for r in server.requests] == ["gzip", "identity"]


# --- contexts, namespaces, several files ---------------------------------------------------------

def test_the_contexts_namespace(server, tmp_path):
    with_namespace = kubeconfig(tmp_path, server.url, {}, name="a", context={"namespace": "shop"})
    assert KubeClient(str(with_namespace)).default_namespace == "shop"
    assert KubeClient(str(kubeconfig(tmp_path, server.url, {}, name="b"))).default_namespace == "default"


def write(path: Path, config: dict) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_several_files_in_kubeconfig_merge_as_kubectl_merges_them(server, tmp_path, monkeypatch):
    """The first file that defines a name wins; current-context comes from the first file that
    sets it; a missing file is skipped, an empty one is fine; file references are relative to the
    file that defines them."""
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "token").write_text("team-token\n")
    first = write(tmp_path / "first", {"contexts": [{"name": "dev", "context": {"cluster": "c", "user": "u"}}]})
    empty = tmp_path / "empty"
    empty.write_text("")
    second = write(tmp_path / "team" / "second", {
        "current-context": "dev",
        "clusters": [{"name": "c", "cluster": {"server": server.url}}],
        "users": [{"name": "u", "user": {"tokenFile": "token"}}],
        "contexts": [{"name": "dev", "context": {"cluster": "elsewhere", "user": "u", "namespace": "x"}}]})
    third = write(tmp_path / "third", {
        "current-context": "prod",
        "clusters": [{"name": "c", "cluster": {"server": "https://not-this-one:1"}},
                     {"name": "p", "cluster": {"server": "https://prod.example:6443"}}],
        "contexts": [{"name": "prod", "context": {"cluster": "p"}}]})
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([first, str(tmp_path / "missing"), str(empty), second, third]))
    server.accepted = {"team-token"}
    client = KubeClient()
    assert (client.context, client.default_namespace, client.server) == ("dev", "default", server.url)
    assert client.service("shop", "web-prod") == SERVICE
    assert KubeClient(context="prod").server == "https://prod.example:6443"  # a named context


def test_a_given_kubeconfig_must_exist_and_one_must_be_found(tmp_path, monkeypatch):
    with pytest.raises(KubeError, match=f"kubeconfig {tmp_path}/nope does not exist"):
        KubeClient(str(tmp_path / "nope"))
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    with pytest.raises(KubeError, match=f"no kubeconfig: KUBECONFIG lists {tmp_path}/a, {tmp_path}/b"):
        KubeClient()


# --- what kubectl refuses --------------------------------------------------------------------------

REFUSED = {
    "no current-context": ({"current-context": None}, "sets no current-context; pick one with `kubectl config "
                                                      "use-context NAME`"),
    "unknown context": ({"current-context": "nope"}, "kubeconfig has no context named 'nope'; it has: here"),
    "unknown cluster": ({"context": {"cluster": "gone"}}, "context 'here': cluster 'gone' is not defined in"),
    "unknown user": ({"context": {"user": "nobody"}}, "context 'here': user 'nobody' is not defined in"),
    "no scheme": ({"server": "127.0.0.1:6443"}, "server '127.0.0.1:6443' is not an http:// or https:// URL"),
    "insecure with a CA": ({"insecure-skip-tls-verify": True, "certificate-authority": "ca.crt"},
                           "insecure-skip-tls-verify and a certificate-authority together are not allowed"),
    "missing CA file": ({"certificate-authority": "nowhere/ca.crt"},
                        "cluster 'local': certificate-authority {dir}/nowhere/ca.crt cannot be read (does not exist)"),
    "CA data not base64": ({"certificate-authority-data": "-----BEGIN"}, "certificate-authority-data is not base64"),
    "certificate without key": ({"user": {"client-certificate-data": "AAAA"}}, "client-key (or its -data) is missing"),
    "token and basic auth": ({"user": {"token": "t", "username": "u", "password": "p"}},
                             "more than one authentication method (token and username/password)"),
    "password without user": ({"user": {"password": "p"}}, "username and password go together"),
    "groups without as": ({"user": {"token": "t", "as-groups": ["g"]}}, "as-uid, as-groups or as-user-extra "
                                                                        "without `as`"),
    "oidc auth-provider": ({"user": {"auth-provider": {"name": "oidc", "config": {}}}},
                           "auth-provider 'oidc' is not supported; use an exec credential plugin (for OIDC: "
                           "kubelogin, `kubectl oidc-login get-token`) instead"),
    "gcp auth-provider": ({"user": {"auth-provider": {"name": "gcp"}}}, "use the gke-gcloud-auth-plugin exec plugin"),
    "exec without apiVersion": ({"user": {"exec": {"command": "x"}}}, "user 'someone': exec apiVersion is None; "
                                "allowed: client.authentication.k8s.io/v1, client.authentication.k8s.io/v1beta1"),
    "exec v1alpha1": ({"user": {"exec": {"command": "x", "apiVersion": "client.authentication.k8s.io/v1alpha1"}}},
                      "exec apiVersion is 'client.authentication.k8s.io/v1alpha1'"),
    "exec interactive Always": (
        {"user": {"exec": {"command": "x", "apiVersion": "client.authentication.k8s.io/v1",
                           "interactiveMode": "Always"}}},
        "exec interactiveMode is 'Always'; allowed: Never, IfAvailable (the release tool runs credential plugins "
        "without a terminal)"),
    "v1 exec without interactiveMode": (
        {"user": {"exec": {"command": "x", "apiVersion": "client.authentication.k8s.io/v1"}}},
        "exec interactiveMode is None; allowed: Never, IfAvailable"),
    "missing token file": ({"user": {"tokenFile": "nowhere"}}, "user 'someone': tokenFile {dir}/nowhere cannot be "
                                                               "read (does not exist)"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_what_kubectl_refuses_is_refused_naming_the_key(tmp_path, case):
    change, message = REFUSED[case]
    (tmp_path / "ca.crt").write_text("")
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "here",
              "clusters": [{"name": "local", "cluster": {"server": "https://127.0.0.1:6443"}}],
              "users": [{"name": "someone", "user": {}}],
              "contexts": [{"name": "here", "context": {"cluster": "local", "user": "someone"}}]}
    for key, value in change.items():
        if key == "current-context":
            config[key] = value
        elif key in ("user", "context"):
            config[f"{key}s"][0][key].update(value)
        else:
            config["clusters"][0]["cluster"][key] = value
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(KubeError) as error:
        KubeClient(str(path))
    assert message.format(dir=tmp_path) in str(error.value)


# --- connections, imports ----------------------------------------------------------------------------

def test_polling_keeps_one_connection(server, tmp_path):
    server.accepted = {"token-1"}
    client = KubeClient(str(kubeconfig(tmp_path, server.url, exec_user(tmp_path))))
    for _ in range(20):
        client.service("shop", "web-prod")
    assert server.connections == 1  # kept alive: no new connection, no new TLS handshake


def test_a_server_that_does_not_answer_is_a_message(tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    client = KubeClient(str(kubeconfig(tmp_path, f"https://127.0.0.1:{port}", {})))
    with pytest.raises(KubeError) as error:
        client.namespace("shop")
    assert str(error.value) == f"GET /api/v1/namespaces/shop: cannot reach https://127.0.0.1:{port}: Connection refused"


def test_the_client_library_is_imported_only_when_a_client_is_made(tmp_path):
    """`bluegreen --help` and the Pulumi program never pay for importing the kubernetes package."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    imports = subprocess.run([sys.executable, "-X", "importtime", "-m", "bluegreen", "--help"], capture_output=True,
                             text=True, env=env, cwd=tmp_path)
    assert imports.returncode == 0, imports.stderr
    assert "bluegreen.release.kube" in imports.stderr and " kubernetes" not in imports.stderr
    program = subprocess.run([sys.executable, "-c", "import sys, bluegreen.component, bluegreen.release.cli; "
                              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'))"],
                             capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    assert program.stdout.strip() == "[]"
