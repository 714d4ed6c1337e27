"""Tier 1: the routing keys (routing, gateway) and the stage's protection (stageAccess,
stageAllowFrom, stageAuth): what is accepted, and the error for each thing that is not."""

from __future__ import annotations

import pytest
import yaml

from bluegreen.config import ConfigError, is_secret_path, parse
from tests.conftest import REPO_ROOT
from tests.scenarios import BASE, V1

VALID = {**BASE, "blue": {"enabled": True, "image": V1, "replicas": 2}}
GATEWAY = {"routing": "gateway", "gateway": {"name": "traefik", "namespace": "kube-system"}}
AUTH = {"username": "tester", "password": "s3cret"}


def test_the_default_is_todays_behaviour_an_ingress_and_a_public_stage():
    settings = parse(VALID)
    assert (settings.routing, settings.gateway, settings.stage_access) == ("ingress", {}, "public")
    assert settings.url("stage") == "http://stage.shop.example.com/"


def test_gateway_routing_names_the_gateway():
    settings = parse({**VALID, **GATEWAY})
    assert settings.routing == "gateway"
    assert settings.gateway == {"name": "traefik", "namespace": "kube-system"}
    with_listener = parse({**VALID, "routing": "gateway",
                           "gateway": {"name": "traefik", "namespace": "kube-system", "sectionName": "web"}})
    assert with_listener.gateway["sectionName"] == "web"


def test_restricted_stage_with_source_ranges_and_basic_auth():
    settings = parse({**VALID, "stageAccess": "restricted", "stageAllowFrom": ["127.0.0.1/32", "10.0.0.0/8", "::1"],
                      "stageAuth": AUTH})
    assert settings.stage_allow_from == ("127.0.0.1/32", "10.0.0.0/8", "::1")
    assert settings.stage_auth_secret == "web-stage-auth"
    assert "s3cret" not in repr(settings)


def test_an_internal_stage_has_no_url():
    assert parse({**VALID, "stageAccess": "internal"}).url("stage") == ""


@pytest.mark.parametrize("override,message", [
    ({"routing": "istio"}, "routing is 'istio'; allowed: ingress, gateway, both"),
    ({"routing": "both"}, "gateway is {}; allowed: the Gateway the HTTPRoutes attach to while routing is both"),
    ({"routing": "gateway"}, "gateway is {}; allowed: the Gateway the HTTPRoutes attach to while routing is gateway"),
    ({"gateway": {"name": "traefik", "namespace": "kube-system"}}, "allowed: unset while routing is ingress"),
    ({"routing": "gateway", "gateway": {"name": "traefik"}},
     "gateway is [\"name\"]; allowed: an object with name and namespace"),
    ({"routing": "gateway", "gateway": {"name": "traefik", "namespace": "kube-system", "listener": "web"}},
     "allowed: an object with name and namespace, and optionally sectionName"),
    ({"routing": "gateway", "gateway": {"name": "Traefik_GW", "namespace": "kube-system"}},
     "gateway.name is 'Traefik_GW'; allowed: a lowercase DNS name"),
    ({**GATEWAY, "tlsSecret": "shop-tls"}, "tlsSecret is 'shop-tls'; allowed: empty while routing is gateway"),
    ({**GATEWAY, "ingressAnnotations": {"a": "b"}}, "ingressAnnotations is {\"a\": \"b\"}; allowed: empty while"),
    ({"stageAccess": "private"}, "stageAccess is 'private'; allowed: public, restricted, internal"),
    ({"stageAccess": "restricted"}, "stageAccess is 'restricted'; allowed: restricted with stageAllowFrom and/or"),
    ({"stageAccess": "restricted", "stageAllowFrom": ["10.1.2.3/8"]},
     "stageAllowFrom[0] is '10.1.2.3/8'; allowed: an IP address or a CIDR without host bits"),
    ({"stageAccess": "restricted", "stageAllowFrom": "10.0.0.0/8"}, "stageAllowFrom is '10.0.0.0/8'; allowed: a list"),
    ({"stageAccess": "restricted", "stageAllowFrom": ["office"]}, "stageAllowFrom[0] is 'office'"),
    ({"stageAllowFrom": ["10.0.0.0/8"]},
     "stageAllowFrom is [\"10.0.0.0/8\"]; allowed: unset while stageAccess is public"),
    ({"stageAccess": "internal", "stageAuth": AUTH},
     "stageAuth is '(hidden)'; allowed: unset while stageAccess is internal"),
    ({"stageAccess": "restricted", "stageAuth": {"username": "tester"}},
     "stageAuth is [\"username\"]; allowed: an object with exactly username and password"),
    ({"stageAccess": "restricted", "stageAuth": {"username": "a:b", "password": "x"}},
     "stageAuth.username is 'a:b'; allowed: non-empty text without ':'"),
    ({"stageAccess": "restricted", "stageAuth": {"username": "tester", "password": ""}},
     "stageAuth.password is '(hidden)'; allowed: non-empty text"),
])
def test_bad_routing_input_names_key_value_allowed_and_fix(override, message):
    with pytest.raises(ConfigError) as error:
        parse({**VALID, **override})
    text = str(error.value)
    assert message in text, text
    assert "Fix: pulumi config " in text


def test_the_stage_password_is_a_secret_kept_encrypted():
    assert is_secret_path("stageAuth.password") and not is_secret_path("stageAuth.username")
    config = {**VALID, "stageAccess": "restricted", "stageAuth": AUTH}
    with pytest.raises(ConfigError) as error:
        parse(config, encrypted=set())
    text = str(error.value)
    assert "stageAuth.password is '(hidden)'; allowed: values set with --secret" in text
    assert "pulumi config set --secret --path stageAuth.password VALUE" in text
    assert "s3cret" not in text
    parse(config, encrypted={"stageAuth"})


def test_the_production_stack_does_not_open_its_stage_to_everyone():
    raw = yaml.safe_load((REPO_ROOT / "Pulumi.production.yaml").read_text())["config"]
    settings = parse({key.removeprefix("bluegreen:"): value for key, value in raw.items()})
    assert settings.stage_access != "public"


def test_a_url_check_of_an_internal_stage_fails_saying_why():
    from bluegreen.release.checks import smoke_checks

    said: list[str] = []
    failures = smoke_checks("stage", "", "{url}/healthz", None, {}, said.append)
    assert failures == ["stage has no URL (stageAccess is internal): check it in the cluster with --check-cmd "
                        "(BLUEGREEN_SERVICE, BLUEGREEN_NAMESPACE; e.g. through kubectl port-forward)"]


def test_routing_switches_only_through_both():
    """A direct switch dropped 37 of 1170 prod requests on the real node (tests/e2e/test_routing.py
    goes through both): refused before anything changes when the last update routed otherwise."""
    ran = {"blue": {"image": V1, "env": {}}, "green": None}
    with pytest.raises(ConfigError) as error:
        parse({**VALID, **GATEWAY}, before={**ran, "routing": "ingress"})
    assert str(error.value.problems[0]) == (
        "routing is 'gateway'; allowed: ingress or both (the last update routed with ingress; switching straight "
        "to the other drops requests while the controller swaps the routes).\n"
        "  Fix: pulumi config set routing both; pulumi up; then pulumi config set routing gateway; pulumi up")
    with pytest.raises(ConfigError, match="routing is 'ingress'; allowed: gateway or both"):
        parse(VALID, before={**ran, "routing": "gateway"})
    # A stack last updated before the routing output existed routed with Ingresses.
    with pytest.raises(ConfigError, match="routing is 'gateway'; allowed: ingress or both"):
        parse({**VALID, **GATEWAY}, before={**ran, "routing": None})
    for was, now in (("ingress", "both"), ("both", "gateway"), ("gateway", "both"), ("both", "ingress"),
                     (None, "both"), (None, "ingress"), ("gateway", "gateway")):
        config = VALID if now == "ingress" else {**VALID, **GATEWAY, "routing": now}
        assert parse(config, before={**ran, "routing": was}).routing == now
