"""The release tool's kubeconfig handling (bluegreen/release/kube.py) against a fake API server on
127.0.0.1 that accepts only the bearer tokens it is told to: exec credential plugins (run, kept,
renewed on expiry and on 401, their failures as messages) and token files."""

from __future__ import annotations

import http.server
import json
import sys
import threading
from pathlib import Path

import pytest
import yaml

from bluegreen.release.kube import KubeClient, KubeError

SERVICE = {"kind": "Service", "metadata": {"name": "web-prod"}, "spec": {"selector": {"slot": "blue"}}}


class FakeAPIServer(http.server.ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.accepted: set[str] = set()
        self.seen: list[str] = []  # the Authorization header of each request

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the API server does

    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        self.server.seen.append(auth)
        status, body = (200, SERVICE) if auth.removeprefix("Bearer ") in self.server.accepted else (401, {})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = FakeAPIServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


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


def kubeconfig(directory: Path, server_url: str, user: dict) -> Path:
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "here",
              "clusters": [{"name": "local", "cluster": {"server": server_url}}],
              "users": [{"name": "someone", "user": user}],
              "contexts": [{"name": "here", "context": {"cluster": "local", "user": "someone"}}]}
    path = directory / "kubeconfig"
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


def runs(tmp_path: Path) -> int:
    return int((tmp_path / "bin" / "runs").read_text())


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


def test_the_plugin_gets_the_cluster_when_it_asks(server, tmp_path):
    server.accepted = {"token-1"}
    client = KubeClient(str(kubeconfig(tmp_path, server.url, exec_user(tmp_path, provideClusterInfo=True))))
    client.service("shop", "web-prod")
    info = json.loads((tmp_path / "bin" / "runs.info").read_text().split("\n")[0])
    assert info["spec"]["cluster"] == {"server": server.url}


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
    plugin = tmp_path / "fail"
    plugin.write_text("#!/bin/sh\necho 'token expired, run: cloud login' >&2\nexit 3\n")
    plugin.chmod(0o755)
    client = KubeClient(str(kubeconfig(tmp_path, server.url, {"exec": {"command": str(plugin)}})))
    with pytest.raises(KubeError, match=r"exec plugin '.*/fail' failed \(exit 3\): token expired, run: cloud login"):
        client.service("shop", "web-prod")


def test_a_plugin_printing_no_credential_is_refused(server, tmp_path):
    plugin = tmp_path / "empty"
    plugin.write_text('#!/bin/sh\necho \'{"kind": "ExecCredential", "status": {}}\'\n')
    plugin.chmod(0o755)
    client = KubeClient(str(kubeconfig(tmp_path, server.url, {"exec": {"command": str(plugin)}})))
    with pytest.raises(KubeError, match="returned neither a token nor a client certificate"):
        client.service("shop", "web-prod")


def test_a_relative_token_file_is_read_from_the_kubeconfigs_directory(server, tmp_path, monkeypatch):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text("file-token\n")
    server.accepted = {"file-token"}
    path = kubeconfig(tmp_path, server.url, {"tokenFile": "secrets/token"})
    monkeypatch.chdir("/")  # not where the kubeconfig is
    assert KubeClient(str(path)).service("shop", "web-prod") == SERVICE


def test_a_missing_token_file_is_a_message(server, tmp_path):
    path = kubeconfig(tmp_path, server.url, {"tokenFile": "nowhere"})
    with pytest.raises(KubeError, match="user 'someone': cannot read tokenFile"):
        KubeClient(str(path))


def test_polling_keeps_one_connection(server, tmp_path):
    server.accepted = {"token-1"}
    client = KubeClient(str(kubeconfig(tmp_path, server.url, exec_user(tmp_path))))
    client.service("shop", "web-prod")
    conn = client._connection()
    for _ in range(20):
        client.service("shop", "web-prod")
    assert client._connection() is conn  # kept alive: no new connection, no new TLS handshake
