"""Tier 4: no secret value anywhere it should not be (issue 21, part 3), on the real node.

Every kind of secret the stack takes gets a random marker value: an app secret shared by both
slots, each slot's own secret (and a rotation of green's), the private registry's password and the
stage's basic-auth password. A whole release runs with the release tool (deploy, promote with a
check that uses the stage password, rollback, retire) with the state in a file backend; the stack
then moves to an S3 backend (versitygw on 127.0.0.1) and a whole release runs with plain
`pulumi config set` + `pulumi up`. Then every place below is searched for every value, in plain
text, in base64 at any alignment and through layers of base64 and gzip (tests/e2e/secret_scan.py),
and for the digest the prod guard keeps of it:

- the Pulumi state: the file backend and the S3 bucket, every file of them;
- every Helm release record of the release (collected after each step, decoded);
- `pulumi stack output --json`, `pulumi stack history --json`, `pulumi config --json`;
- the release tool's `--json` output and stderr; every pulumi command's output and event log; the
  logs pulumi, its plugins and Helm write at that verbosity (all of the commands' temp directory,
  and what changed in PULUMI_HOME);
- the rendered chart values: the Release's inputs and outputs in the state, `helm get values --all`
  and `helm get manifest`;
- every other object in the app's namespace (Pods, Deployments, ReplicaSets, Events, ...);
- the tests' temporary directories and the checkout's .state/ (the cluster's, the node's and
  Traefik's logs and configs), but for etcd's data, where Kubernetes keeps the Secret objects.

The values may be only in the Kubernetes Secrets the stack made and in the pods (their files); the
test checks that too, positively, so that it would notice a value it cannot find. It prints what it
searched: places, bytes, hits per place.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.conftest import REPO_ROOT
from tests.e2e import conftest as e2e
from tests.e2e.conftest import INGRESS_CLASS, V1, V2, V3, fetch, fresh_namespace, version_of, wait_until
from tests.e2e.s3 import S3Server
from tests.e2e.secret_scan import Scan, helm_record
from tests.e2e.test_routing import request

pytestmark = pytest.mark.e2e

STACK, NS = "e2e-secrets", "bg-e2e-secrets"
PROD_HOST, STAGE_HOST = "shop.secrets.example.com", "stage.shop.secrets.example.com"
PODS = {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web"}
STAGE_USER = "tester"


def marker(name: str) -> str:
    return f"bgscan-{name}-{secrets.token_hex(12)}"


# Each secret's config key and its random value (a new one each run).
VALUES = {
    "secrets.DB_PASSWORD": marker("db"),  # both slots
    "blue.secrets.API_TOKEN": marker("blue"),  # blue's own
    "green.secrets.API_TOKEN": marker("green"),  # green's own, deployed by the tool
    "green.secrets.API_TOKEN (rotated)": marker("rotated"),  # green's own, rotated with plain pulumi
    "registry.password": marker("registry"),
    "stageAuth.password": marker("stage"),
}
# Where the program keeps a digest of each app secret (the secretDigests output, a Pulumi secret).
DIGESTS = {f"digest of {key}": hashlib.sha256(value.encode()).hexdigest()[:16]
           for key, value in VALUES.items() if "secrets." in key}
# What the scan found where a value is allowed (its Secret, the pods): filled in along the way.
FOUND: dict[str, set[str]] = {}


class Run:
    """The stack, the commands' environments and what each step left to search."""

    def __init__(self, root: Path, env: dict, kube, ingress: str, project_dir: Path, s3: S3Server):
        self.root, self.kube, self.project_dir, self.ingress, self.s3 = root, kube, project_dir, ingress, s3
        self.tmp = root / "tmp"  # TMPDIR of every command: pulumi's, its plugins' and helm's logs land here
        self.tmp.mkdir()
        self.file_backend = root / "state"
        self.file_backend.mkdir()
        self.started = time.time()
        self.env = {**env, "TMPDIR": str(self.tmp), "PULUMI_BACKEND_URL": f"file://{self.file_backend}",
                    "BLUEGREEN_INGRESS": ingress}
        self.scan = Scan({**VALUES, **DIGESTS})
        self.outputs: list[tuple[str, str]] = []  # (place, text) of every command run
        self.helm_records: dict[str, bytes] = {}
        self.stack = auto.create_or_select_stack(STACK, work_dir=str(project_dir),
                                                 opts=auto.LocalWorkspaceOptions(env_vars=self.env))

    def use_s3(self) -> None:
        self.env = {**self.env, **self.s3.backend_env()}

    def output(self, place: str, done: subprocess.CompletedProcess, what: str) -> None:
        self.outputs.append((place, f"$ {what}\n{done.stdout}\n{done.stderr}"))

    def pulumi(self, *args: str, secret_input: str | None = None, event_log: bool = False) -> str:
        """A plain pulumi command as a user runs it in the project; a secret is given on stdin."""
        command = ["pulumi", *args, "--stack", STACK]
        env = self.env
        if event_log:  # the engine's events as the Automation API gets them (a debug command's flag)
            command += ["--event-log", str(self.root / f"events-{len(self.outputs)}.jsonl")]
            env = {**env, "PULUMI_DEBUG_COMMANDS": "true"}
        done = subprocess.run(command, cwd=self.project_dir, env=env, capture_output=True, text=True,
                              input=secret_input)
        self.output("pulumi commands' output", done, " ".join(args))
        assert done.returncode == 0, f"pulumi {' '.join(args)}: exit {done.returncode}\n{done.stderr[-3000:]}"
        return done.stdout

    def config(self, key: str, value: str, secret: bool = False) -> None:
        if secret:
            self.pulumi("config", "set", "--secret", "--path", key, secret_input=value)
        else:
            self.pulumi("config", "set", "--path", key, value)

    def up(self) -> None:
        self.pulumi("up", "--yes", "--diff", event_log=True)
        self.collect_helm_records()

    def tool(self, *args: str, extra_env: dict | None = None) -> dict:
        done = subprocess.run(e2e.ReleaseTool(STACK, self.project_dir, self.env).command(*args), capture_output=True,
                              text=True, env={**self.env, **(extra_env or {})})
        self.output("the release tool's --json output and stderr", done, f"bluegreen {' '.join(args)}")
        assert done.returncode == 0, f"bluegreen {' '.join(args)}: exit {done.returncode}\n{done.stderr[-3000:]}"
        self.collect_helm_records()
        return json.loads(done.stdout)

    def collect_helm_records(self) -> None:
        """Every Helm release record there is now, decoded (Helm keeps the last 10)."""
        for record in self.kube.helm_releases(NS, "web"):
            name = record["name"]
            secret = self.kube.get(f"/api/v1/namespaces/{NS}/secrets/{name}")
            if secret:
                self.helm_records[name] = helm_record(secret)


@pytest.fixture(scope="module")
def run(project_dir, pulumi_env, kube, ingress, tmp_path_factory):
    fresh_namespace(kube, NS)
    root = tmp_path_factory.mktemp("secret-scan")
    with S3Server(root / "s3", pulumi_env, root / "versitygw.log") as s3:
        current = Run(root, pulumi_env, kube, ingress, project_dir, s3)
        yield current
        current.stack = auto.select_stack(STACK, work_dir=str(project_dir),
                                          opts=auto.LocalWorkspaceOptions(env_vars=current.env))
        current.stack.destroy(on_output=print, color="never")
        current.stack.workspace.remove_stack(STACK)
        # The file backend's copy of the stack (its resources now belong to the S3 one).
        subprocess.run(["pulumi", "stack", "rm", "--yes", "--force", "--preserve-config", STACK], cwd=project_dir,
                       env={**current.env, "PULUMI_BACKEND_URL": f"file://{current.file_backend}"},
                       capture_output=True)


def running(kube, slot: str) -> list[dict]:
    return [p for p in kube.pods(NS, {**PODS, "slot": slot})
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]


def in_the_pods(run: Run, slot: str, expected: dict[str, str]) -> None:
    """Each running pod of `slot` has each secret file with its value (read from the container
    process's root), and the scan finds the values there: the place where they belong."""
    kube = run.kube
    wait_until(f"2 {slot} pods running", lambda: len(running(kube, slot)) == 2, timeout=120)
    for pod in running(kube, slot):
        pid = e2e.container_pid(pod)
        for name, key in expected.items():
            content = Path(f"/proc/{pid}/root/etc/secrets/{name}").read_text()
            assert content == VALUES[key], f"{slot} pod {pod['metadata']['name']}: {name} is not {key}'s value"
            hits = run.scan.add("the pods' secret files and environment", f"{pod['metadata']['name']}:{name}", content)
            FOUND.setdefault(key, set()).update({h.secret for h in hits} & {key})
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        run.scan.add("the pods' secret files and environment", f"{pod['metadata']['name']}:environ", environ)


def in_its_secret(run: Run, name: str, keys: list[str]) -> None:
    """The stack's Secret `name` (by name, or by prefix for the slots' Pulumi-named ones) holds each
    value: the scan finds it in the object as the API returns it (base64 data)."""
    items = run.kube.get(f"/api/v1/namespaces/{NS}/secrets")["items"]
    found = [s for s in items if s["metadata"]["name"] == name or s["metadata"]["name"].startswith(f"{name}-")]
    assert found, f"no Secret {name} in {NS}: {[s['metadata']['name'] for s in items]}"
    for secret in found:
        hits = {h.secret for h in run.scan.add("the Kubernetes Secrets the stack made", secret["metadata"]["name"],
                                               json.dumps(secret))}
        for key in keys:
            assert key in hits, f"{key}'s value is not in the Secret {secret['metadata']['name']}"
            FOUND.setdefault(key, set()).add(key)


def test_a_release_with_plain_pulumi_sets_every_kind_of_secret(run):
    for key, value in {"namespace": NS, "prodHost": PROD_HOST, "stageHost": STAGE_HOST, "ingressClass": INGRESS_CLASS,
                       "helmTimeoutSeconds": "120", "blue.enabled": "true", "blue.image": V1, "blue.replicas": "2",
                       "green.enabled": "false", "green.replicas": "2", "registry.server": "registry.example.com:5000",
                       "registry.username": "ci", "stageAccess": "restricted",
                       "stageAuth.username": STAGE_USER}.items():
        run.config(key, value)
    for key in ("secrets.DB_PASSWORD", "blue.secrets.API_TOKEN", "registry.password", "stageAuth.password"):
        run.config(key, VALUES[key], secret=True)
    run.up()
    in_the_pods(run, "blue", {"DB_PASSWORD": "secrets.DB_PASSWORD", "API_TOKEN": "blue.secrets.API_TOKEN"})
    in_its_secret(run, "web-registry", ["registry.password"])
    in_its_secret(run, "web-stage-auth", ["stageAuth.password"])
    wait_until("prod answers", lambda: fetch(run.ingress, PROD_HOST) == (200, "blue", version_of(V1)))
    # The stage password is the one in use: Traefik lets it through, and refuses another.
    assert request(run.ingress, STAGE_HOST, (STAGE_USER, VALUES["stageAuth.password"]))[0] == 503  # no stage pods yet
    assert request(run.ingress, STAGE_HOST, (STAGE_USER, "wrong-password"))[0] == 401


# The promote's check reaches the stage through its basic auth, with the password in the environment.
CHECK = ('curl -fsS -o /dev/null -u "tester:$STAGE_PASSWORD" -H "Host: $(echo "$BLUEGREEN_URL" | cut -d/ -f3)" '
         '"$BLUEGREEN_INGRESS/healthz"')


def test_a_release_with_the_tool(run):
    run.config("green.secrets.API_TOKEN", VALUES["green.secrets.API_TOKEN"], secret=True)
    run.tool("status")  # a secret set but not deployed yet: a pending change
    assert run.tool("deploy", V2)["slot"] == "green"
    in_the_pods(run, "green", {"DB_PASSWORD": "secrets.DB_PASSWORD", "API_TOKEN": "green.secrets.API_TOKEN"})
    in_its_secret(run, "web-green-secrets", ["secrets.DB_PASSWORD", "green.secrets.API_TOKEN"])
    in_its_secret(run, "web-blue-secrets", ["secrets.DB_PASSWORD", "blue.secrets.API_TOKEN"])
    promoted = run.tool("promote", "--check-cmd", CHECK, extra_env={"STAGE_PASSWORD": VALUES["stageAuth.password"]})
    assert promoted["state"]["productionSlot"] == "green"
    assert run.tool("rollback")["state"]["productionSlot"] == "blue"
    assert run.tool("retire")["slot"] == "green"
    run.tool("status")
    run.outputs.append(("pulumi stack output --json (file backend)", run.pulumi("stack", "output", "--json")))


def test_a_release_with_plain_pulumi_with_the_state_in_s3(run):
    # The stack moves to the S3 backend: its state as exported (secrets stay encrypted), same config.
    deployment = run.stack.export_stack()
    run.use_s3()
    run.stack = auto.create_stack(STACK, work_dir=str(run.project_dir),
                                  opts=auto.LocalWorkspaceOptions(env_vars=run.env))
    run.stack.import_stack(deployment)
    assert run.tool("status")["state"]["drift"] == []
    # Green again, with its secret rotated; reviewed, promoted, blue retired.
    run.config("green.enabled", "true")
    run.config("green.image", V3)
    run.config("green.secrets.API_TOKEN", VALUES["green.secrets.API_TOKEN (rotated)"], secret=True)
    run.up()
    in_the_pods(run, "green", {"DB_PASSWORD": "secrets.DB_PASSWORD", "API_TOKEN": "green.secrets.API_TOKEN (rotated)"})
    run.config("productionSlot", "green")
    run.pulumi("preview", "--diff", event_log=True)
    run.up()
    run.config("blue.enabled", "false")
    run.up()
    wait_until("prod answers from green", lambda: fetch(run.ingress, PROD_HOST) == (200, "green", version_of(V3)))
    in_its_secret(run, "web-green-secrets", ["secrets.DB_PASSWORD", "green.secrets.API_TOKEN (rotated)"])
    in_its_secret(run, "web-registry", ["registry.password"])
    in_its_secret(run, "web-stage-auth", ["stageAuth.password"])
    assert run.tool("status")["state"]["drift"] == []
    for args in (("stack", "output", "--json"), ("stack", "history", "--json"), ("config", "--json")):
        run.outputs.append((f"pulumi {' '.join(args)}", run.pulumi(*args)))


# Resources of the app's namespace that are not Secrets, read through the API.
OTHER_OBJECTS = ["/api/v1/namespaces/{ns}/pods", "/api/v1/namespaces/{ns}/configmaps", "/api/v1/namespaces/{ns}/events",
                 "/api/v1/namespaces/{ns}/services", "/api/v1/namespaces/{ns}/endpoints",
                 "/api/v1/namespaces/{ns}/serviceaccounts", "/apis/apps/v1/namespaces/{ns}/deployments",
                 "/apis/apps/v1/namespaces/{ns}/replicasets", "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
                 "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
                 "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
                 "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                 "/apis/traefik.io/v1alpha1/namespaces/{ns}/middlewares"]
ALLOWED = ("the Kubernetes Secrets the stack made", "the pods' secret files and environment")


def test_no_secret_value_is_anywhere_but_its_secret_and_the_pods(run, tmp_path_factory):
    kube, scan = run.kube, run.scan
    # The Pulumi state, both backends, every file.
    scan.add_tree("the Pulumi state (file backend)", run.file_backend)
    scan.add_tree("the Pulumi state (S3 bucket, versitygw)", run.s3.data)
    # Helm's release records, decoded.
    assert len(run.helm_records) >= 8, sorted(run.helm_records)
    for name, record in sorted(run.helm_records.items()):
        scan.add("Helm's release records (decoded)", name, record)
    # The rendered chart values: the Release in the state, and Helm's view of it.
    state = run.stack.export_stack().deployment
    for resource in state["resources"]:
        if resource["type"] == "kubernetes:helm.sh/v3:Release":
            scan.add_json("the Release's values in the Pulumi state", "inputs", resource.get("inputs"))
            scan.add_json("the Release's values in the Pulumi state", "outputs", resource.get("outputs"))
    for args in (("get", "values", "--all", "-o", "json"), ("get", "manifest"), ("get", "notes")):
        done = subprocess.run(["helm", *args, "web", "-n", NS], capture_output=True, text=True, env=run.env)
        assert done.returncode == 0, done.stderr
        scan.add("helm get values --all / manifest / notes", " ".join(args), done.stdout)
    # Every command's output, and the tool's.
    for place, text in run.outputs:
        scan.add(place, place, text)
    scan.add_tree("pulumi's event logs (--event-log)", run.root, skip=[run.tmp, run.file_backend, run.s3.data,
                                                                        run.root / "versitygw.log"])
    # The logs pulumi, its plugins and helm write, and anything else the commands put in TMPDIR.
    scan.add_tree("the commands' temp directory (pulumi, plugin and helm logs)", run.tmp)
    pulumi_home = Path(run.env.get("PULUMI_HOME") or Path.home() / ".pulumi")
    scan.add_tree("PULUMI_HOME, files changed during the test", pulumi_home, newer_than=run.started)
    scan.add("the stack config file", f"Pulumi.{STACK}.yaml", (run.project_dir / f"Pulumi.{STACK}.yaml").read_bytes())
    # Every other object of the namespace; Secrets that are neither the stack's nor Helm's.
    for path in OTHER_OBJECTS:
        listed = kube.get(path.format(ns=NS)) or {}
        scan.add_json("the namespace's other objects (API)", path.format(ns=NS), listed.get("items", []))
    for secret in kube.get(f"/api/v1/namespaces/{NS}/secrets")["items"]:
        name = secret["metadata"]["name"]
        if not (name.startswith(("web-blue-secrets-", "web-green-secrets-", "sh.helm.release.v1."))
                or name in ("web-registry", "web-stage-auth")):
            scan.add_json("the namespace's other objects (API)", f"Secret {name}", secret)
    # The tests' temporary files (but for the places above) and the checkout's .state/, but for etcd's
    # data: where the API server keeps every object, the Secrets among them.
    scan.add_tree("the tests' temporary directories", tmp_path_factory.getbasetemp(), skip=[run.root])
    state_dir = REPO_ROOT / ".state"
    etcd_data = state_dir / "cluster" / "clusters" / "bluegreen" / "etcd"
    scan.add_tree(".state/ (cluster, node and Traefik logs and configs; not etcd's data)", state_dir,
                  skip=[etcd_data])

    summary = scan.summary()
    print("\nsecret scan: " + f"{len(VALUES)} values and {len(DIGESTS)} digests, each in plain text, base64 "
          "(any alignment) and through base64/gzip layers\n" + "\n".join(summary))
    e2e.SECTIONS["secret scan: places searched, bytes, hits per place"] = summary
    misplaced = [h for h in scan.hits() if h.place not in ALLOWED]
    assert not misplaced, "secret values found where they must not be:\n" + "\n".join(
        f"- {h.secret} in {h.place}: {h.item} ({h.form})" for h in misplaced)
    # Each value was found where it belongs, so the scan can find it (digests belong nowhere).
    assert {key for key in VALUES if key in FOUND.get(key, set())} == set(VALUES), FOUND
    assert all(not [h for h in scan.hits(place) if h.secret in DIGESTS] for place in ALLOWED)
