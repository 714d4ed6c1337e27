"""The peer: Argo Rollouts, run by the bench the way a platform team runs it, on the same cluster.

`Controller` installs Argo's CRDs (from the tool's cache dir, scripts/toolchain.sh argo-rollouts)
and runs its controller as a host process on the local cluster's kubeconfig for the length of the
bench, sampling its resident memory and CPU time, then stops it and removes the CRDs again.

`rollout_manifests` turns the chart's own render into a blue-green Rollout: the same pod template
(image, probes, drain, grace period), replicas, prod and stage Services and Ingress hosts; only
the `slot` label goes, as Argo selects by its own pod-template hash. `activeService` is prod,
`previewService` is stage, `autoPromotionEnabled: false` (a person promotes, as in our flow), and
`scaleDownDelaySeconds` keeps the old ReplicaSet up for the whole bench, as our idle slot is.

Promotion and rollback go through Argo's API with its own kubectl plugin, as its users do:
`kubectl-argo-rollouts promote`, `undo`, `set image`.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from bluegreen.release.kube import KubeClient

NAMESPACE = "bg-bench-argo"
CONTROLLER_NAMESPACE = "argo-rollouts"  # where the controller keeps its config map and events
NAME = "web"
REVISION = "bench.bluegreen.dev/revision"
KEEP_OLD_SECONDS = 3600  # scaleDownDelaySeconds: the old version stays up, like our idle slot


def tool_dir(repo: str) -> str:
    return subprocess.run([os.path.join(repo, "scripts", "toolchain.sh"), "--print-dir", "argo-rollouts"],
                          capture_output=True, text=True, check=True).stdout.strip()


@dataclass
class Controller:
    """rollouts-controller on this host for the `with` block; `usage(since, until)` is its CPU and
    peak resident memory over a window, from /proc samples every 0.25 s."""

    repo: str
    kubeconfig: str
    log_path: str
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (time, cpu seconds, rss bytes)

    def __enter__(self) -> Controller:
        crds = os.path.join(tool_dir(self.repo), "crds")
        # Each CRD is over the 256 KB a client-side apply keeps in its annotation.
        kubectl(self.kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", crds)
        kubectl(self.kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
        kubectl(self.kubeconfig, "create", "namespace", CONTROLLER_NAMESPACE, ok_if="AlreadyExists")
        metrics, healthz = _free_port(), _free_port()
        self._log = open(self.log_path, "w")
        # Both ports bind every interface (the controller has no flag to choose one); nothing of
        # ours connects to them but the health check on 127.0.0.1.
        self._process = subprocess.Popen(
            ["rollouts-controller", "--kubeconfig", self.kubeconfig, "--leader-elect=false",
             "--metricsPort", str(metrics), "--healthzPort", str(healthz), "--loglevel", "info"],
            env={**os.environ, "POD_NAMESPACE": CONTROLLER_NAMESPACE}, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not _answers(healthz):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"rollouts-controller did not become healthy (log: {self.log_path})")
            time.sleep(0.25)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if getattr(self, "_sampler", None):
            self._stop.set()
            self._sampler.join()
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()

    def remove_crds(self) -> None:
        kubectl(self.kubeconfig, "delete", "--ignore-not-found", "--wait=true", "-f",
                 os.path.join(tool_dir(self.repo), "crds"))
        kubectl(self.kubeconfig, "delete", "namespace", CONTROLLER_NAMESPACE, "--ignore-not-found", "--wait=false")

    def _sample(self) -> None:
        ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
        while not self._stop.wait(0.25):
            try:
                with open(f"/proc/{self._process.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                return
            # utime, stime (fields 14, 15) and rss in pages (24), counted from after the name.
            cpu = (int(fields[11]) + int(fields[12])) / ticks
            self.samples.append((time.time(), cpu, int(fields[21]) * page))

    def usage(self, since: float, until: float) -> dict:
        window = [s for s in self.samples if since <= s[0] <= until]
        if len(window) < 2:
            return {"cpu_percent": None, "rss_mb_max": None}
        (t0, cpu0, _), (t1, cpu1, _) = window[0], window[-1]
        return {"cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
                "rss_mb_max": round(max(s[2] for s in window) / 2**20, 1)}


def rollout_manifests(rendered: list[dict], images: tuple[str, ...]) -> list[dict]:
    """The chart's render (one slot deployed, prod on it) as Argo objects: the Deployment as a
    Rollout, the two Services without the slot selector, the routes and the NetworkPolicy as they
    are. Left out: the per-slot PodDisruptionBudget (it selects a slot) and the `helm test` pod.
    `images[0]` is deployed first."""
    by_kind: dict[str, list[dict]] = {}
    for doc in rendered:
        by_kind.setdefault(doc["kind"], []).append(doc)
    (deployment,) = by_kind["Deployment"]
    template = deployment["spec"]["template"]
    template["metadata"]["labels"].pop("slot")
    # A revision annotation, so that each release is a new pod template (argo_features).
    template["metadata"].setdefault("annotations", {})[REVISION] = "0"
    template["metadata"]["labels"].pop("app.kubernetes.io/version", None)
    (container,) = [c for c in template["spec"]["containers"] if c["image"] in images]
    container["image"] = images[0]
    for variable in container.get("env", []):
        if variable["name"] == "BLUEGREEN_SLOT":
            variable["value"] = "argo"
    selector = dict(deployment["spec"]["selector"]["matchLabels"])
    selector.pop("slot")
    services = {s["metadata"]["labels"]["bluegreen.dev/role"]: s for s in by_kind["Service"]}
    for service in services.values():
        service["spec"]["selector"].pop("slot")
    rollout = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": NAME, "labels": template["metadata"]["labels"]},
        "spec": {
            "replicas": deployment["spec"]["replicas"],
            "revisionHistoryLimit": 4,
            "selector": {"matchLabels": selector},
            "template": template,
            "strategy": {"blueGreen": {
                "activeService": services["prod"]["metadata"]["name"],
                "previewService": services["stage"]["metadata"]["name"],
                "autoPromotionEnabled": False,
                "scaleDownDelaySeconds": KEEP_OLD_SECONDS,
                "scaleDownDelayRevisionLimit": 1,  # one old version kept up: our two slots
            }},
        },
    }
    kept = [doc for kind, docs in by_kind.items() if kind not in ("Deployment", "Service", "PodDisruptionBudget", "Pod")
            for doc in docs]
    return [*services.values(), *kept, rollout]


def container_name(manifests: list[dict]) -> str:
    rollout = next(m for m in manifests if m["kind"] == "Rollout")
    return rollout["spec"]["template"]["spec"]["containers"][0]["name"]


def apply(kubeconfig: str, manifests: list[dict]) -> None:
    kubectl(kubeconfig, "create", "namespace", NAMESPACE, ok_if="AlreadyExists")
    kubectl(kubeconfig, "apply", "-n", NAMESPACE, "-f", "-", stdin=yaml.safe_dump_all(manifests))


def plugin(*args: str) -> list[str]:
    """A kubectl-argo-rollouts command on the bench's Rollout (KUBECONFIG from the environment)."""
    return ["kubectl-argo-rollouts", "-n", NAMESPACE, *args]


def run_plugin(kubeconfig: str, *args: str) -> None:
    done = subprocess.run(["kubectl-argo-rollouts", "--kubeconfig", kubeconfig, "-n", NAMESPACE, *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl argo rollouts {' '.join(args)} failed: {done.stderr.strip()[-1000:]}")


def status(kube: KubeClient) -> dict:
    rollout = kube.get(f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/rollouts/{NAME}") or {}
    return rollout.get("status", {})


def in_phase(kube: KubeClient, wanted: str) -> bool:
    """The Rollout is `Healthy` (all on one version), or `Paused` with a new version up behind the
    preview Service, waiting for a promotion."""
    now = status(kube)
    return now.get("phase") == wanted and (wanted != "Paused" or now.get("currentPodHash") != now.get("stableRS"))


def wait_until(kube: KubeClient, what: str, predicate: Callable[[], Any], timeout: float = 180) -> float:
    """Seconds until `predicate()` is true; an error with the Rollout's status after `timeout`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"Argo Rollouts: no {what} after {timeout:.0f} s; rollout status: "
                               f"{json.dumps(status(kube))[:800]}")
        time.sleep(0.1)
    return round(time.monotonic() - started, 2)


def wait_for(kube: KubeClient, wanted: str, timeout: float = 120) -> float:
    return wait_until(kube, wanted, lambda: in_phase(kube, wanted), timeout)


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None, ok_if: str = "") -> None:
    done = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], input=stdin, capture_output=True,
                          text=True)
    if done.returncode != 0 and not (ok_if and ok_if in done.stderr):
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()[-1000:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
