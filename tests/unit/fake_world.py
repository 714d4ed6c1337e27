"""A stack and a cluster in memory, for the release tool's orchestration tests.

FakeStack stands in for StackSession: stack config with `pulumi config set --path` semantics, and
`up(changes)`, which renders the config with the step's changes the way the chart does
(values.chart_values) into FakeCluster and, once it succeeded, records the changes in the config:
a Deployment per enabled slot with Ready pods, the prod and stage Services and their endpoints,
and a Helm release record. FakeCluster answers the KubeClient calls the tool makes. Failures are
injected by the tests (`up_fails`, `up_cut_off`, `locked_by`, `after_up`).
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
from typing import Any

from bluegreen.config import parse
from bluegreen.contract import RELEASE_TYPE, SLOTS
from bluegreen.release import steps
from bluegreen.release.kube import Endpoints
from bluegreen.release.locks import held_by, pulumi_lock_error
from bluegreen.release.stacks import Change, Run
from bluegreen.values import chart_values

V1, V2, V3 = "registry.example.com/shop/web:1.0.0", "registry.example.com/shop/web:2.0.0", \
    "registry.example.com/shop/web:3.0.0"
CONFIG = {"namespace": "shop", "prodHost": "shop.example.com", "stageHost": "stage.shop.example.com",
          "productionSlot": "blue", "blue": {"enabled": True, "image": V1, "replicas": 2},
          "green": {"enabled": False, "image": "", "replicas": 2}}


class FakeCluster:
    def __init__(self):
        self.namespaces: set[str] = set()
        self.deployments: dict[str, dict] = {}  # name -> Deployment
        self.services: dict[str, dict] = {}  # name -> Service
        self.pod_ips: dict[str, list[str]] = {}  # Deployment name -> ready pod IPs
        self.records: list[dict] = []  # Helm records, oldest first
        self._next_ip = 10

    # --- what `helm upgrade` does with chart values ---------------------------------------------
    def apply(self, namespace: str, app: str, values: dict[str, Any], status: str = "deployed") -> None:
        """An upgrade to `values`; `status` pending-upgrade: one the API server's outage cut off after
        it applied the objects, its record left pending."""
        self.namespaces.add(namespace)
        for slot in SLOTS:
            name, spec = f"{app}-{slot}", values[slot]
            if not spec["enabled"]:
                self.deployments.pop(name, None)
                self.pod_ips.pop(name, None)
                continue
            old = self.deployments.get(name)
            if not old or _image(old) != spec["image"] or len(self.pod_ips[name]) != spec["replicas"]:
                self.pod_ips[name] = [self._ip() for _ in range(spec["replicas"])]
            self.deployments[name] = _deployment(app, slot, spec["image"], spec["replicas"])
        prod = values["productionSlot"]
        for role, slot in (("prod", prod), ("stage", "green" if prod == "blue" else "blue")):
            self.services[f"{app}-{role}"] = {"metadata": {"name": f"{app}-{role}"},
                                              "spec": {"selector": {"app.kubernetes.io/name": app, "slot": slot}}}
        if status == "deployed":
            for record in self.records:
                record["status"] = "superseded"
        revision = self.records[-1]["revision"] + 1 if self.records else 1
        self.records.append({"name": f"sh.helm.release.v1.{app}.v{revision}",
                             "revision": revision, "status": status, "values": copy.deepcopy(values)})

    def pending(self) -> bool:
        return bool(self.records) and self.records[-1]["status"].startswith("pending-")

    def rollback(self, app: str, revision: int, namespace: str, timeout_seconds: int) -> None:
        """`helm rollback`: a new revision with that revision's values."""
        (record,) = [r for r in self.records if r["revision"] == revision]
        self.apply(namespace, app, copy.deepcopy(record["values"]))

    def _ip(self) -> str:
        self._next_ip += 1
        return f"10.244.0.{self._next_ip}"

    # --- KubeClient ----------------------------------------------------------------------------
    unready = 0  # how many more /readyz answers say the API server is not ready
    readyz_asked = 0

    def not_ready(self):
        self.readyz_asked += 1
        if self.unready:
            self.unready -= 1
            return "GET /readyz: cannot reach https://127.0.0.1:6443: Connection refused"
        return None

    def delete_secret(self, namespace, name):
        self.records = [r for r in self.records if r["name"] != name]

    def request(self, method, path, query=None):
        assert method == "DELETE" and "/deployments/" in path, (method, path)
        name = path.rsplit("/", 1)[1]
        self.deployments.pop(name, None)
        self.pod_ips.pop(name, None)
        return {}

    def namespace(self, name):
        return {"metadata": {"name": name}} if name in self.namespaces else None

    def deployment(self, namespace, name):
        return copy.deepcopy(self.deployments.get(name))

    def service(self, namespace, name):
        return copy.deepcopy(self.services.get(name))

    def pods(self, namespace, selector):
        name = f"{selector['app.kubernetes.io/instance']}-{selector['slot']}"
        return [{"metadata": {"name": f"{name}-{i}"},
                 "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}}
                for i, ip in enumerate(self.pod_ips.get(name, []))]

    def endpoints(self, namespace, service):
        found = self.services.get(service)
        if not found:
            return Endpoints([], [])
        selector = found["spec"]["selector"]
        return Endpoints(sorted(self.pod_ips.get(f"{selector['app.kubernetes.io/name']}-{selector['slot']}", [])), [])

    def helm_releases(self, namespace, release):
        return [{k: r[k] for k in ("name", "revision", "status")} for r in reversed(self.records)]

    def get(self, path, **query):
        name = path.rsplit("/", 1)[1]
        record = next((r for r in self.records if r["name"] == name), None)
        if record is None:
            return None
        payload = base64.b64encode(gzip.compress(json.dumps({"config": record["values"],
                                                             "manifest": fake_manifest(record["values"])}).encode()))
        return {"data": {"release": base64.b64encode(payload).decode()}}


class FakeStack:
    """StackSession's surface, over a config dict and a FakeCluster."""

    def __init__(self, cluster: FakeCluster, config: dict | None = None, name: str = "dev"):
        self.cluster, self.name, self.project_dir, self.app = cluster, name, "/nonexistent/project", None
        self.config = copy.deepcopy(config or CONFIG)
        self.deployed: dict | None = None  # the Release's values in the state
        self.updates: list[dict] = []  # the config of each successful up
        self.messages: list[str] = []  # the message of each successful up
        self.recorded: list[dict] = []  # the changes written into the stack config, in order
        self.up_fails: str | None = None  # the error of the next up
        # The next up's Helm upgrade is cut off by an API server outage after it applied the objects
        # (its record left pending-upgrade, the API server down for this many /readyz answers).
        self.up_cut_off: int | None = None
        self.locked_by: str | None = None  # Pulumi's lock error text, for every up/refresh
        self.after_up = None  # called after each successful up (to break the cluster)
        self.extra_preview_change: Change | None = None
        self.backend_locks: list[dict] | None = []  # Pulumi's locks in the state backend; None: unreadable

    def check_unlocked(self):
        if self.backend_locks:
            raise held_by(self.backend_locks, self.name)

    def locks(self):
        return self.backend_locks

    def raw_config(self):
        return copy.deepcopy(self.config)

    def record(self, changes):
        if not changes:
            return
        self.recorded.append(dict(changes))
        self.config = steps.apply_changes(self.config, changes)

    def preview(self, changes=None) -> Run:
        values = chart_values(parse(steps.apply_changes(self.config, changes or {})))
        changed = sorted(f"values.{k}" for k in values if self.deployed is None or values[k] != self.deployed[k])
        changes_seen = [Change("urn:release", RELEASE_TYPE, "update" if changed else "same", changed)]
        if self.extra_preview_change:
            changes_seen.append(self.extra_preview_change)
        return Run(True, 0.1, changes_seen, "preview output")

    def up(self, changes=None, message="", record=True) -> Run:
        if self.locked_by:
            raise pulumi_lock_error(self.locked_by, self.name)
        if self.up_fails:
            error, self.up_fails = self.up_fails, None
            return Run(False, 0.1, [], "", error)
        config = steps.apply_changes(self.config, changes or {})
        settings = parse(config)
        if self.cluster.pending():  # what Helm answers while a revision is pending
            return Run(False, 0.1, [], "", "error: another operation (install/upgrade/rollback) is in progress")
        if self.up_cut_off is not None:
            self.cluster.apply(settings.namespace, settings.app_name, chart_values(settings), "pending-upgrade")
            self.cluster.unready, self.up_cut_off = self.up_cut_off, None
            return Run(False, 0.1, [], "", "error: Kubernetes cluster unreachable: connection refused")
        self.deployed = chart_values(settings)
        self.cluster.apply(settings.namespace, settings.app_name, self.deployed)
        self.updates.append(copy.deepcopy(config))
        self.messages.append(message)
        if record:
            self.record(changes or {})
        if self.after_up:
            self.after_up(self)
        return Run(True, 0.1, [], "up output")

    def refresh(self) -> Run:
        if self.locked_by:
            raise pulumi_lock_error(self.locked_by, self.name)
        return Run(True, 0.1, [], "")

    def cancel(self):
        pass

    def clear_pending_operations(self):
        return 0

    def deployed_values(self, app_name):
        return copy.deepcopy(self.deployed)

    def outputs(self, app_name):
        if self.deployed is None:
            return {}
        prod = self.deployed["productionSlot"]
        return {"productionSlot": prod, "revision": len(self.cluster.records), "status": "deployed",
                "prodUrl": "http://shop.example.com/", "stageUrl": "http://stage.shop.example.com/"}

    def history(self, limit=5):
        return [{"kind": "update", "result": "succeeded", "started": "", "productionSlot": u["productionSlot"],
                 "message": m} for u, m in reversed(list(zip(self.updates, self.messages, strict=True)))][:limit]


def _deployment(app, slot, image, replicas):
    return {"metadata": {"name": f"{app}-{slot}", "generation": 1,
                         "labels": {"app.kubernetes.io/instance": app, "slot": slot}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"image": image}]}}},
            "status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas,
                       "availableReplicas": replicas, "updatedReplicas": replicas}}


def _image(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def fake_manifest(values: dict[str, Any], probe_path: str = "/healthz") -> str:
    """What the chart renders for `values`, reduced to what the release tool compares: the two
    Services' selectors and each enabled slot's Deployment (helm.template in the unit tier)."""
    app, prod = values["nameOverride"], values["productionSlot"]
    objects = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{app}-{role}"},
                "spec": {"selector": {"app.kubernetes.io/name": app, "slot": slot}}}
               for role, slot in (("prod", prod), ("stage", "green" if prod == "blue" else "blue"))]
    objects += [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"{app}-{slot}"},
                 "spec": {"replicas": values[slot]["replicas"], "template": {"spec": {"containers": [
                     {"name": "app", "image": values[slot]["image"],
                      "readinessProbe": {"httpGet": {"path": probe_path}}}]}}}}
                for slot in SLOTS if values[slot]["enabled"]]
    return "\n---\n".join(json.dumps(o) for o in objects)


def install(monkeypatch, stack: FakeStack, tmp_dir) -> FakeStack:
    """Point the release tool at this stack and its cluster, with its journal and locks in
    `tmp_dir` and the chart rendered by fake_manifest (the `world` fixture, and the generated tests)."""
    from bluegreen.release import helm, session

    monkeypatch.setattr(session, "StackSession", lambda name, project_dir=None, app=None: stack)
    monkeypatch.setattr(session, "KubeClient", lambda kubeconfig=None: stack.cluster)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_dir))
    monkeypatch.setattr(helm, "template", lambda chart, release, namespace, values, kube_version=None:
                        fake_manifest(values))
    monkeypatch.setattr(helm, "rollback", stack.cluster.rollback)
    return stack
