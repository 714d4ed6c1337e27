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
import contextlib
import copy
import datetime
import gzip
import hashlib
import json
from typing import Any

from bluegreen.config import parse
from bluegreen.contract import RELEASE_TYPE, SLOTS
from bluegreen.release import steps
from bluegreen.release.kube import Endpoints
from bluegreen.release.locks import held_by, pulumi_lock_error
from bluegreen.release.stacks import Ahead, Change, Gate, NoSuchStack, Run
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
        self.unready_pods: set[str] = set()  # pod names whose Ready condition is False (not in the endpoints)
        self.image_ids: dict[str, str] = {}  # pod name -> the imageID its node reports, instead of image_id()
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
        mine = [record for record in self.records if record["app"] == app]
        if status == "deployed":
            for record in mine:
                record["status"] = "superseded"
        revision = mine[-1]["revision"] + 1 if mine else 1
        self.records.append({"name": f"sh.helm.release.v1.{app}.v{revision}", "app": app,
                             "revision": revision, "status": status, "values": copy.deepcopy(values)})

    def pending(self) -> bool:
        return bool(self.records) and self.records[-1]["status"].startswith("pending-")

    def rollback(self, app: str, revision: int, namespace: str, timeout_seconds: int) -> None:
        """`helm rollback`: a new revision with that revision's values."""
        (record,) = [r for r in self.records if r["app"] == app and r["revision"] == revision]
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
        image = _image(self.deployments[name]) if name in self.deployments else ""
        pods = []
        for i, ip in enumerate(self.pod_ips.get(name, [])):
            pod = f"{name}-{i}"
            ready = "False" if pod in self.unready_pods else "True"
            pods.append({"metadata": {"name": pod},
                         "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": ready}],
                                    "containerStatuses": [{"name": "app", "image": image, "ready": ready == "True",
                                                           "imageID": self.image_ids.get(pod, image_id(image))}]}})
        return pods

    def endpoints(self, namespace, service):
        found = self.services.get(service)
        if not found:
            return Endpoints([], [])
        selector = found["spec"]["selector"]
        name = f"{selector['app.kubernetes.io/name']}-{selector['slot']}"
        return Endpoints(sorted(ip for i, ip in enumerate(self.pod_ips.get(name, []))
                                if f"{name}-{i}" not in self.unready_pods), [])

    def helm_releases(self, namespace, release):
        return [{k: r[k] for k in ("name", "revision", "status")}
                for r in reversed(self.records) if r["app"] == release]

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
        self.times: list[datetime.datetime] = []  # when each successful up started
        self.stacks: list[str] = [name]  # the project's stacks (`pulumi stack ls`)
        self.recorded: list[dict] = []  # the changes written into the stack config, in order
        self.up_fails: str | None = None  # the error of the next up
        # The next up's Helm upgrade is cut off by an API server outage after it applied the objects
        # (its record left pending-upgrade, the API server down for this many /readyz answers).
        self.up_cut_off: int | None = None
        self.locked_by: str | None = None  # Pulumi's lock error text, for every up/refresh
        self.after_up = None  # called after each successful up (to break the cluster)
        self.extra_preview_change: Change | None = None
        self.backend_locks: list[dict] | None = []  # Pulumi's locks in the state backend; None: unreadable
        self.refused_ahead: list[str] = []  # the messages of updates started ahead and refused
        self.history_ahead: list[bool] = []  # per StackSession opened: were the last updates read ahead
        self.reads_again = 0  # the state read anew, after another command let go of the stack (read_again)
        # The component's productionSlot output, when an update was cut off between the Release's
        # step and the component's outputs (cleared by the next up).
        self.stale_output: str | None = None

    def check_unlocked(self):
        if self.backend_locks:
            raise held_by(self.backend_locks, self.name)

    def locks(self):
        return self.backend_locks

    def read_again(self):
        self.reads_again += 1

    def raw_config(self):
        return copy.deepcopy(self.config)

    def keys_of(self, app):
        return self.raw_config() if app is None else {}

    def app_config(self, app):
        found = self.keys_of(app)
        if not found:
            raise NoSuchStack(f"stack {self.name!r} has no config for app {app!r} (no {app}:* keys); its apps: "
                              f"{', '.join(self.apps()) or 'none deployed yet'}. Choose one with --app NAME")
        return found

    def apps(self):
        return ["web"] if self.deployed else []

    def session_for(self, app, history=False):
        """The stack as StackSession(..., app, history) sees it."""
        self.history_ahead.append(history)
        return self

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
        self.stale_output = None
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
        self.times.append(datetime.datetime.now(datetime.UTC))
        if record:
            self.record(changes or {})
        if self.after_up:
            self.after_up(self)
        return Run(True, 0.1, [], "up output")

    @contextlib.contextmanager
    def update_ahead(self, changes=None, message="", record=True):
        """StackSession.update_ahead: the update runs at go(); a block left without it is refused."""
        ahead = Ahead(lambda: self.up(changes, message, record), Gate())
        try:
            yield ahead
        finally:
            if not ahead.gate.decided:
                ahead.gate.refuse("the command stopped before its update")
                self.refused_ahead.append(message)

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
        prod = self.stale_output or self.deployed["productionSlot"]
        return {"productionSlot": prod, "revision": len(self.cluster.records), "status": "deployed",
                "prodUrl": "http://shop.example.com/", "stageUrl": "http://stage.shop.example.com/"}

    def history(self, limit=5, app=None):
        return [{"kind": "update", "result": "succeeded", "started": str(t), "productionSlot": u["productionSlot"],
                 "message": m}
                for u, m, t in reversed(list(zip(self.updates, self.messages, self.times, strict=True)))][:limit]

    def stack_names(self):
        return sorted(self.stacks)


def image_id(image: str) -> str:
    """The imageID a node reports for pods of `image`: its repository and a registry digest (the
    reference's own digest, else one made from the reference)."""
    if not image:
        return ""
    name, _, digest = image.partition("@")
    repository = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    return f"{repository}@{digest or 'sha256:' + hashlib.sha256(name.encode()).hexdigest()}"


class Clusters:
    """One cluster holding several stacks' namespaces: the KubeClient calls, each answered by the
    FakeCluster of the namespace it names."""

    def __init__(self, by_namespace: dict[str, FakeCluster]):
        self.by_namespace = by_namespace

    def namespace(self, name):
        found = self.by_namespace.get(name)
        return found.namespace(name) if found else None

    def deployment(self, namespace, name):
        return self.by_namespace[namespace].deployment(namespace, name)

    def service(self, namespace, name):
        return self.by_namespace[namespace].service(namespace, name)

    def pods(self, namespace, selector):
        return self.by_namespace[namespace].pods(namespace, selector)

    def endpoints(self, namespace, service):
        return self.by_namespace[namespace].endpoints(namespace, service)

    def helm_releases(self, namespace, release):
        return self.by_namespace[namespace].helm_releases(namespace, release)

    def get(self, path, **query):
        namespace = path.split("/namespaces/", 1)[1].split("/", 1)[0]
        return self.by_namespace[namespace].get(path, **query)


class FakeApps(FakeStack):
    """A stack of several apps (a program with one BlueGreenApp per app), each app's config in the
    namespace named like it (api:productionSlot): `configs` app -> its config, `deployed` app -> its
    Release's values. An update's changes are paths of the session's app (--app) or keys of any
    app's namespace ("web:productionSlot"), as StackSession takes them."""

    def __init__(self, cluster: FakeCluster, configs: dict[str, dict], name: str = "dev"):
        super().__init__(cluster, name=name)
        self.configs = copy.deepcopy(configs)
        self.deployed_apps: dict[str, dict] = {}
        self.app: str | None = None

    def session_for(self, app, history=False):
        self.app = app
        return super().session_for(app, history)

    def keys_of(self, app):
        return {"appName": app, **copy.deepcopy(self.configs[app])} if app in self.configs else {}

    def raw_config(self):
        return self.keys_of(self.app)

    def apps(self):
        return sorted(self.deployed_apps)

    def _by_app(self, changes) -> dict[str, dict]:
        split: dict[str, dict] = {}
        for key, value in (changes or {}).items():
            app, _, path = key.partition(":") if ":" in key.split(".")[0] else (self.app, "", key)
            split.setdefault(app, {})[path] = value
        return split

    def _configs_with(self, changes) -> dict[str, dict]:
        split = self._by_app(changes)
        return {app: steps.apply_changes(self.keys_of(app), split.get(app, {})) for app in self.configs}

    def record(self, changes):
        if not changes:
            return
        self.recorded.append(dict(changes))
        for app, edits in self._by_app(changes).items():
            self.configs[app] = steps.apply_changes(self.configs[app], edits)

    def preview(self, changes=None) -> Run:
        seen = []
        for app, config in self._configs_with(changes).items():
            values, deployed = chart_values(parse(config)), self.deployed_apps.get(app)
            changed = sorted(f"values.{k}" for k in values if deployed is None or values[k] != deployed[k])
            seen.append(Change(f"urn:release:{app}", RELEASE_TYPE, "update" if changed else "same", changed))
        return Run(True, 0.1, seen + ([self.extra_preview_change] if self.extra_preview_change else []), "preview")

    def up(self, changes=None, message="", record=True) -> Run:
        if self.up_fails:
            error, self.up_fails = self.up_fails, None
            return Run(False, 0.1, [], "", error)
        configs = self._configs_with(changes)
        for app, config in configs.items():
            settings = parse(config)
            self.deployed_apps[app] = chart_values(settings)
            self.cluster.apply(settings.namespace, settings.app_name, self.deployed_apps[app])
        self.updates.append(copy.deepcopy(configs))
        self.messages.append(message)
        if record:
            self.record(changes or {})
        if self.after_up:
            self.after_up(self)
        return Run(True, 0.1, [], "up output")

    def deployed_values(self, app_name):
        return copy.deepcopy(self.deployed_apps.get(app_name))

    def outputs(self, app_name):
        values = self.deployed_apps.get(app_name)
        return {"productionSlot": values["productionSlot"], "status": "deployed"} if values else {}

    def history(self, limit=5, app=None):
        app = app or self.app
        return [{"kind": "update", "result": "succeeded", "started": "",
                 "productionSlot": (u.get(app) or {}).get("productionSlot"), "message": m}
                for u, m in reversed(list(zip(self.updates, self.messages, strict=True)))][:limit]


def two_apps() -> dict[str, dict]:
    """Two apps in one namespace: api (api.shop.example.com) and web (shop.example.com), both on blue."""
    return {"api": {**CONFIG, "prodHost": "api.shop.example.com", "stageHost": "stage.api.shop.example.com"},
            "web": dict(CONFIG)}


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

    monkeypatch.setattr(session, "StackSession",
                        lambda name, project_dir=None, app=None, history=False: stack.session_for(app, history))
    monkeypatch.setattr(session, "KubeClient", lambda kubeconfig=None: stack.cluster)
    _install_common(monkeypatch, tmp_dir)
    monkeypatch.setattr(helm, "rollback", stack.cluster.rollback)
    return stack


def install_stacks(monkeypatch, stacks: dict[str, FakeStack], tmp_dir) -> dict[str, FakeStack]:
    """Several stacks of one project (staging, production), each in its own namespace of one
    cluster; a stack not among them does not exist, as Pulumi says."""
    from bluegreen.release import session
    from bluegreen.release.stacks import NoSuchStack

    def stack_session(name, project_dir=None, app=None, history=False):
        if name not in stacks:
            raise NoSuchStack(f"stack {name!r} does not exist in /nonexistent/project; "
                              f"create it with: pulumi stack init {name}")
        return stacks[name]

    for stack in stacks.values():
        stack.stacks = list(stacks)
    cluster = Clusters({stack.config["namespace"]: stack.cluster for stack in stacks.values()})
    monkeypatch.setattr(session, "StackSession", stack_session)
    monkeypatch.setattr(session, "KubeClient", lambda kubeconfig=None: cluster)
    _install_common(monkeypatch, tmp_dir)
    return stacks


def _install_common(monkeypatch, tmp_dir) -> None:
    from bluegreen.release import helm

    monkeypatch.setattr("tempfile.tempdir", str(tmp_dir))
    monkeypatch.setattr(helm, "template", lambda chart, release, namespace, values, kube_version=None:
                        fake_manifest(values))
