"""Drift: the cluster against the stack config, object by object (bluegreen/release/drift.py)."""

from __future__ import annotations

import copy

from bluegreen.config import parse
from bluegreen.contract import Names
from bluegreen.release.drift import Cluster, Deployed, differences, prod_serves
from bluegreen.values import chart_values
from tests.scenarios import SCENARIOS

STAGED = next(s for s in SCENARIOS if s.name == "green-staged")  # blue prod (V1), green staged (V2)
SETTINGS = parse(STAGED.config)
DEPLOYED = Deployed(chart_values(SETTINGS))
NAMES = Names(SETTINGS.namespace, SETTINGS.app_name)
PODS = {"blue": ["10.244.0.2", "10.244.0.3"], "green": ["10.244.0.4", "10.244.0.5"]}


def deployment(slot, image, replicas=2, ready=2):
    return {"spec": {"replicas": replicas, "template": {"spec": {"containers": [{"image": image}]}}},
            "status": {"readyReplicas": ready}}


def service(slot):
    return {"spec": {"selector": {"app.kubernetes.io/name": "web", "slot": slot}}}


def healthy() -> Cluster:
    """What the cluster holds when it is exactly what the stack says."""
    return Cluster(namespace=True,
                   deployments={slot: deployment(slot, STAGED.images[slot]) for slot in ("blue", "green")},
                   services={"prod": service("blue"), "stage": service("green")},
                   endpoints={"prod": PODS["blue"], "stage": PODS["green"]},
                   ready_pods=PODS,
                   release={"revision": 3, "status": "deployed", "values": chart_values(SETTINGS)})


def changed(**fields) -> Cluster:
    cluster = copy.deepcopy(healthy())
    return Cluster(**{**cluster.__dict__, **fields})


def test_a_cluster_that_is_what_the_stack_says_has_no_drift():
    assert differences(DEPLOYED, NAMES, healthy()) == []
    assert prod_serves(DEPLOYED, healthy())


def test_a_wiped_namespace_is_one_drift_and_prod_does_not_serve():
    wiped = Cluster(False, {"blue": None, "green": None}, {"prod": None, "stage": None},
                    {"prod": [], "stage": []}, {"blue": [], "green": []}, None)
    [drift] = differences(DEPLOYED, NAMES, wiped)
    assert (drift.subject, drift.problem) == ("Namespace shop", "is missing: nothing of the release is deployed")
    assert drift.fix.startswith("bluegreen repair")
    assert not prod_serves(DEPLOYED, wiped)


def test_a_deleted_prod_deployment():
    cluster = changed(deployments={"blue": None, "green": deployment("green", STAGED.images["green"])},
                      endpoints={"prod": [], "stage": PODS["green"]}, ready_pods={"blue": [], "green": PODS["green"]})
    drifts = differences(DEPLOYED, NAMES, cluster)
    assert [(d.subject, d.problem) for d in drifts][:1] == [("Deployment web-blue", "is missing")]
    assert not prod_serves(DEPLOYED, cluster)


def test_a_prod_service_patched_to_the_stage_slot():
    cluster = changed(services={"prod": service("green"), "stage": service("green")},
                      endpoints={"prod": PODS["green"], "stage": PODS["green"]})
    drifts = differences(DEPLOYED, NAMES, cluster)
    assert [str(d) for d in drifts] == [
        "Service web-prod selects slot green, the stack deployed blue\n"
        "  Fix: bluegreen repair points it back at blue; to change the production slot: bluegreen promote"]
    assert not prod_serves(DEPLOYED, cluster)  # prod serves, but not what the stack says is prod


def test_prod_scaled_to_zero_by_hand():
    cluster = changed(deployments={"blue": deployment("blue", STAGED.images["blue"], replicas=0, ready=0),
                                   "green": deployment("green", STAGED.images["green"])},
                      endpoints={"prod": [], "stage": PODS["green"]}, ready_pods={"blue": [], "green": PODS["green"]})
    drifts = differences(DEPLOYED, NAMES, cluster)
    assert drifts[0].problem == "is scaled to 0 replicas, the stack deployed 2"
    assert "pulumi config set --path blue.replicas 0" in drifts[0].fix
    assert not prod_serves(DEPLOYED, cluster)


def test_an_image_edited_in_place():
    cluster = changed(deployments={"blue": deployment("blue", "registry.example.com/shop/web:9.9.9"),
                                   "green": deployment("green", STAGED.images["green"])})
    [drift] = differences(DEPLOYED, NAMES, cluster)
    assert drift.problem == f"runs registry.example.com/shop/web:9.9.9, the stack deployed {STAGED.images['blue']}"
    assert prod_serves(DEPLOYED, cluster)  # it serves; it is just not what the stack says


def test_a_helm_upgrade_behind_pulumis_back():
    values = {**chart_values(SETTINGS), "productionSlot": "green"}
    cluster = changed(release={"revision": 4, "status": "deployed", "values": values})
    [drift] = differences(DEPLOYED, NAMES, cluster)
    assert drift.problem.startswith("has revision 4 with other values than the stack deployed for: productionSlot")


def test_a_release_left_pending_points_at_recover():
    cluster = changed(release={"revision": 4, "status": "pending-upgrade", "values": chart_values(SETTINGS)})
    [drift] = differences(DEPLOYED, NAMES, cluster)
    assert drift.fix.startswith("bluegreen recover")


FLIPPED = {**chart_values(SETTINGS), "productionSlot": "green"}  # what the flip's update applies


def flipped(status: str) -> Cluster:
    """The flip's Helm upgrade applied (the Services select the other slots), its record `status`."""
    return changed(services={"prod": service("green"), "stage": service("blue")},
                   endpoints={"prod": PODS["green"], "stage": PODS["blue"]},
                   release={"revision": 4, "status": status, "values": FLIPPED})


def test_every_difference_a_pending_revision_left_is_fixed_by_recover_not_repair():
    """Helm refuses an upgrade (so repair) while a revision is pending: every fix names recover,
    whatever the stack config says."""
    for config in (None, chart_values(SETTINGS), FLIPPED):
        drifts = differences(DEPLOYED, NAMES, flipped("pending-upgrade"), config)
        assert [d.subject for d in drifts] == ["Service web-prod", "Service web-stage", "Helm release web"]
        for drift in drifts:
            assert drift.fix.startswith("bluegreen recover (removes the pending revision"), drift
            assert "not bluegreen repair" in drift.fix


def test_an_update_in_the_cluster_that_the_state_did_not_record_is_fixed_by_recover():
    """The stack config says green, Helm's revision holds green, the state still says blue (the
    state backend failed after Helm applied): repair would undo the update; recover deploys the config."""
    drifts = differences(DEPLOYED, NAMES, flipped("deployed"), FLIPPED)
    assert drifts[-1].problem.startswith("has revision 4 with the stack config's values for: productionSlot")
    assert all(d.fix.startswith("bluegreen recover (the update reached the cluster") for d in drifts), drifts


def test_values_changed_behind_pulumis_back_are_fixed_by_repair():
    """Helm's revision holds values neither the state nor the stack config has."""
    drifts = differences(DEPLOYED, NAMES, flipped("deployed"), chart_values(SETTINGS))
    assert drifts[-1].problem.startswith("has revision 4 with other values than the stack deployed")
    assert all(d.fix.startswith("bluegreen repair") for d in drifts), drifts


def test_a_retired_slot_that_still_runs():
    retired = next(s for s in SCENARIOS if s.name == "blue-retired")  # green prod, blue retired
    settings = Deployed(chart_values(parse(retired.config)))
    cluster = Cluster(True, {"blue": deployment("blue", "x:1"), "green": deployment("green", retired.images["green"])},
                      {"prod": service("green"), "stage": service("blue")},
                      {"prod": PODS["green"], "stage": PODS["blue"]}, PODS,
                      {"revision": 5, "status": "deployed", "values": settings.values})
    problems = [(d.subject, d.problem) for d in differences(settings, NAMES, cluster)]
    assert ("Deployment web-blue", "exists, but the stack deployed blue retired") in problems
    assert prod_serves(settings, cluster)


def test_empty_lists_the_state_drops_are_no_pending_change():
    """The provider keeps a Release's values without their empty lists (env: [], imagePullSecrets:
    []): that is what the stack config says, not a change waiting to be deployed."""
    from bluegreen.release.drift import changed_keys

    wanted = chart_values(SETTINGS)
    stored = {key: ({k: v for k, v in value.items() if v != []} if isinstance(value, dict) else value)
              for key, value in wanted.items() if value != []}
    assert "imagePullSecrets" not in stored and "env" not in stored["blue"]
    assert changed_keys(wanted, stored) == []
    assert changed_keys(wanted, {**stored, "productionSlot": "green"}) == ["productionSlot"]


def test_the_slot_prod_serves_is_the_one_its_service_selects_with_that_slots_ready_pods():
    from bluegreen.release.drift import serving_slot

    assert serving_slot(healthy()) == "blue"
    moved = changed(services={"prod": service("green"), "stage": service("green")},
                    endpoints={"prod": PODS["green"], "stage": PODS["green"]})
    assert serving_slot(moved) == "green" and not prod_serves(DEPLOYED, moved)  # serves, not what was deployed
    lagging = changed(services={"prod": service("green"), "stage": service("blue")},
                      endpoints={"prod": PODS["blue"], "stage": PODS["blue"]})
    assert serving_slot(lagging) is None  # the selector moved, the endpoints not yet: nothing whole
