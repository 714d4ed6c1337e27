"""Tier 4 set-up: the real Pulumi engine (Automation API) against the local cluster, whose node
runs the pods for real, with real HTTP traffic through the ingress controller on 127.0.0.1.

The tier needs the toolchain (scripts/toolchain.sh e2e) and starts the local cluster itself
(scripts/cluster.sh up) when it is not running, stopping it again afterwards, also when the run
fails or is interrupted. When a tool is missing (CI's time budget ran out before it could be
built), every test here is skipped with the reason in pytest's summary, unless
BLUEGREEN_REQUIRE_E2E=1 (make e2e), where that fails. A cluster whose node is simulated (this
machine cannot run containers) fails the tier: no request could be counted there.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from bench.traffic import Traffic
from bluegreen.release import helm
from bluegreen.release.kube import KubeClient
from tests.conftest import REPO_ROOT

TOOLS = ["pulumi", "helm", "kube-apiserver", "kube-controller-manager",
         "kube-scheduler", "kubelet", "kube-proxy", "etcd", "kwok", "kwokctl", "traefik", "versitygw"]
SCRIPTS = REPO_ROOT / "scripts"
# The demo app's images (scripts/images/build.py), imported into the node's containerd.
DEMO = "bluegreen.local/demo"
V1, V2, V3 = f"{DEMO}:1.0.0", f"{DEMO}:2.0.0", f"{DEMO}:3.0.0"
NEVER_READY = f"{DEMO}:never-ready"  # its health path always answers 503
INGRESS_CLASS = "traefik"
# Requests, failures and switch times per step, printed at the end of the run and kept in .state/.
REPORT: dict[str, dict] = {}
# Tables and summaries a test module prints at the end of the run (title: lines).
SECTIONS: dict[str, list[str]] = {}
# The host as it was before this run started the cluster (scripts/node.sh snapshot), if it did.
HOST_BEFORE: dict[str, str] = {}


@pytest.fixture(scope="session")
def e2e_path() -> str:
    """PATH with the built tools first; skips (or fails under make e2e) when one is missing."""
    tool_path = subprocess.run([str(SCRIPTS / "toolchain.sh"), "--print-path"], capture_output=True,
                               text=True, check=True).stdout.strip()
    path = os.pathsep.join(p for p in (str(REPO_ROOT / ".venv" / "bin"), tool_path, os.environ["PATH"]) if p)
    missing = [tool for tool in TOOLS if not shutil.which(tool, path=path)]
    # A pulumi built here runs the stand-in language host linked next to it; yours brings its own.
    pulumi = shutil.which("pulumi", path=path)
    ours = pulumi and os.path.dirname(pulumi) in tool_path.split(os.pathsep)
    if ours and not os.path.exists(os.path.join(os.path.dirname(pulumi), "pulumi-language-python")):
        missing.append("pulumi-language-python")
    if not provider_plugin_installed(path):
        missing.append("pulumi-resource-kubernetes")
    missing += [f"{tool} (CRDs)" for tool in CRD_TOOLS if not crds_cached(tool)]
    if missing:
        reason = (f"e2e tier: {', '.join(missing)} not built (scripts/toolchain.sh e2e builds them; "
                  f"CI skips what does not fit its time budget)")
        if os.environ.get("BLUEGREEN_REQUIRE_E2E"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


# CRDs the local Traefik serves (scripts/ingress/traefik.sh applies them from the tool cache).
CRD_TOOLS = ("traefik-crds", "gateway-api")


def crds_cached(tool: str) -> bool:
    directory = subprocess.run([str(SCRIPTS / "toolchain.sh"), "--print-dir", tool], capture_output=True, text=True,
                               check=True).stdout.strip()
    return any(Path(directory, "crds").glob("*.yaml"))


def provider_plugin_installed(path: str) -> bool:
    """The provider on PATH (ambient plugin) or in Pulumi's plugin cache at the pinned version."""
    if shutil.which("pulumi-resource-kubernetes", path=path):
        return True
    plugin = subprocess.run([str(SCRIPTS / "toolchain.sh"), "--print-provider"], capture_output=True, text=True,
                            check=True).stdout.strip()
    return os.access(plugin, os.X_OK)


@pytest.fixture(scope="session")
def pulumi_env(e2e_path, tmp_path_factory):
    """The process environment the Automation API hands to the Pulumi CLI: our tools, a private
    file backend, a throwaway passphrase, no plugin downloads."""
    backend = tmp_path_factory.mktemp("pulumi-backend")
    overrides = {
        "PATH": e2e_path,
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "PULUMI_CONFIG_PASSPHRASE": "e2e-only",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "KUBECONFIG": str(REPO_ROOT / ".state" / "kubeconfig"),
    }
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    yield dict(os.environ)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def kube(pulumi_env):
    """A running local cluster with a real node: the one `make cluster-up` started, or one started
    here and stopped again at the end (pytest runs this on failures and on Ctrl-C too)."""
    cluster = str(SCRIPTS / "cluster.sh")
    already_up = subprocess.run([cluster, "status"], capture_output=True, env=pulumi_env).returncode == 0
    if not already_up:
        HOST_BEFORE["snapshot"] = node_snapshot()
        up = subprocess.run([cluster, "up"], env=pulumi_env)
        if up.returncode != 0:
            subprocess.run([cluster, "down"], check=False, env=pulumi_env)
            pytest.fail(f"scripts/cluster.sh up failed (exit {up.returncode}); see its output above")
    try:
        mode = (REPO_ROOT / ".state" / "node-mode").read_text().strip()
        if mode != "real":
            pytest.fail(f"the local cluster has no real node ({mode}): pods do not run, so no request "
                        "can be counted; the e2e tier needs a machine that can run containers")
        yield CurrentCluster(pulumi_env["KUBECONFIG"])
    finally:
        if not already_up:
            subprocess.run([cluster, "down"], check=False, env=pulumi_env)


class CurrentCluster:
    """A KubeClient for whatever cluster the kubeconfig names now: some tests delete the local
    cluster and start a new one (new certificates), and the tests after them use the new one."""

    def __init__(self, kubeconfig: str):
        self._path, self._stamp, self._client = Path(kubeconfig), None, None

    def __getattr__(self, name: str):
        stamp = self._path.stat().st_mtime_ns
        if stamp != self._stamp:
            self._client, self._stamp = KubeClient(str(self._path)), stamp
        return getattr(self._client, name)


def node_snapshot() -> str:
    return subprocess.run([str(SCRIPTS / "node.sh"), "snapshot"], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="session")
def ingress(kube) -> str:
    """The ingress controller's address on 127.0.0.1 (what `scripts/activate` exports as
    BLUEGREEN_INGRESS), once it answers."""
    url = subprocess.run([str(SCRIPTS / "ingress" / "traefik.sh"), "url"], capture_output=True, text=True,
                         check=True).stdout.strip()
    wait_until("the ingress controller answers", lambda: fetch(url, "no-such-host.invalid")[0] == 404, timeout=60)
    return url


def fetch(ingress: str, host: str, path: str = "/") -> tuple[int, str, str]:
    """(status, slot, version) of one GET through the ingress; status 0 when it did not answer."""
    address = urllib.parse.urlsplit(ingress)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        reply = conn.getresponse()
        reply.read()
        return reply.status, reply.getheader("X-Slot", ""), reply.getheader("X-Version", "")
    except (http.client.HTTPException, OSError):
        return 0, "", ""
    finally:
        conn.close()


def version_of(image: str) -> str:
    return image.rsplit(":", 1)[1]


@contextmanager
def counted(name: str, ingress: str, host: str, version: str | None = None, outage: bool = False):
    """Real requests to `host` through the ingress during the block, and for 2 s after it (what
    the step left behind), sent by vegeta (the module uses the `vegeta` fixture). None may fail
    (unless the block repairs an `outage`: then they are counted only); with `version`, prod must
    end up serving only it.
    The figures go to REPORT: requests sent and failed, the rate, and, with `version`, the
    seconds from the block's start until every response came from that version."""
    traffic = Traffic(ingress, host, max_seconds=600)
    with traffic:
        started = time.time()
        yield traffic
        returned = time.time()
        time.sleep(2.0)
    figures = traffic.summary()
    figures["command_s"] = round(returned - started, 2)
    if version:
        figures["switch_s"] = traffic.switched(started, version)
    REPORT[name] = figures
    assert figures["sent"] > 0, figures
    assert outage or figures["failed"] == 0, f"{name}: {figures}"
    if version:
        assert figures["switch_s"] is not None, f"{name}: prod does not serve only {version}: {figures}"


@pytest.fixture(scope="session")
def project_dir(tmp_path_factory) -> Path:
    """A copy of the Pulumi project, so test stacks never write Pulumi.<stack>.yaml into the checkout."""
    target = tmp_path_factory.mktemp("project")
    for name in ("Pulumi.yaml", "__main__.py", "requirements.txt"):
        shutil.copy(REPO_ROOT / name, target / name)
    shutil.copytree(REPO_ROOT / "bluegreen", target / "bluegreen",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (target / ".venv").symlink_to(REPO_ROOT / ".venv")
    return target


class ReleaseTool:
    """The release tool as a user runs it, `python -m bluegreen ARGS --stack S --project-dir P --json`,
    in `env`. Calling it checks the exit code and returns the JSON it printed; its stderr (the
    progress a user sees) is passed on to the test's output."""

    def __init__(self, stack_name: str, project_dir: str | Path, env: dict):
        self.stack_name, self.project_dir, self.env = stack_name, str(project_dir), env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bluegreen", *args, "--stack", self.stack_name, "--project-dir",
                self.project_dir, "--json"]

    def run(self, *args: str) -> tuple[int, dict]:
        """(exit code, printed JSON), whatever the code."""
        done = subprocess.run(self.command(*args), capture_output=True, text=True, env=self.env)
        sys.stderr.write(done.stderr)
        return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {"stderr": done.stderr[-3000:]}

    def __call__(self, *args: str, expect: int = 0) -> dict:
        code, printed = self.run(*args)
        assert code == expect, f"exit {code}, expected {expect}: {printed}"
        return printed


def wait_until(what: str, predicate, timeout: float = 60.0, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def serving(kube: KubeClient, namespace: str, service: str, pods: dict[str, str], slot: str, count: int = 2) -> bool:
    """The Service selects `slot`, and its ready Endpoints are exactly the IPs of that slot's `count`
    Ready pods (pods found by their labels `pods` + slot). Read independently of the release tool."""
    found = kube.service(namespace, service)
    if not found or found["spec"]["selector"].get("slot") != slot:
        return False
    ready = sorted(
        p["status"]["podIP"] for p in kube.pods(namespace, {**pods, "slot": slot})
        if p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    )
    return len(ready) == count and kube.endpoints(namespace, service).ready == ready


# A cloud-style credential plugin (like `aws eks get-token`): a 10-minute token of a ServiceAccount,
# minted with the admin kubeconfig it is given. Each run is logged next to it.
GET_TOKEN = """#!/bin/sh
set -eu
here=$(dirname "$0")
token=$(kubectl --kubeconfig "$ADMIN_KUBECONFIG" -n kube-system create token bluegreen-e2e-exec --duration 10m)
expires=$(date -u -d '+10 minutes' +%Y-%m-%dT%H:%M:%SZ)
echo "$(date -u +%H:%M:%S) $PPID" >> "$here/runs.log"
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
printf '"status":{"token":"%s","expirationTimestamp":"%s"}}\\n' "$token" "$expires"
"""
EXEC_RBAC = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: bluegreen-e2e-exec, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bluegreen-e2e-exec}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: bluegreen-e2e-exec, namespace: kube-system}]
"""


def exec_plugin_kubeconfig(admin: str, directory: Path, proxy_url: str | None = None) -> Path:
    """A kubeconfig as EKS, GKE and AKS hand them out: the cluster's address and CA, and a user
    that is an exec credential plugin (./bin/get-token, relative to the kubeconfig) with no
    certificate or token of its own. The plugin logs each run to bin/runs.log. With `proxy_url`,
    the cluster is reached through that proxy (the cluster's proxy-url)."""
    subprocess.run(["kubectl", "--kubeconfig", admin, "apply", "-f", "-"], input=EXEC_RBAC, text=True,
                   check=True, capture_output=True)
    plugin = directory / "bin" / "get-token"
    plugin.parent.mkdir(parents=True, exist_ok=True)
    plugin.write_text(GET_TOKEN)
    plugin.chmod(0o755)
    with open(admin) as f:
        cluster = yaml.safe_load(f)["clusters"][0]["cluster"]
    if proxy_url:
        cluster["proxy-url"] = proxy_url
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "exec",
        "clusters": [{"name": "local", "cluster": cluster}],
        "contexts": [{"name": "exec", "context": {"cluster": "local", "user": "exec-plugin"}}],
        "users": [{"name": "exec-plugin", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": "./bin/get-token",
            "env": [{"name": "ADMIN_KUBECONFIG", "value": admin}], "interactiveMode": "Never"}}}],
    }
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def exec_plugin_runs(kubeconfig: Path) -> int:
    log = kubeconfig.parent / "bin" / "runs.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def api_server_port(kubeconfig: str) -> int:
    with open(kubeconfig) as f:
        server = yaml.safe_load(f)["clusters"][0]["cluster"]["server"]
    return urllib.parse.urlsplit(server).port or 443


class TinyProxy:
    """Debian's tinyproxy as a corporate HTTP proxy: on a free port of 127.0.0.1, with a config of
    its own (clients from 127.0.0.1 only, CONNECT only to the API server's port) and a log file
    that lists every CONNECT. scripts/node.sh installs it; `start` and `stop` are the test's."""

    def __init__(self, directory: Path, connect_port: int):
        self.directory, self.connect_port = directory, connect_port
        self.log = directory / "tinyproxy.log"
        with socket.socket() as probe:  # a free port; tinyproxy binds it right after
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def start(self, connect_port: int | None = None) -> None:
        binary = shutil.which("tinyproxy")
        if not binary:
            subprocess.run([str(SCRIPTS / "node.sh"), "packages"], check=True)  # where the project installs it
            binary = shutil.which("tinyproxy") or pytest.fail("tinyproxy not found after scripts/node.sh packages")
        self.connect_port = connect_port or self.connect_port
        config = self.directory / "tinyproxy.conf"
        config.write_text(f"Port {self.port}\nListen 127.0.0.1\nAllow 127.0.0.1\nConnectPort {self.connect_port}\n"
                          f"Timeout 600\nMaxClients 200\nLogFile \"{self.log}\"\nLogLevel Connect\n")
        self._process = subprocess.Popen([binary, "-d", "-c", str(config)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        wait_until(f"tinyproxy listens on {self.url}", self._listening, timeout=10, interval=0.1)

    def _listening(self) -> bool:
        assert self._process and self._process.poll() is None, f"tinyproxy exited; see {self.log}"
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None

    def connects(self) -> list[str]:
        """The log's CONNECT requests, without the HTTP version: `CONNECT 127.0.0.1:35031`."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line.split("): ", 1)[1].rsplit(" ", 1)[0] for line in lines
                if "Request (file descriptor" in line and "): CONNECT " in line]


def container_pid(pod: dict) -> int:
    """The host pid of a pod's first container, from the node's containerd."""
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    tasks = subprocess.run([str(SCRIPTS / "node.sh"), "ctr", "tasks", "ls"], capture_output=True, text=True,
                           check=True).stdout
    return int(next(line.split()[1] for line in tasks.splitlines() if line.startswith(container_id)))


def helm_record(kube: KubeClient, namespace: str, release: str) -> helm.Record:
    """The newest revision Helm recorded for `release`, decoded from its Secret."""
    newest = kube.helm_releases(namespace, release)[0]
    return helm.record_from_secret(kube.get(f"/api/v1/namespaces/{namespace}/secrets/{newest['name']}"))


def fresh_namespace(kube: KubeClient, name: str) -> None:
    """Remove what an aborted earlier run may have left in `name`, so each run starts clean."""
    if kube.namespace(name) is not None:
        kube.request("DELETE", f"/api/v1/namespaces/{name}")
        wait_until(f"leftover namespace {name} deleted", lambda: kube.namespace(name) is None, timeout=120)


def pytest_terminal_summary(terminalreporter):
    for title, lines in SECTIONS.items():
        terminalreporter.section(title)
        for line in lines:
            terminalreporter.write_line(line)
    if not REPORT:
        return
    terminalreporter.section("real requests to the prod host through the ingress, per step")
    for name, figures in REPORT.items():
        terminalreporter.write_line(f"{name}: {json.dumps(figures)}")
    state = REPO_ROOT / ".state"
    state.mkdir(exist_ok=True)
    (state / "e2e-report.json").write_text(json.dumps(REPORT, indent=2))
