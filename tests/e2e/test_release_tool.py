"""Tier 4: the `bluegreen` release tool, every command and failure path, on the real node.

The CLI runs as a user runs it (`python -m bluegreen ... --json`, a separate process); what it did
is read back from the Kubernetes API, from its JSON result, and from real HTTP requests to the
prod and stage hosts through the ingress: during every step, requests to prod are counted and
none may fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml
from pulumi import automation as auto

from bluegreen.release.kube import KubeClient
from tests.e2e import conftest as e2e
from tests.e2e.conftest import (
    INGRESS_CLASS,
    NEVER_READY,
    V1,
    V2,
    V3,
    counted,
    exec_plugin_kubeconfig,
    exec_plugin_runs,
    fetch,
    fresh_namespace,
    version_of,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("vegeta")]  # prod traffic is counted

STACK, NS = "e2e-tool", "bg-e2e-tool"
PROD_HOST, STAGE_HOST = "shop.tool.example.com", "stage.shop.tool.example.com"
WEB_PODS = {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web"}


@pytest.fixture(scope="module")
def tool(project_dir, pulumi_env, kube, ingress, tmp_path_factory):
    """The release tool, run as a user runs it, with a kubeconfig as a cloud hands it out behind a
    corporate proxy: its user is an exec credential plugin (as on EKS, GKE and AKS), and its cluster
    is reached through an HTTP proxy (proxy-url: tinyproxy on 127.0.0.1). Every command here, and
    the pulumi, helm and kubectl it runs, authenticates through the plugin and goes through the
    proxy. (The other e2e modules reach the API server directly: each path runs once.)"""
    fresh_namespace(kube, NS)
    admin = pulumi_env["KUBECONFIG"]
    credentials = tmp_path_factory.mktemp("exec-kubeconfig")
    proxy = e2e.TinyProxy(tmp_path_factory.mktemp("proxy"), e2e.api_server_port(admin))
    proxy.start()
    try:
        kubeconfig = exec_plugin_kubeconfig(admin, credentials, proxy.url)
        stack = auto.create_or_select_stack(STACK, work_dir=str(project_dir))
        for key, value in {"namespace": NS, "prodHost": PROD_HOST, "stageHost": STAGE_HOST,
                           "ingressClass": INGRESS_CLASS, "blue.enabled": "true", "blue.image": V1,
                           "blue.replicas": "2", "green.enabled": "false", "helmTimeoutSeconds": "30"}.items():
            stack.set_config(key, auto.ConfigValue(value), path=True)
        stack.up(on_output=print, color="never")
        # --check-url reaches the hosts through the ingress on 127.0.0.1, as in the README's shell.
        env = {**pulumi_env, "BLUEGREEN_INGRESS": ingress, "KUBECONFIG": str(kubeconfig)}

        def renew_kubeconfig() -> Path:
            """After the cluster was made anew: its credentials again, and the proxy let through
            to its API server's port, should that have changed."""
            if e2e.api_server_port(admin) != proxy.connect_port:
                proxy.stop()
                proxy.start(e2e.api_server_port(admin))
            return exec_plugin_kubeconfig(admin, credentials, proxy.url)

        run = e2e.ReleaseTool(STACK, project_dir, env)
        run.stack = stack
        run.ingress = ingress
        run.env = env
        run.kubeconfig = kubeconfig
        run.admin_kubeconfig = admin
        run.proxy = proxy
        run.renew_kubeconfig = renew_kubeconfig
        yield run
        stack.destroy(on_output=print, color="never")
        stack.workspace.remove_stack(STACK)
    finally:
        proxy.stop()
        e2e.REPORT["release tool through tinyproxy"] = {"connects": len(proxy.connects()), "log": str(proxy.log)}


def prod_slot(kube):
    return kube.service(NS, "web-prod")["spec"]["selector"]["slot"]


def serving(kube, role, slot):
    return e2e.serving(kube, NS, f"web-{role}", WEB_PODS, slot)


def prod_traffic(tool, name, image):
    """Count requests to the prod host during a step; prod must end up serving only `image`."""
    return counted(f"bluegreen {name}", tool.ingress, PROD_HOST, version_of(image))


def answers(tool, host, slot, image):
    """`host` answers through the ingress from `slot`, running `image`."""
    return fetch(tool.ingress, host) == (200, slot, version_of(image))


def test_status(tool):
    state = tool("status")["state"]
    assert (state["productionSlot"], state["stageSlot"]) == ("blue", "green")
    assert state["slots"]["blue"] == {"role": "prod", "enabled": True, "image": V1, "ready": 2, "desired": 2}
    assert state["slots"]["green"]["enabled"] is False
    assert state["release"]["status"] == "deployed"
    assert state["urls"]["prod"] == "http://shop.tool.example.com/"
    assert state["history"][0]["result"] == "succeeded"


def test_the_tool_authenticates_through_the_exec_plugin(tool):
    user = yaml.safe_load(tool.kubeconfig.read_text())["users"][0]["user"]
    assert set(user) == {"exec"}  # no certificate, no token: only what the plugin hands out
    before = exec_plugin_runs(tool.kubeconfig)
    assert tool("status")["state"]["productionSlot"] == "blue"
    assert exec_plugin_runs(tool.kubeconfig) > before


def test_the_tool_reaches_the_cluster_through_the_proxy(tool):
    """tinyproxy's own log lists the CONNECTs: one for the release tool's client alone, more for a
    whole command (the tool, and the pulumi and helm it runs)."""
    cluster = yaml.safe_load(tool.kubeconfig.read_text())["clusters"][0]["cluster"]
    assert cluster["proxy-url"] == tool.proxy.url
    target = f"CONNECT {urllib.parse.urlsplit(cluster['server']).netloc}"
    before = len(tool.proxy.connects())
    assert KubeClient(str(tool.kubeconfig)).namespace(NS)["metadata"]["name"] == NS
    assert tool.proxy.connects()[before:] == [target]
    assert tool("status")["state"]["productionSlot"] == "blue"
    assert len(tool.proxy.connects()) > before + 1
    assert set(tool.proxy.connects()) == {target}  # nothing else went through it


def test_with_the_proxy_stopped_a_command_fails_with_a_message(tool):
    tool.proxy.stop()
    try:
        done = subprocess.run(tool.command("status"), capture_output=True, text=True, env=tool.env)
    finally:
        tool.proxy.start()
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    error = json.loads(done.stdout)["error"]
    assert f"cannot reach the proxy {tool.proxy.url} (cluster 'local': proxy-url)" in error, error
    assert error.endswith("Connection refused"), error
    assert f"bluegreen status: FAILED: {error}" in done.stderr
    print(f"with the proxy stopped: exit {done.returncode}, {error}")


def test_hosts_answer_through_the_ingress(tool):
    assert answers(tool, PROD_HOST, "blue", V1)
    assert fetch(tool.ingress, STAGE_HOST)[0] == 503  # stage selects green, which has no pods yet


def test_deploy_into_the_idle_slot(tool, kube):
    with prod_traffic(tool, "deploy", V1):
        result = tool("deploy", V2)
    assert result["slot"] == "green" and result["prodWatch"]["empty"] == 0
    assert result["prodWatch"]["slots_seen"] == ["blue"]
    assert serving(kube, "stage", "green") and serving(kube, "prod", "blue")
    assert result["state"]["slots"]["green"]["ready"] == 2
    wait_until("stage answers from green", lambda: answers(tool, STAGE_HOST, "green", V2))


def test_deploy_refuses_to_overwrite_a_staged_release(tool, kube):
    result = tool("deploy", V3, expect=2)
    assert "a release is already staged: green runs" in result["error"]
    assert kube.deployment(NS, "web-green")["spec"]["template"]["spec"]["containers"][0]["image"] == V2


def test_failed_smoke_check_prevents_the_promotion(tool, kube):
    with prod_traffic(tool, "promote (failed stage check)", V1):
        result = tool("promote", "--check-cmd", "exit 3", expect=2)
    assert "smoke checks against stage failed" in result["error"]
    assert prod_slot(kube) == "blue"
    assert tool("status")["state"]["productionSlot"] == "blue"  # config untouched


def test_preview_guard_refuses_an_unrelated_change(tool, kube):
    tool.stack.set_config("stageHost", auto.ConfigValue("other-stage.shop.tool.example.com"))
    try:
        result = tool("promote", expect=2)
        # The object diff names the stage Ingress's changed host before the preview is read.
        assert "the update would change more objects than the flip does" in result["error"], result["error"]
        assert "Ingress bg-e2e-tool/web-stage changes spec.rules" in result["error"], result["error"]
        assert [c["name"] for c in result["diff"]["changes"] if c["kind"] == "Ingress"] == ["web-stage"]
        assert prod_slot(kube) == "blue"
        assert tool.stack.get_config("productionSlot").value == "blue"
    finally:
        tool.stack.set_config("stageHost", auto.ConfigValue("stage.shop.tool.example.com"))


def test_failed_check_after_the_flip_rolls_back_automatically(tool, kube):
    # Passes against stage, fails against prod: the promotion must be undone.
    with prod_traffic(tool, "promote (failed prod check, automatic rollback)", V1):
        result = tool("promote", "--check-cmd", 'test "$BLUEGREEN_TARGET" = stage', expect=1)
    assert "rolled back, prod serves blue" in result["error"]
    assert result["state"]["productionSlot"] == "blue"
    wait_until("prod serves blue again", lambda: serving(kube, "prod", "blue"))


def test_promote(tool, kube):
    # --check-url hits the real stage, then the real prod, through the ingress.
    with prod_traffic(tool, "promote", V2):
        result = tool("promote", "--check-url", "{url}/healthz", "--check-cmd", 'test -n "$BLUEGREEN_SLOT"')
    assert result["prodWatch"]["empty"] == 0, result["prodWatch"]
    assert result["prodWatch"]["slots_seen"] == ["blue", "green"]
    assert serving(kube, "prod", "green") and serving(kube, "stage", "blue")
    assert result["state"]["productionSlot"] == "green"
    assert answers(tool, PROD_HOST, "green", V2) and answers(tool, STAGE_HOST, "blue", V1)


def test_rollback_and_promote_again(tool, kube):
    with prod_traffic(tool, "rollback", V1):
        result = tool("rollback")
    assert result["prodWatch"]["empty"] == 0
    assert serving(kube, "prod", "blue")
    with prod_traffic(tool, "promote again", V2):
        assert tool("promote")["prodWatch"]["empty"] == 0
    assert serving(kube, "prod", "green")


def test_retire_refuses_the_production_slot(tool, kube):
    result = tool("retire", "--slot", "green", expect=2)
    assert "green is the production slot" in result["error"]
    assert kube.deployment(NS, "web-green") is not None


def test_retire_keep_replicas_then_retire(tool, kube):
    with prod_traffic(tool, "retire --keep-replicas 1", V2):
        tool("retire", "--keep-replicas", "1")
    wait_until("blue at 1 replica", lambda: kube.deployment(NS, "web-blue")["spec"]["replicas"] == 1)
    with prod_traffic(tool, "retire", V2):
        result = tool("retire")
    assert result["prodWatch"]["empty"] == 0
    wait_until("web-blue is gone", lambda: kube.deployment(NS, "web-blue") is None)
    assert serving(kube, "prod", "green")


def test_rollback_after_retire_is_refused(tool, kube):
    result = tool("rollback", expect=2)
    assert "the previous slot blue was retired" in result["error"]
    assert prod_slot(kube) == "green"


def test_image_that_never_becomes_ready_fails_deploy_and_prod_is_untouched(tool, kube):
    prod_before = kube.endpoints(NS, "web-prod").ready
    with prod_traffic(tool, "deploy (never ready, Helm rolls back)", V2):
        result = tool("deploy", NEVER_READY, expect=1)
    assert "blue was not deployed and prod stays on green" in result["error"]
    assert result["prodWatch"]["empty"] == 0 and result["prodWatch"]["slots_seen"] == ["green"]
    assert kube.endpoints(NS, "web-prod").ready == prod_before
    assert result["state"]["slots"]["blue"]["enabled"] is False  # stack config restored
    assert kube.deployment(NS, "web-blue") is None  # Helm's atomic rollback removed it


def test_recover_after_an_update_killed_mid_way(tool, kube, project_dir, pulumi_env):
    with prod_traffic(tool, "pulumi up killed mid-way, then recover", V2):
        killed_update_then_recover(tool, kube, project_dir, pulumi_env)
    assert answers(tool, PROD_HOST, "green", V2)


def killed_update_then_recover(tool, kube, project_dir, pulumi_env):
    # An update that Helm is still waiting on (pods never ready), killed with SIGKILL.
    tool.stack.set_config("blue.enabled", auto.ConfigValue("true"), path=True)
    tool.stack.set_config("blue.image", auto.ConfigValue(NEVER_READY), path=True)
    update = subprocess.Popen(["pulumi", "up", "--yes", "--skip-preview", "--stack", STACK], cwd=project_dir,
                              env=pulumi_env, start_new_session=True)
    wait_until("the Helm release is pending-upgrade",
               lambda: (kube.helm_releases(NS, "web") or [{}])[0].get("status") == "pending-upgrade", timeout=90)
    # Helm records the pending revision first, then creates the objects: kill once blue's is there.
    wait_until("the pending upgrade created web-blue", lambda: kube.deployment(NS, "web-blue") is not None,
               timeout=30)
    kill_tree(update.pid)  # the CLI, the language host, the provider: as a power cut would
    update.wait()
    time.sleep(1)

    # Put the config back the way a user undoing the release would, then the stuck release blocks `up`.
    tool.stack.set_config("blue.enabled", auto.ConfigValue("false"), path=True)
    tool.stack.set_config("blue.image", auto.ConfigValue(V3), path=True)
    with pytest.raises(auto.CommandError, match="locked|another operation|pending"):
        tool.stack.up(color="never")

    result = tool("recover")
    assert any(action.startswith("removed pending") for action in result["actions"])
    assert result["state"]["release"]["status"] == "deployed"
    assert tool.stack.up(on_output=print, color="never").summary.result == "succeeded"
    assert serving(kube, "prod", "green")
    assert kube.helm_releases(NS, "web")[0]["status"] == "deployed"
    # The killed update's blue Deployment is in no Helm revision any more: recover deleted it.
    assert any(action == "deleted the orphaned Deployment web-blue" for action in result["actions"])
    assert kube.deployment(NS, "web-blue") is None


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (plugins may run in process groups of their own)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry))
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue.extend(children.get(current, []))
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def test_the_runtime_enforces_the_restricted_profile(tool, kube):
    """The namespace enforces Pod Security "restricted" and admitted the pods; the container
    processes really run that way: read from /proc on the node, not from the pod spec."""
    assert kube.namespace(NS)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # The pods that run: a retired slot's pods may still be draining (their containers stopping).
    pods = [pod for pod in kube.pods(NS, WEB_PODS) if not pod["metadata"].get("deletionTimestamp")]
    assert pods
    for pod in pods:
        pid = e2e.container_pid(pod)
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        assert status["Uid"].split()[:2] != ["0", "0"], status["Uid"]  # not root
        assert status["NoNewPrivs"].strip() == "1"
        assert status["Seccomp"].strip() == "2"  # a filter: RuntimeDefault
        assert int(status["CapEff"], 16) == 0  # every capability dropped
        root = next(line for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if line.split()[4] == "/")
        assert "ro" in root.split()[5].split(","), root  # read-only root filesystem


# Drift: the cluster changed behind the stack's back. Prod is green (V2) and blue retired here.
DRIFTS = {
    "prod Deployment deleted": (["delete", "deployment", "web-green"], 1, "Deployment web-green is missing"),
    "prod Service patched to the stage slot": (
        ["patch", "service", "web-prod", "--type", "merge", "-p", '{"spec": {"selector": {"slot": "blue"}}}'],
        1, "Service web-prod selects slot blue, the stack deployed green"),
    "prod scaled to 0": (["scale", "deployment", "web-green", "--replicas", "0"], 1,
                         "Deployment web-green is scaled to 0 replicas, the stack deployed 2"),
    "stage Service patched while prod serves": (
        ["patch", "service", "web-stage", "--type", "merge", "-p", '{"spec": {"selector": {"slot": "green"}}}'],
        3, "Service web-stage selects slot green, the stack deployed blue"),
}


def config_of(tool) -> dict[str, str]:
    return {key: value.value for key, value in tool.stack.get_all_config().items()}


@pytest.mark.parametrize("case", DRIFTS)
def test_drift_is_detected_refused_and_repaired(tool, kube, case):
    command, code, problem = DRIFTS[case]
    config = config_of(tool)
    done = subprocess.run(["kubectl", "-n", NS, *command], capture_output=True, text=True, env=tool.env)
    assert done.returncode == 0, done.stderr
    # status tells, object by object (the controllers take a moment to show the effect)
    status = wait_until(f"status exits {code}", lambda: (lambda r: r if r[0] == code else None)(tool.run("status")))[1]
    assert problem in status["error"] and "Fix: bluegreen repair" in status["error"], status["error"]
    assert status["state"]["serving"] is (code == 3)
    # a release step refuses to build on it
    refused = tool("deploy", V3, expect=2)
    assert "is not what the stack deployed" in refused["error"] and "bluegreen repair" in refused["error"]
    with counted(f"bluegreen repair: {case}", tool.ingress, PROD_HOST, version_of(V2), outage=code == 1):
        result = tool("repair")
    assert result["actions"][0] == "helm upgrade web with the deployed values"
    assert tool("status")["state"]["drift"] == []
    assert config_of(tool) == config  # repair changes no config
    assert answers(tool, PROD_HOST, "green", V2)


def status_says_the_namespace_is_missing(tool) -> None:
    code, status = tool.run("status")
    assert code == 1 and f"Namespace {NS} is missing" in status["error"], status
    assert "Fix: bluegreen repair" in status["error"], status["error"]


def repair_recreates_it(tool, case: str, config: dict[str, str]) -> None:
    """`bluegreen repair` recreates what a wipe took (requests to prod counted), leaves no drift
    and the stack config as it was before the wipe."""
    with counted(f"bluegreen repair: {case}", tool.ingress, PROD_HOST, version_of(V2), outage=True):
        result = tool("repair")
    assert "pulumi up recreated the release" in result["actions"]
    assert tool("status")["state"]["drift"] == []
    assert config_of(tool) == config
    assert answers(tool, PROD_HOST, "green", V2)


def test_a_wiped_namespace_is_detected_and_recreated(tool, kube):
    config = config_of(tool)
    kube.request("DELETE", f"/api/v1/namespaces/{NS}")
    wait_until("the namespace is gone", lambda: kube.namespace(NS) is None, timeout=120)
    status_says_the_namespace_is_missing(tool)
    repair_recreates_it(tool, "namespace wiped", config)


def test_repair_with_nothing_to_repair_changes_nothing(tool, kube):
    revision = kube.helm_releases(NS, "web")[0]["revision"]
    assert tool("repair")["actions"] == []
    assert kube.helm_releases(NS, "web")[0]["revision"] == revision


# Last in this module: these delete the whole local cluster (etcd, certificates, node, ingress)
# and start it again empty (the session's `kube` follows: conftest.CurrentCluster).
def wipe_the_cluster(tool) -> None:
    cluster = str(e2e.SCRIPTS / "cluster.sh")
    subprocess.run([cluster, "down"], check=True, env=tool.env)
    subprocess.run([cluster, "up"], check=True, env=tool.env)
    # A new cluster: new CA, no ServiceAccount. Fetch its credentials again, as from a cloud.
    tool.renew_kubeconfig()
    status_says_the_namespace_is_missing(tool)


def test_a_wiped_cluster_is_detected_and_repaired(tool):
    config = config_of(tool)
    wipe_the_cluster(tool)
    repair_recreates_it(tool, "cluster wiped", config)


def test_make_up_converges_on_a_wiped_cluster(tool):
    """The README's `make up` (scripts/up.sh) on this stack, after the cluster was wiped: it
    recreates what the stack holds instead of reporting it unchanged, and says so."""
    config = config_of(tool)
    wipe_the_cluster(tool)
    # The local cluster's own kubeconfig, as `make up` users have it (then it prints the curl lines).
    env = {**tool.env, "STACK": STACK, "PROJECT": tool.stack.workspace.work_dir, "KUBECONFIG": tool.admin_kubeconfig}
    with counted("make up: cluster wiped", tool.ingress, PROD_HOST, version_of(V2), outage=True):
        done = subprocess.run([str(e2e.SCRIPTS / "up.sh")], capture_output=True, text=True, env=env)
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "created" in done.stdout.split("Resources:")[-1], done.stdout  # pulumi's summary
    # it tried the hosts through the ingress and says what answered
    (prod_line,) = [line for line in done.stderr.splitlines() if "pulumi config get prodHost" in line]
    assert prod_line.endswith("HTTP 200"), prod_line
    assert tool("status")["state"]["drift"] == []
    assert config_of(tool) == config
    assert answers(tool, PROD_HOST, "green", V2)
