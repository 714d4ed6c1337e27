"""The release cycle as stack configs, shared by the mocks and chart tiers.

Each scenario is the raw stack config (keys without the `bluegreen:` prefix) a user reaches with
plain `pulumi config set` commands, and what prod and stage must serve there.
"""

from dataclasses import dataclass

import yaml

from bluegreen.config import parse, project_keys
from bluegreen.values import chart_values
from tests.conftest import REPO_ROOT

V1 = "registry.example.com/shop/web:1.4.0"
V2 = "registry.example.com/shop/web:1.5.0"


@dataclass(frozen=True)
class Scenario:
    name: str
    config: dict
    prod: str
    stage: str
    images: dict  # slot -> image, None where the slot has no Deployment


def _slot(enabled, image, replicas=2):
    return {"enabled": enabled, "image": image, "replicas": replicas}


BASE = {"namespace": "shop", "prodHost": "shop.example.com", "stageHost": "stage.shop.example.com"}

SCENARIOS = [
    # First deploy: blue is live, green is empty.
    Scenario("blue-live", {**BASE, "productionSlot": "blue", "blue": _slot(True, V1), "green": _slot(False, "")},
             prod="blue", stage="green", images={"blue": V1, "green": None}),
    # v2 deployed into the idle slot: prod untouched, stage serves green.
    Scenario("green-staged", {**BASE, "productionSlot": "blue", "blue": _slot(True, V1), "green": _slot(True, V2)},
             prod="blue", stage="green", images={"blue": V1, "green": V2}),
    # `pulumi config set productionSlot green`: prod serves v2, blue is the instant rollback.
    Scenario("promoted-to-green",
             {**BASE, "productionSlot": "green", "blue": _slot(True, V1), "green": _slot(True, V2)},
             prod="green", stage="blue", images={"blue": V1, "green": V2}),
    # The old slot removed; the next release goes into blue.
    Scenario("blue-retired", {**BASE, "productionSlot": "green", "blue": _slot(False, V1), "green": _slot(True, V2)},
             prod="green", stage="blue", images={"blue": None, "green": V2}),
    # Flipped back after the promotion: prod serves v1 again, v2 stays staged.
    Scenario("rolled-back", {**BASE, "productionSlot": "blue", "blue": _slot(True, V1), "green": _slot(True, V2)},
             prod="blue", stage="green", images={"blue": V1, "green": V2}),
]

# Bad inputs and a fragment of the error each must produce.
BAD_CONFIGS = [
    ("productionSlot not a slot", {"productionSlot": "purple"}, "productionSlot is 'purple'; allowed: blue, green"),
    ("promote to a disabled slot", {"productionSlot": "green"}, "green.enabled is false"),
    ("promote to a slot without image",
     {"productionSlot": "green", "green": _slot(True, "")}, "green.image is ''"),
    ("enabled slot without image", {"green": _slot(True, "")},
     "green.image is ''; allowed: an image while green.enabled is true"),
    ("invalid image", {"green": _slot(True, "Shop Web:1")}, "green.image is 'Shop Web:1'"),
    ("image without tag", {"green": _slot(True, "shop/web")}, "green.image is 'shop/web'"),
    ("negative replicas", {"green": _slot(True, V2, -1)},
     "green.replicas is -1; allowed: a whole number from 0 to 100"),
    ("fractional replicas", {"green": _slot(True, V2, 2.5)}, "green.replicas is 2.5"),
    ("non-numeric replicas", {"blue": {"enabled": True, "image": V1, "replicas": "two"}}, "blue.replicas is 'two'"),
    ("prod host equals stage host", {"prodHost": "shop.example.com", "stageHost": "shop.example.com"},
     "stageHost is 'shop.example.com'; allowed: a host other than prodHost"),
    ("prod host not a DNS name", {"prodHost": "Shop_Example.com"}, "prodHost is 'Shop_Example.com'"),
    ("typo inside a slot", {"green": {"enabeld": True, "image": V2}},
     "green.enabeld is true; allowed: keys enabled, image, replicas"),
    ("unknown top-level key", {"productoinSlot": "green"}, "productoinSlot is 'green'; allowed: one of"),
]


# How the hosts reach the Services and who reaches the stage: every (routing, stageAccess) pair a
# stack can render, one config each (tests/chart/test_routing.py), and the step between ingress and
# gateway.
GATEWAY = {"routing": "gateway", "gateway": {"name": "public", "namespace": "edge"}}
ALLOW = {"stageAccess": "restricted", "stageAllowFrom": ["10.0.0.0/8", "2001:db8::/32"]}
AUTH = {"stageAccess": "restricted", "stageAuth": {"username": "tester", "password": "not-in-values"}}
BOTH = {**ALLOW, **AUTH}
ROUTING_MODES = {
    "ingress-public": {},
    "ingress-restricted": BOTH,
    "ingress-internal": {"stageAccess": "internal"},
    "gateway-public": GATEWAY,
    "gateway-restricted": {**GATEWAY, **BOTH},
    "gateway-internal": {**GATEWAY, "stageAccess": "internal"},
}


# Every mode the chart renders in, as the chart's values: the release cycle above, each feature
# that changes what is rendered, both environments' stacks, and plain helm on the chart's own
# defaults. One list, so a new mode is one more entry; tests/chart/test_kube_score.py holds each to
# kube-score.
@dataclass(frozen=True)
class ChartMode:
    name: str
    values: dict


def _config_mode(name: str, config: dict, secret_names: dict | None = None) -> ChartMode:
    return ChartMode(name, chart_values(parse(config), secret_names))


def _stack_mode(stack: str) -> ChartMode:
    config = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return _config_mode(f"{stack}-stack", project_keys(config))


_TWO_SLOTS = SCENARIOS[1].config
_SECRETS = {"blue": "web-blue-secrets-abc123", "green": "web-green-secrets-def456"}
_DIGEST = "@sha256:" + "0123456789abcdef" * 4

CHART_MODES = [
    *(_config_mode(s.name, s.config) for s in SCENARIOS),
    _config_mode("secrets-as-files", {**_TWO_SLOTS, "secretsAs": "file"}, _SECRETS),
    _config_mode("secrets-as-env", {**_TWO_SLOTS, "secretsAs": "env"}, _SECRETS),
    _config_mode("private-registry", {**_TWO_SLOTS, "imagePullSecrets": ["regcred"], "registry": {
        "server": "registry.example.com", "username": "ci", "password": "hunter2"}}),
    _config_mode("tls-and-annotations", {**_TWO_SLOTS, "tlsSecret": "shop-tls",
                                         "ingressAnnotations": {"cert-manager.io/cluster-issuer": "letsencrypt"}}),
    _config_mode("images-by-digest", {**BASE, "blue": _slot(True, "registry.example.com/shop/web" + _DIGEST),
                                      "green": _slot(True, "registry.example.com/shop/web:1.5.0" + _DIGEST)}),
    _config_mode("pull-always", {**_TWO_SLOTS, "imagePullPolicy": "Always"}),
    _config_mode("cpu-limit", {**_TWO_SLOTS, "resources": {"limits": {"cpu": "500m"}}}),
    _config_mode("one-replica", {**BASE, "blue": _slot(True, V1, 1)}),
    _config_mode("network-policy-off", {**_TWO_SLOTS, "networkPolicy": {"enabled": False}}),
    _config_mode("writable-root", {**_TWO_SLOTS, "readOnlyRootFilesystem": False}),
    _config_mode("network-policy-peers", {**_TWO_SLOTS, "networkPolicy": {
        "ingressController": [{"ipBlock": {"cidr": "192.0.2.0/24"}}],
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}}),
    *(_config_mode(f"routing-{name}", {**_TWO_SLOTS, **extra}) for name, extra in ROUTING_MODES.items()),
    _config_mode("routing-both-restricted", {**_TWO_SLOTS, **GATEWAY, **BOTH, "routing": "both"}),
    _stack_mode("staging"),
    _stack_mode("production"),
    ChartMode("plain-helm-defaults", {"blue": {"enabled": True, "image": V1}}),
]
