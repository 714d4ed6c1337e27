"""Tier 3: how the hosts reach the Services (routing: ingress or gateway) and who reaches the stage
host (stageAccess), rendered by the real helm CLI from the values the program computes.

Render modes these add: gateway, and stageAccess restricted/internal in each routing mode.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from bluegreen.config import parse
from bluegreen.values import chart_values
from tests.chart.render import CHART, HelmError, Manifest, template
from tests.scenarios import ALLOW, AUTH, BOTH, GATEWAY, SCENARIOS, V1
from tests.scenarios import ROUTING_MODES as MODES

MIDDLEWARE_ANNOTATION = "traefik.ingress.kubernetes.io/router.middlewares"

STAGED = SCENARIOS[1].config  # blue prod, green staged
def render(helm, extra: dict) -> Manifest:
    return template(helm, chart_values(parse({**STAGED, **extra})))


def routes(manifest: Manifest) -> dict[str, str]:
    """host -> the Service its route sends to, from Ingresses and HTTPRoutes alike."""
    found = {}
    for ingress in manifest.all("Ingress"):
        for rule in ingress["spec"]["rules"]:
            found[rule["host"]] = rule["http"]["paths"][0]["backend"]["service"]["name"]
    for route in manifest.all("HTTPRoute"):
        (host,) = route["spec"]["hostnames"]
        (rule,) = route["spec"]["rules"]
        (backend,) = rule["backendRefs"]
        found[host] = backend["name"]
    return found


@pytest.mark.parametrize("mode", MODES)
def test_prod_host_to_prod_and_stage_host_to_stage_unless_internal(helm, mode):
    manifest = render(helm, MODES[mode])
    expected = {"shop.example.com": "web-prod"}
    if not mode.endswith("internal"):
        expected["stage.shop.example.com"] = "web-stage"
    assert routes(manifest) == expected
    # The routing mode decides the kind of every route; the stage Service exists either way.
    assert bool(manifest.all("Ingress")) == mode.startswith("ingress")
    assert bool(manifest.all("HTTPRoute")) == mode.startswith("gateway")
    assert manifest.deployments_selected_by("web-stage") == ["web-green"]


def test_both_routes_each_host_twice_the_step_of_a_switch_without_a_dropped_request(helm):
    manifest = render(helm, {**GATEWAY, **BOTH, "routing": "both"})
    assert sorted(i["metadata"]["name"] for i in manifest.all("Ingress")) == ["web", "web-stage"]
    assert sorted(r["metadata"]["name"] for r in manifest.all("HTTPRoute")) == ["web-prod", "web-stage"]
    assert routes(manifest) == {"shop.example.com": "web-prod", "stage.shop.example.com": "web-stage"}
    assert manifest.get("Ingress", "web-stage")["metadata"]["annotations"][MIDDLEWARE_ANNOTATION]
    assert manifest.get("HTTPRoute", "web-stage")["spec"]["rules"][0]["filters"]


def test_httproutes_attach_to_the_named_gateway(helm):
    manifest = render(helm, MODES["gateway-public"])
    for role in ("prod", "stage"):
        route = manifest.get("HTTPRoute", f"web-{role}")
        assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
        assert route["spec"]["parentRefs"] == [
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "edge"}]
        (rule,) = route["spec"]["rules"]
        assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
        assert rule["backendRefs"] == [{"name": f"web-{role}", "port": 80}]
        assert "filters" not in rule


def test_a_gateway_listener_can_be_named(helm):
    manifest = render(helm, {"routing": "gateway", "gateway": {"name": "public", "namespace": "edge",
                                                               "sectionName": "https"}})
    assert manifest.get("HTTPRoute", "web-prod")["spec"]["parentRefs"][0]["sectionName"] == "https"


@pytest.mark.parametrize("extra,names", [
    (ALLOW, ["web-stage-allow"]),
    (AUTH, ["web-stage-auth"]),
    (BOTH, ["web-stage-allow", "web-stage-auth"]),
], ids=["allow-list", "basic-auth", "both"])
def test_restricted_stage_gets_traefik_middlewares_on_its_route_only(helm, extra, names):
    for routing in ({}, GATEWAY):
        manifest = render(helm, {**routing, **extra})
        middlewares = {m["metadata"]["name"]: m for m in manifest.all("Middleware")}
        assert sorted(middlewares) == names
        for middleware in middlewares.values():
            assert middleware["apiVersion"] == "traefik.io/v1alpha1"
        if "web-stage-allow" in middlewares:
            assert middlewares["web-stage-allow"]["spec"] == {
                "ipAllowList": {"sourceRange": ["10.0.0.0/8", "2001:db8::/32"]}}
        if "web-stage-auth" in middlewares:
            assert middlewares["web-stage-auth"]["spec"] == {
                "basicAuth": {"secret": "web-stage-auth", "realm": "stage", "removeHeader": True}}
        if routing:
            stage = manifest.get("HTTPRoute", "web-stage")["spec"]["rules"][0]["filters"]
            assert stage == [{"type": "ExtensionRef", "extensionRef": {"group": "traefik.io", "kind": "Middleware",
                                                                       "name": name}} for name in names]
            assert "filters" not in manifest.get("HTTPRoute", "web-prod")["spec"]["rules"][0]
        else:
            # Traefik names a Middleware of the kubernetesCRD provider <namespace>-<name>@kubernetescrd.
            stage = manifest.get("Ingress", "web-stage")["metadata"]["annotations"][MIDDLEWARE_ANNOTATION]
            assert stage == ",".join(f"shop-{name}@kubernetescrd" for name in names)
            assert "annotations" not in manifest.get("Ingress", "web")["metadata"]


def test_the_stages_middlewares_come_before_the_users_own(helm):
    manifest = render(helm, {**ALLOW, "ingressAnnotations": {MIDDLEWARE_ANNOTATION: "shop-compress@kubernetescrd"}})
    stage = manifest.get("Ingress", "web-stage")["metadata"]["annotations"][MIDDLEWARE_ANNOTATION]
    assert stage == "shop-web-stage-allow@kubernetescrd,shop-compress@kubernetescrd"
    prod = manifest.get("Ingress", "web")["metadata"]["annotations"][MIDDLEWARE_ANNOTATION]
    assert prod == "shop-compress@kubernetescrd"


def test_the_basic_auth_password_is_not_in_the_charts_values():
    values = chart_values(parse({**STAGED, **AUTH}))
    assert values["stageAccess"] == {"mode": "restricted", "allowFrom": [], "basicAuthSecret": "web-stage-auth"}
    assert "not-in-values" not in json.dumps(values)


@pytest.mark.parametrize("mode", MODES)
def test_lint_strict_passes(helm, mode, tmp_path):
    values = tmp_path / "values.json"
    values.write_text(json.dumps(chart_values(parse({**STAGED, **MODES[mode]}))))
    done = subprocess.run([helm, "lint", "--strict", str(CHART), "--values", str(values)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("sets,message", [
    (["routing=gateway"], "routing is gateway or both but gateway.name is empty"),
    (["stageAccess.mode=restricted"], "stageAccess.mode is restricted but neither stageAccess.allowFrom nor"),
])
def test_plain_helm_users_get_the_same_refusals(helm, sets, message):
    with pytest.raises(HelmError, match=message):
        template(helm, sets=[f"blue.image={V1}", *sets])


@pytest.mark.parametrize("sets,message", [
    (["routing=istio"], "at '/routing': value must be one of 'ingress', 'gateway', 'both'"),
    (["stageAccess.mode=private"], "at '/stageAccess/mode': value must be one of 'public', 'restricted', 'internal'"),
    (["gateway.nmae=x"], "additional properties 'nmae' not allowed"),
    (["gateway.name=Edge_GW"], "at '/gateway/name'"),
])
def test_schema_rejects_bad_routing_values(helm, sets, message):
    with pytest.raises(HelmError, match="values don't meet the specifications of the schema") as error:
        template(helm, sets=[f"blue.image={V1}", *sets])
    assert message in str(error.value)
