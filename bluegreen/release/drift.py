"""The truth about the cluster: what the stack deployed, against what is there, object by object,
each difference with its fix.

"What the stack deployed" is the chart values of the Release in the Pulumi state (the last
successful `pulumi up`), not the stack config: a config edited but not yet deployed is a pending
change, not drift. A Helm release record only says what Helm last applied: a Deployment deleted
by hand, a Service selector patched, a slot scaled by hand or a wiped namespace all leave it
untouched (and so a `pulumi refresh` of the Release). So this reads the objects themselves.
`read` takes one look at the cluster; `differences` and `prod_serves` are pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..contract import SLOTS, Names, Problem, role_slots, selected_slot
from .checks import ready_pod_ips
from .helm import newest_release
from .kube import KubeClient

REPAIR = "bluegreen repair"
# The fix when the Helm release itself is the cause, for every difference found with it (a
# Service or a Deployment that follows from the release's revision is fixed by what fixes the
# release). Kept here, in one place: status, the refusals and recover show these texts.
# - a revision left pending-*: Helm refuses any upgrade (so `repair`, and a plain `pulumi up`)
#   until the record is gone; `recover` removes it, rolls Helm back to the last settled revision,
#   refreshes, and deploys the stack config where the state differs from it.
# - the state behind the cluster: an update got into the cluster (Helm's revision holds the stack
#   config's values) but the Pulumi state did not record it (the state backend failed): `repair`
#   would undo the update; `recover` refreshes and runs the update of the stack config.
RELEASE_FIXES = {
    "pending": "bluegreen recover (removes the pending revision, rolls Helm back to the last settled one, "
               "refreshes, then runs pulumi up where the stack config differs from the state); not bluegreen "
               "repair: Helm refuses an upgrade while a revision is pending",
    "state behind": "bluegreen recover (the update reached the cluster, the Pulumi state does not say so: "
                    "it refreshes and runs pulumi up with the stack config, which the cluster already holds); "
                    "not bluegreen repair, which would undo the update",
    "other values": f"{REPAIR} (a Helm upgrade with the values the stack deployed); to keep what the cluster runs, "
                    "put it into the stack config and run pulumi up",
}


@dataclass(frozen=True)
class Deployed:
    """What the stack deployed: the chart values of its Release (bluegreen/values.py made them)."""

    values: Mapping[str, Any]

    @property
    def production_slot(self) -> str:
        return self.values["productionSlot"]

    def slot(self, name: str) -> Mapping[str, Any]:
        return self.values[name]


@dataclass(frozen=True)
class Cluster:
    """What the cluster holds for one app, read at one moment."""

    namespace: bool
    deployments: Mapping[str, dict | None]  # slot -> Deployment
    services: Mapping[str, dict | None]  # role (prod, stage) -> Service
    endpoints: Mapping[str, list[str]]  # role -> ready addresses, from its EndpointSlices
    ready_pods: Mapping[str, list[str]]  # slot -> IPs of its Ready pods
    release: dict | None  # the newest Helm record: revision, status, values


def read(kube: KubeClient, names: Names) -> Cluster:
    if kube.namespace(names.namespace) is None:
        return Cluster(False, dict.fromkeys(SLOTS), {"prod": None, "stage": None}, {"prod": [], "stage": []},
                       {slot: [] for slot in SLOTS}, None)
    return Cluster(
        namespace=True,
        deployments={slot: kube.deployment(names.namespace, names.deployment(slot)) for slot in SLOTS},
        services={role: kube.service(names.namespace, names.service(role)) for role in ("prod", "stage")},
        endpoints={role: kube.endpoints(names.namespace, names.service(role)).ready for role in ("prod", "stage")},
        ready_pods={slot: ready_pod_ips(kube, names, slot) for slot in SLOTS},
        release=newest_release(kube, names),
    )


def prod_serves(deployed: Deployed, cluster: Cluster) -> bool:
    """The prod Service selects the production slot and has ready endpoints, all of them its pods."""
    return serving_slot(cluster) == deployed.production_slot


def serving_slot(cluster: Cluster) -> str | None:
    """The slot the prod Service selects, when it has ready endpoints and all of them are that slot's
    ready pods (prod serves it, whatever the stack deployed); None when prod serves nothing whole."""
    slot, ready = selected_slot(cluster.services["prod"]), cluster.endpoints["prod"]
    if slot is None or slot not in cluster.ready_pods or not ready:
        return None
    return slot if set(ready) <= set(cluster.ready_pods[slot]) else None


def differences(deployed: Deployed, names: Names, cluster: Cluster,
                config: Mapping[str, Any] | None = None) -> list[Problem]:
    """Every way the cluster differs from what the stack deployed, prod's objects first. `config`:
    the chart values of the stack config, which tell a state left behind by an update that got into
    the cluster from an edit behind Pulumi's back (their fixes are opposite)."""
    if not cluster.namespace:
        return [Problem(f"Namespace {names.namespace}", "is missing: nothing of the release is deployed",
                      f"{REPAIR} (refreshes the stack and deploys it again)")]
    found: list[Problem] = []
    for role, slot in role_slots(deployed.production_slot).items():
        found += _slot_drift(deployed, names, slot, cluster.deployments[slot])
        found += _service_drift(deployed, names, role, slot, cluster)
    kind = release_kind(deployed, cluster.release, config)
    found += _release_drift(deployed, names, cluster.release, kind)
    if kind in ("pending", "state behind"):  # the release is the cause: what fixes it fixes them all
        found = [Problem(p.subject, p.problem, RELEASE_FIXES[kind]) for p in found]
    return found


def release_kind(deployed: Deployed, release: dict | None, config: Mapping[str, Any] | None) -> str | None:
    """How the newest Helm record differs from what the stack deployed (a key of RELEASE_FIXES, or
    "no record", "failed", ...); None when it does not."""
    if release is None:
        return "no record"
    if release["status"].startswith("pending-"):
        return "pending"
    if release["status"] != "deployed":
        return release["status"] or "unknown"
    changed = changed_keys(deployed.values, release["values"])
    if not changed:
        return None
    if config is not None and holds(release["values"], config, changed):
        return "state behind"
    return "other values"


def holds(found: Mapping[str, Any], wanted: Mapping[str, Any], keys: list[str]) -> bool:
    """Whether `found` has the values of `wanted` for every key of `keys`."""
    return not changed_keys({key: wanted.get(key) for key in keys}, found)


def _slot_drift(deployed: Deployed, names: Names, slot: str, deployment: dict | None) -> list[Problem]:
    wanted, what = deployed.slot(slot), f"Deployment {names.deployment(slot)}"
    if not wanted["enabled"]:
        if deployment is not None:
            return [Problem(what, f"exists, but the stack deployed {slot} retired", REPAIR)]
        return []
    if deployment is None:
        return [Problem(what, "is missing", f"{REPAIR} (a Helm upgrade of the same values recreates it)")]
    found = []
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    if image != wanted["image"]:
        found.append(Problem(what, f"runs {image}, the stack deployed {wanted['image']}",
                           f"{REPAIR} puts {wanted['image']} back; a new version goes into the idle slot: "
                           f"bluegreen deploy {image}"))
    desired = deployment["spec"].get("replicas", 1)
    ready = (deployment.get("status") or {}).get("readyReplicas", 0)
    if desired != wanted["replicas"]:
        found.append(Problem(what, f"is scaled to {desired} replicas, the stack deployed {wanted['replicas']}",
                           f"{REPAIR} scales it back, or keep {desired}: "
                           f"pulumi config set --path {slot}.replicas {desired} && pulumi up"))
    elif ready != desired:
        found.append(Problem(what, f"has {ready}/{desired} replicas ready",
                           f"wait for its pods (kubectl -n {names.namespace} get pods -l slot={slot}), "
                           f"or {REPAIR}"))
    return found


def _service_drift(deployed: Deployed, names: Names, role: str, slot: str, cluster: Cluster) -> list[Problem]:
    what, service = f"Service {names.service(role)}", cluster.services[role]
    if service is None:
        return [Problem(what, "is missing", f"{REPAIR} (a Helm upgrade of the same values recreates it)")]
    selected = selected_slot(service)
    if selected != slot:
        return [Problem(what, f"selects slot {selected}, the stack deployed {slot}",
                      f"{REPAIR} points it back at {slot}; to change the production slot: bluegreen promote")]
    endpoints, pods = sorted(cluster.endpoints[role]), sorted(cluster.ready_pods[slot])
    if endpoints != pods and (deployed.slot(slot)["enabled"] or endpoints):
        return [Problem(what, f"has endpoints {endpoints or 'none'}, not the ready {slot} pods {pods or 'none'}",
                      f"wait a moment for the EndpointSlice controller, or {REPAIR}")]
    return []


def _release_drift(deployed: Deployed, names: Names, release: dict | None, kind: str | None) -> list[Problem]:
    what = f"Helm release {names.app}"
    if kind is None:
        return []
    if release is None:
        return [Problem(what, "has no release record", f"{REPAIR} (refreshes the stack and deploys it again)")]
    if kind == "pending":
        return [Problem(what, f"has revision {release['revision']} {release['status']} (an update that was "
                        "interrupted or lost the cluster)", RELEASE_FIXES[kind])]
    if release["status"] != "deployed":  # failed: Helm upgrades from it
        return [Problem(what, f"has revision {release['revision']} {release['status']}",
                      f"{REPAIR} (a Helm upgrade with the values the stack deployed)")]
    changed = ", ".join(changed_keys(deployed.values, release["values"]))
    if kind == "state behind":
        return [Problem(what, f"has revision {release['revision']} with the stack config's values for: {changed}, "
                        "which the Pulumi state does not hold (an update that got into the cluster, but whose "
                        "state was not saved)", RELEASE_FIXES[kind])]
    return [Problem(what, f"has revision {release['revision']} with other values than the stack deployed "
                        f"for: {changed} (a helm upgrade behind Pulumi's back, or an update that failed and "
                        "that Helm rolled back)", RELEASE_FIXES[kind])]


def changed_keys(wanted: Mapping[str, Any], found: Mapping[str, Any]) -> list[str]:
    """The top-level keys of `wanted` whose values differ in `found`. An empty list, map or null
    counts as absent: the provider drops empty lists from a Release's values in the state."""
    return sorted(key for key in wanted if _normal(found.get(key)) != _normal(wanted[key]))


def _normal(value: Any) -> str:
    return json.dumps(_pruned({"value": value}), sort_keys=True)


def _pruned(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _pruned(item) for key, item in value.items() if item not in (None, [], {})}
    if isinstance(value, list):
        return [_pruned(item) for item in value]
    return value
