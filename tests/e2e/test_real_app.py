"""Tier 4: what a real app needs, on the real node: shared and per-slot variables, a secret from
Pulumi's encrypted config mounted as a file, a pull secret; the secret's value in plain text
nowhere (state, preview and update output, stack config, Helm's record in the cluster); an
in-place change of prod refused before anything changes; a secret rotation through the idle slot,
promoted with no failed request and without restarting prod's pods.

What the pods got is read from the container processes themselves (/proc/PID/environ and the
file under /proc/PID/root), not from the pod spec.
"""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.e2e import conftest as e2e
from tests.e2e.conftest import INGRESS_CLASS, V1, V2, counted, fetch, fresh_namespace, version_of, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("vegeta")]  # prod traffic is counted

STACK, NS = "e2e-app", "bg-e2e-app"
PROD_HOST, STAGE_HOST = "shop.app.example.com", "stage.shop.app.example.com"
PODS = {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web"}
FIRST, ROTATED = "first-Pa55word-e2e", "rotated-Pa55word-e2e"
REGISTRY_PASSWORD = "registry-Pa55word-e2e"


@pytest.fixture(scope="module")
def app(project_dir, pulumi_env, kube, ingress):
    fresh_namespace(kube, NS)
    stack = auto.create_or_select_stack(STACK, work_dir=str(project_dir))
    for key, value in {"namespace": NS, "prodHost": PROD_HOST, "stageHost": STAGE_HOST, "ingressClass": INGRESS_CLASS,
                       "helmTimeoutSeconds": "120", "blue.enabled": "true", "blue.image": V1, "blue.replicas": "2",
                       "green.enabled": "false", "env.LOG_LEVEL": "info", "env.REGION": "eu",
                       "blue.env.FEATURE_X": "off", "imagePullSecrets[0]": "regcred"}.items():
        stack.set_config(key, auto.ConfigValue(value), path=True)
    stack.set_config("secrets.DB_PASSWORD", auto.ConfigValue(FIRST, secret=True), path=True)
    # A private registry's credentials: the stack makes the pull secret web-registry from them.
    stack.set_config("registry.server", auto.ConfigValue("registry.example.com:5000"), path=True)
    stack.set_config("registry.username", auto.ConfigValue("ci"), path=True)
    stack.set_config("registry.password", auto.ConfigValue(REGISTRY_PASSWORD, secret=True), path=True)
    # The pull secret is the cluster admin's: an existing dockerconfigjson Secret in the namespace.
    kube_env = {**pulumi_env}
    subprocess.run(["kubectl", "create", "namespace", NS], check=True, capture_output=True, env=kube_env)
    subprocess.run(["kubectl", "-n", NS, "create", "secret", "docker-registry", "regcred",
                    "--docker-server=registry.example.com", "--docker-username=ci", "--docker-password=not-used"],
                   check=True, capture_output=True, env=kube_env)
    stack.set_config("createNamespace", auto.ConfigValue("false"))
    stack.outputs_log = []
    stack.ingress = ingress
    yield stack
    stack.destroy(on_output=print, color="never")
    stack.workspace.remove_stack(STACK)
    subprocess.run(["kubectl", "delete", "namespace", NS, "--wait=false"], capture_output=True, env=kube_env)


def up(stack) -> str:
    lines: list[str] = []
    stack.up(on_output=lines.append, color="never")
    stack.outputs_log.extend(lines)
    print("\n".join(lines))
    return "\n".join(lines)


def running(kube, slot: str) -> list[dict]:
    return [p for p in kube.pods(NS, {**PODS, "slot": slot})
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]


def seen_by(pod: dict) -> tuple[dict[str, str], str]:
    """(environment, DB_PASSWORD file) of the pod's container process. We read them as root; the
    file must also be readable by the process itself (its user, group and supplementary groups)."""
    pid = e2e.container_pid(pod)
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
    secret = Path(f"/proc/{pid}/root/etc/secrets/DB_PASSWORD")
    assert readable_by(pid, secret), f"{secret} is not readable by the app's process"
    return env, secret.read_text()


def readable_by(pid: int, path: Path) -> bool:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    uid, gid = int(status["Uid"].split()[1]), int(status["Gid"].split()[1])  # effective ids
    groups = {gid, *map(int, status["Groups"].split())}
    found = path.stat()  # through the projected volume's symlink
    if found.st_uid == uid:
        return bool(found.st_mode & 0o400)
    if found.st_gid in groups:
        return bool(found.st_mode & 0o040)
    return bool(found.st_mode & 0o004)


def helm_values(kube) -> str:
    newest = kube.helm_releases(NS, "web")[0]
    secret = kube.get(f"/api/v1/namespaces/{NS}/secrets/{newest['name']}")
    return gzip.decompress(base64.b64decode(base64.b64decode(secret["data"]["release"]))).decode()


def test_the_app_runs_with_its_variables_its_secret_file_and_pull_secret(app, kube):
    up(app)
    wait_until("2 blue pods running", lambda: len(running(kube, "blue")) == 2, timeout=120)
    for pod in running(kube, "blue"):
        env, password = seen_by(pod)
        assert {k: env[k] for k in ("LOG_LEVEL", "REGION", "FEATURE_X", "BLUEGREEN_SLOT")} == {
            "LOG_LEVEL": "info", "REGION": "eu", "FEATURE_X": "off", "BLUEGREEN_SLOT": "blue"}
        assert "DB_PASSWORD" not in env  # a file, not a variable (secretsAs: file)
        assert password == FIRST
        assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}, {"name": "web-registry"}]
        assert pod["metadata"]["labels"]["app.kubernetes.io/version"] == version_of(V1)
    assert fetch(app.ingress, PROD_HOST) == (200, "blue", version_of(V1))
    assert [b["metadata"]["name"] for b in kube.get(
        f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets")["items"]] == ["web-blue"]
    pull = kube.get(f"/api/v1/namespaces/{NS}/secrets/web-registry")
    assert pull["type"] == "kubernetes.io/dockerconfigjson"
    auths = json.loads(base64.b64decode(pull["data"][".dockerconfigjson"]))["auths"]
    assert auths["registry.example.com:5000"]["username"] == "ci"


def test_a_new_registry_password_restarts_no_pod(app, kube):
    pods = sorted(p["metadata"]["name"] for p in running(kube, "blue"))
    app.set_config("registry.password", auto.ConfigValue(REGISTRY_PASSWORD + "-2", secret=True), path=True)
    up(app)
    pull = kube.get(f"/api/v1/namespaces/{NS}/secrets/web-registry")
    auths = json.loads(base64.b64decode(pull["data"][".dockerconfigjson"]))["auths"]
    assert auths["registry.example.com:5000"]["password"] == REGISTRY_PASSWORD + "-2"
    assert sorted(p["metadata"]["name"] for p in running(kube, "blue")) == pods


def test_the_secret_value_is_in_plain_text_nowhere(app, kube, project_dir):
    places = {
        "the stack state (pulumi stack export)": json.dumps(app.export_stack().deployment),
        "the update output": "\n".join(app.outputs_log),
        "the stack outputs": json.dumps({k: v.value for k, v in app.outputs().items()}),
        "the stack config file": (Path(project_dir) / f"Pulumi.{STACK}.yaml").read_text(),
        "Helm's release record in the cluster": helm_values(kube),
    }
    preview: list[str] = []
    app.preview(diff=True, on_output=preview.append, color="never")
    places["pulumi preview --diff"] = "\n".join(preview)
    for place, text in places.items():
        assert text and FIRST not in text, f"the secret is in plain text in {place}"
        assert REGISTRY_PASSWORD not in text, f"the registry password is in plain text in {place}"


def test_an_in_place_change_of_prod_is_refused_before_anything_changes(app, kube):
    revision = kube.helm_releases(NS, "web")[0]["revision"]
    pods = sorted(p["metadata"]["name"] for p in running(kube, "blue"))
    for key, value, secret in (("blue.image", V2, False), ("env.LOG_LEVEL", "debug", False),
                               ("secrets.DB_PASSWORD", ROTATED, True)):
        before = app.get_config(key, path=True)
        app.set_config(key, auto.ConfigValue(value, secret=secret), path=True)
        try:
            for operation in (app.preview, app.up):
                with pytest.raises(auto.CommandError) as refused:
                    operation(color="never")
                message = str(refused.value)
                assert "what prod (blue) runs" in message and "allowProdChange" in message, message[-3000:]
                assert ROTATED not in message
        finally:
            app.set_config(key, before, path=True)
    assert kube.helm_releases(NS, "web")[0]["revision"] == revision
    assert sorted(p["metadata"]["name"] for p in running(kube, "blue")) == pods


def test_a_secret_rotation_goes_through_stage_and_is_promoted_without_a_failed_request(app, kube):
    prod_pods = sorted(p["metadata"]["name"] for p in running(kube, "blue"))
    # The new version with the rotated secret goes into the idle slot.
    app.set_config("green.enabled", auto.ConfigValue("true"), path=True)
    app.set_config("green.image", auto.ConfigValue(V2), path=True)
    app.set_config("green.replicas", auto.ConfigValue("2"), path=True)
    app.set_config("green.secrets.DB_PASSWORD", auto.ConfigValue(ROTATED, secret=True), path=True)
    with counted("real app: deploy the rotated secret into green", app.ingress, PROD_HOST, version_of(V1)):
        up(app)
    wait_until("2 green pods running", lambda: len(running(kube, "green")) == 2, timeout=120)
    for pod in running(kube, "green"):
        assert seen_by(pod)[1] == ROTATED
    assert sorted(p["metadata"]["name"] for p in running(kube, "blue")) == prod_pods  # prod never restarted
    for pod in running(kube, "blue"):
        assert seen_by(pod)[1] == FIRST
    wait_until("stage answers from green", lambda: fetch(app.ingress, STAGE_HOST) == (200, "green", version_of(V2)))

    app.set_config("productionSlot", auto.ConfigValue("green"))
    with counted("real app: promote green (rotated secret)", app.ingress, PROD_HOST, version_of(V2)):
        up(app)
    assert fetch(app.ingress, PROD_HOST) == (200, "green", version_of(V2))
    assert ROTATED not in json.dumps(app.export_stack().deployment) and ROTATED not in helm_values(kube)
