"""Argo Rollouts' blue-green options that users ask for most, tried on the running peer.

Each check sets one option on the bench's Rollout, runs a release through it with load on the prod
host (and on stage where it matters), and records what happened: which versions prod served, how
many requests failed, how long things took. Every release is a new pod template (a revision
annotation), so Argo never treats it as a rollback (its fast path without pause or analysis).
The README's features table sets these observations against what bluegreen does.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from bench import argo
from bench.flips import RATE
from bench.traffic import Traffic
from bluegreen.release.kube import KubeClient


class Peer:
    """The bench's Rollout and what the checks do to it."""

    def __init__(self, kube: KubeClient, kubeconfig: str, ingress: str, hosts: tuple[str, str],
                 versions: dict[str, str]):
        self.kube, self.kubeconfig, self.ingress = kube, kubeconfig, ingress
        self.prod_host, self.stage_host = hosts
        self.versions = versions  # image -> the version its pods answer with
        self.revision = 0

    # --- acting on the Rollout --------------------------------------------------------------------

    def set_strategy(self, **options: Any) -> None:
        """Merge `options` into spec.strategy.blueGreen (None removes one)."""
        self._patch("merge", {"spec": {"strategy": {"blueGreen": options}}})

    def deploy(self, image: str) -> None:
        """A new pod template running `image`: a new ReplicaSet behind preview."""
        self.revision += 1
        self._patch("json", [
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image},
            {"op": "add", "path": f"/spec/template/metadata/annotations/{argo.REVISION.replace('/', '~1')}",
             "value": str(self.revision)}])

    def plugin(self, *args: str) -> None:
        argo.run_plugin(self.kubeconfig, *args, argo.NAME)

    def _patch(self, kind: str, body: Any) -> None:
        argo.kubectl(self.kubeconfig, "patch", "rollout", argo.NAME, "-n", argo.NAMESPACE, "--type", kind,
                      "-p", json.dumps(body))

    # --- observing it ---------------------------------------------------------------------------

    def status(self) -> dict:
        return argo.status(self.kube)

    def wait(self, what: str, predicate: Callable[[], Any], timeout: float = 180) -> float:
        """Seconds until `predicate()` is true."""
        return argo.wait_until(self.kube, what, predicate, timeout)

    def paused(self) -> bool:
        return argo.in_phase(self.kube, "Paused")

    def healthy(self) -> bool:
        return argo.in_phase(self.kube, "Healthy")

    def replica_sets(self) -> dict[str, tuple[int, int]]:
        """pod-template hash -> (desired, ready) replicas, for this Rollout's ReplicaSets."""
        found = self.kube.get(f"/apis/apps/v1/namespaces/{argo.NAMESPACE}/replicasets") or {"items": []}
        return {rs["metadata"]["labels"].get("rollouts-pod-template-hash", "?"):
                (rs["spec"].get("replicas", 0), rs["status"].get("readyReplicas", 0)) for rs in found["items"]}

    def analysis_runs(self) -> list[dict]:
        found = self.kube.get(f"/apis/argoproj.io/v1alpha1/namespaces/{argo.NAMESPACE}/analysisruns")
        return sorted((found or {"items": []})["items"], key=lambda r: r["metadata"]["creationTimestamp"])

    def load(self, host: str) -> Traffic:
        return Traffic(self.ingress, host, rate=RATE, max_seconds=300)


def analysis_templates(test_pod: dict) -> list[dict]:
    """Two AnalysisTemplates whose Job is the chart's own `helm test` pod (it GETs the stage
    Service's health path): `stage-check` as rendered, and `stage-check-fails`, the same pod asking
    a port nothing listens on (connection refused: the check fails)."""
    spec = test_pod["spec"]
    failing = json.loads(json.dumps(spec))
    command = failing["containers"][0]["command"]
    command[-1] = re.sub(r"\$\(\w+_SERVICE_PORT\)", "1", command[-1])
    return [{
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": name},
        "spec": {"metrics": [{"name": "stage-answers", "provider": {"job": {"spec": {
            "backoffLimit": 0, "template": {"metadata": {"labels": test_pod["metadata"]["labels"]}, "spec": body}}}}}]},
    } for name, body in (("stage-check", spec), ("stage-check-fails", failing))]


def check_all(peer: Peer, old: str, new: str, newer: str, say: Callable[[str], None]) -> list[dict]:
    """Each option in turn, on a Rollout that is Healthy on `old`. Returns one row per option."""
    rows = []
    for check in (abort, auto_promotion, scale_down_delay, preview_replica_count, pre_promotion_analysis,
                  post_promotion_analysis):
        say(f"    {check.__name__.replace('_', ' ')}")
        rows.append(check(peer, old, new, newer))
        say(f"      {rows[-1]['observed']}")
    return rows


def _served(traffic: Traffic) -> str:
    figures = traffic.summary()
    versions: dict[str, int] = {}
    for key, count in figures["versions"].items():
        versions[key.rsplit("/", 1)[1]] = versions.get(key.rsplit("/", 1)[1], 0) + count
    return f"{figures['sent']} requests, {figures['failed']} failed, served {versions}"


def abort(peer: Peer, old: str, new: str, newer: str) -> dict:
    peer.set_strategy(abortScaleDownDelaySeconds=5)
    peer.deploy(new)
    peer.wait("pause", peer.paused)
    new_hash = peer.status()["currentPodHash"]
    with peer.load(peer.prod_host) as prod:
        peer.plugin("abort")
        scaled = peer.wait("scale-down of the aborted version", lambda: peer.replica_sets()[new_hash][0] == 0)
        time.sleep(1)
    phase = peer.status().get("phase")
    peer.plugin("undo")  # back to the stable template: Healthy again
    peer.wait("Healthy after undo", peer.healthy)
    peer.set_strategy(abortScaleDownDelaySeconds=None)
    return {"option": "abort (abortScaleDownDelaySeconds: 5)",
            "observed": f"prod during abort: {_served(prod)}; the Rollout went {phase}; the aborted "
                        f"version's pods were removed {scaled:.1f} s after the abort; `undo` made it Healthy again"}


def auto_promotion(peer: Peer, old: str, new: str, newer: str) -> dict:
    peer.set_strategy(autoPromotionEnabled=True, autoPromotionSeconds=5)
    with peer.load(peer.prod_host) as prod:
        started = time.time()
        peer.deploy(new)
        paused = peer.wait("pause", peer.paused)
        peer.wait("auto-promotion", peer.healthy, timeout=60)
        time.sleep(1)
    switched = prod.switched(started, peer.versions[new])
    peer.set_strategy(autoPromotionEnabled=False, autoPromotionSeconds=None)
    return {"option": "autoPromotionSeconds: 5",
            "observed": f"preview ready {paused:.1f} s after the deploy, prod on the new version "
                        f"{switched} s after it with no command; {_served(prod)}"}


def scale_down_delay(peer: Peer, old: str, new: str, newer: str) -> dict:
    peer.set_strategy(scaleDownDelaySeconds=10)
    before = peer.status()["stableRS"]
    peer.deploy(newer)
    peer.wait("pause", peer.paused)
    peer.plugin("promote")
    promoted = time.monotonic()
    peer.wait("switch", peer.healthy)
    peer.wait("scale-down of the previous version", lambda: peer.replica_sets()[before][0] == 0, timeout=120)
    gone = time.monotonic() - promoted
    # Rolling back now needs new pods: `undo` makes the old template a new release again.
    with peer.load(peer.prod_host) as prod:
        started = time.time()
        peer.plugin("undo")
        peer.wait("pause", peer.paused)
        peer.plugin("promote")
        peer.wait("Healthy", peer.healthy)
        time.sleep(1)
    switched = prod.switched(started, peer.versions[new])
    peer.set_strategy(scaleDownDelaySeconds=argo.KEEP_OLD_SECONDS)
    return {"option": "scaleDownDelaySeconds: 10",
            "observed": f"the previous version's pods were removed {gone:.1f} s after the promotion; a rollback "
                        f"after that (undo, wait for new pods, promote) switched prod in {switched} s; "
                        f"{_served(prod)}"}


def preview_replica_count(peer: Peer, old: str, new: str, newer: str) -> dict:
    peer.set_strategy(previewReplicaCount=1)
    peer.deploy(old)
    peer.wait("pause", peer.paused)
    preview = peer.replica_sets()[peer.status()["currentPodHash"]]
    with peer.load(peer.prod_host) as prod:
        started = time.time()
        peer.plugin("promote")
        peer.wait("Healthy", peer.healthy)
        time.sleep(1)
    switched = prod.switched(started, peer.versions[old])
    peer.set_strategy(previewReplicaCount=None)
    return {"option": "previewReplicaCount: 1",
            "observed": f"the preview ran {preview[1]} ready pod(s) of {preview[0]}; promote scaled it up first, "
                        f"then switched prod in {switched} s; {_served(prod)}"}


def pre_promotion_analysis(peer: Peer, old: str, new: str, newer: str) -> dict:
    peer.set_strategy(prePromotionAnalysis={"templates": [{"templateName": "stage-check-fails"}]})
    with peer.load(peer.prod_host) as prod:
        peer.deploy(new)
        aborted = peer.wait("abort by the failed analysis", lambda: peer.status().get("abort"))
    failed = peer.analysis_runs()[-1]["status"]["phase"]
    peer.set_strategy(prePromotionAnalysis={"templates": [{"templateName": "stage-check"}]})
    peer.plugin("retry", "rollout")
    passed_in = peer.wait("pause after the passing analysis", peer.paused)
    passed = peer.analysis_runs()[-1]["status"]["phase"]
    peer.plugin("promote")
    peer.wait("Healthy", peer.healthy)
    peer.set_strategy(prePromotionAnalysis=None)
    return {"option": "prePromotionAnalysis (a Job: the chart's stage check)",
            "observed": f"a failing check: AnalysisRun {failed}, the release aborted {aborted:.1f} s after the "
                        f"deploy, prod untouched ({_served(prod)}); a passing one: AnalysisRun {passed}, "
                        f"paused for promotion {passed_in:.1f} s after `retry`"}


def post_promotion_analysis(peer: Peer, old: str, new: str, newer: str) -> dict:
    peer.set_strategy(postPromotionAnalysis={"templates": [{"templateName": "stage-check-fails"}]})
    peer.deploy(newer)
    peer.wait("pause", peer.paused)
    with peer.load(peer.prod_host) as prod:
        started = time.time()
        peer.plugin("promote")
        aborted = peer.wait("abort by the failed analysis", lambda: peer.status().get("abort"))
        time.sleep(2)
    back = prod.switched(started, peer.versions[new])
    peer.set_strategy(postPromotionAnalysis=None)
    peer.plugin("undo")
    peer.wait("Healthy after undo", peer.healthy)
    return {"option": "postPromotionAnalysis (the same failing Job)",
            "observed": f"prod switched to the new version, the analysis failed, Argo aborted {aborted:.1f} s "
                        f"after the promote and sent prod back: only the previous version answered from "
                        f"{back} s on; {_served(prod)}"}
