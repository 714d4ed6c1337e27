"""The benchmark's peer runs the same app: bench/argo.py turns the chart's render into an Argo
Rollout. If the chart changes, the Rollout must still run the same pods behind the same hosts."""

from __future__ import annotations

import copy

from bench.argo import rollout_manifests
from bluegreen.config import parse
from bluegreen.values import chart_values
from tests.chart.render import template

OLD, NEW = "registry.example.com/shop/web:1.0.0", "registry.example.com/shop/web:2.0.0"


def test_the_rollout_runs_the_charts_pods_behind_the_charts_services_and_hosts(helm):
    values = chart_values(parse({"namespace": "shop", "prodHost": "shop.example.com",
                                 "stageHost": "stage.shop.example.com", "blue": {"image": OLD}}))
    rendered = template(helm, values).objects
    deployment = next(o for o in rendered if o["kind"] == "Deployment")
    manifests = rollout_manifests(copy.deepcopy(rendered), (OLD, NEW))

    kinds = sorted(m["kind"] for m in manifests)
    assert kinds == ["Ingress", "Ingress", "NetworkPolicy", "Rollout", "Service", "Service"]
    rollout = next(m for m in manifests if m["kind"] == "Rollout")
    strategy = rollout["spec"]["strategy"]["blueGreen"]
    assert (strategy["activeService"], strategy["previewService"]) == ("web-prod", "web-stage")
    assert strategy["autoPromotionEnabled"] is False
    assert rollout["spec"]["replicas"] == deployment["spec"]["replicas"]

    # The same pod spec but for the slot: probes, drain, grace period, resources, security.
    ours, theirs = deployment["spec"]["template"], rollout["spec"]["template"]
    assert "slot" not in theirs["metadata"]["labels"]
    assert "slot" not in rollout["spec"]["selector"]["matchLabels"]
    container, = theirs["spec"]["containers"]
    assert container["image"] == OLD
    assert [v for v in container.get("env", []) if v["name"] != "BLUEGREEN_SLOT"] == \
        [v for v in ours["spec"]["containers"][0].get("env", []) if v["name"] != "BLUEGREEN_SLOT"]
    for key in ("readinessProbe", "livenessProbe", "lifecycle", "resources", "securityContext", "ports"):
        assert container.get(key) == ours["spec"]["containers"][0].get(key), key
    assert {k: v for k, v in theirs["spec"].items() if k != "containers"} == \
        {k: v for k, v in ours["spec"].items() if k != "containers"}

    for service in (m for m in manifests if m["kind"] == "Service"):
        assert "slot" not in service["spec"]["selector"]
        assert service["spec"]["selector"].items() <= theirs["metadata"]["labels"].items()
    for kind in ("Ingress", "NetworkPolicy"):
        assert [m for m in manifests if m["kind"] == kind] == [o for o in rendered if o["kind"] == kind]
