"""Generated stack configs and release-tool arguments, valid and invalid (hypothesis strategies).

A generated config is a `ConfigCase`: the raw stack config as Pulumi hands it to the program
(scalar keys as text, the object keys decoded from JSON), the keys set with --secret, what the
stack's last update exported (`before`, for the prod-change and routing guards), and `must_name`:
the top-level keys a refusal must name; empty when the config must deploy.

`must_name` is worked out here, not by bluegreen/config.py: each generated value carries its own
verdict (a value drawn from the good pool is good, from the bad pool bad), and the rules between
keys are written out again below from the README, with Kubernetes' own rules (tests/kube_rules.py)
where the API server has the last word. The tests then hold the program to it.

Shapes mixed in: wrong types, text for booleans and numbers ("true", "3"), unknown keys and typos
inside objects, bad images, hosts, CIDRs and label selectors, boundaries of replicas, ports and
timeouts, secrets kept in plain text, every routing and stageAccess combination (and the ones that
do not go together), and the last update's outputs that the prod-change guard compares with.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from bluegreen.config import DEFAULTS
from tests import kube_rules

# Repeatable in CI: the examples are derived from each test's name, not from a random seed or a
# database of earlier failures, and no deadline (the first example pays for imports).
# BLUEGREEN_GENERATED_EXAMPLES scales every property (e.g. 10 for a ten times longer search).
SCALE = float(os.environ.get("BLUEGREEN_GENERATED_EXAMPLES", "1"))


def generated(examples: int) -> settings:
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


class V(NamedTuple):
    """One generated value: as Pulumi hands it over, whether it is valid on its own, and what it
    means when it is (the parsed value: True for "true", 3 for "3")."""

    raw: Any
    ok: bool
    meaning: Any = None


def good(strategy, meaning=lambda raw: raw):
    return strategy.map(lambda raw: V(raw, True, meaning(raw)))


def bad(strategy):
    return strategy.map(lambda raw: V(raw, False))


@functools.cache  # strategies are built once: a new one is validated again on its first draw
def chance(percent: int):
    """True `percent` times in a hundred (and shrinks towards False)."""
    return st.integers(0, 99).map(lambda n: n >= 100 - percent)


# --- pools: each key's good values and bad values --------------------------------------------------

class Pool(NamedTuple):
    good: Any  # a strategy of V (ok=True, or a verdict worked out from Kubernetes' rules)
    bad: Any  # a strategy of V with ok=False


def pick(draw, pool: Pool, want_bad: bool) -> V:
    return draw(pool.bad if want_bad else pool.good)


TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
PRINTABLE = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
_SHORT_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
# Now and then a label of 50-63 characters, so that names cross Kubernetes' 253.
DNS_LABEL = st.one_of(_SHORT_LABEL, _SHORT_LABEL, _SHORT_LABEL, st.integers(50, 63).map(lambda n: "l" * n))
# Words YAML reads as something other than text (a number, a boolean, null) when a template does
# not quote them: good names all the same.
YAML_WORDS = ("0", "010", "1e3", "1.5", "0x1f", "true", "null", "yes", "on", "n", "y", "off", "no", "false")
# A DNS name: good while Kubernetes takes it as a host or an object name (at most 253 characters).
DNS_NAME = st.one_of(st.lists(DNS_LABEL, min_size=1, max_size=5).map(".".join), st.sampled_from(YAML_WORDS)).map(
    lambda name: V(name, kube_rules.dns_subdomain(name), name))
BAD_DNS_NAMES = ["", "Shop.example.com", "shop_example.com", "shop.example.com.", "*.example.com",
                 "shop..example.com", "-shop.example.com", "shop.example.com\n", " shop.example.com",
                 "shop.example.com/path", "http://shop.example.com", "l" * 64 + ".example.com", "shöp.example.com"]
HOST = Pool(DNS_NAME, bad(st.sampled_from(BAD_DNS_NAMES)))


# --- scalar keys: Pulumi hands them to the program as text ----------------------------------------

def boolean_text() -> Pool:
    return Pool(good(st.sampled_from(["true", "false"]), lambda t: t == "true"),
                bad(st.sampled_from(["True", "FALSE", "yes", "no", "1", "0", "", " true", "on", "null"])))


def whole_text(low: int, high: int) -> Pool:
    number = st.one_of(st.sampled_from([low, high]), st.integers(low, high))
    outside = st.one_of(st.sampled_from([low - 1, high + 1, -1]), st.integers(max_value=low - 1),
                        st.integers(min_value=high + 1))
    return Pool(
        good(st.tuples(number, st.sampled_from(["{}", " {} "])).map(lambda t: t[1].format(t[0])), lambda t: int(t)),
        st.one_of(bad(outside.map(str)),
                  bad(st.sampled_from(["", "abc", f"{low}.0", f"{low}.5", "1e3", "0x10", "3 3", "٣", "true"]))))


@functools.cache
def choice_text(choices: tuple[str, ...]) -> Pool:
    variants = st.sampled_from(choices).flatmap(lambda c: st.sampled_from([c.upper(), c.capitalize(), c + " ",
                                                                           " " + c, c[:-1]]))
    return Pool(good(st.sampled_from(choices)),
                bad(st.one_of(variants, st.sampled_from(["", "null", "none", "default"]))
                    .filter(lambda v: v not in choices)))


APP_NAME = Pool(
    st.one_of(good(st.from_regex(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?", fullmatch=True)),
              good(st.sampled_from([w for w in YAML_WORDS if w[0].isalpha()]))),
    bad(st.sampled_from(["", "Web", "1web", "web-", "-web", "web_app", "web.app", "web\n", "wéb", "a" * 41,
                         "web app"])))
NAMESPACE = Pool(
    st.one_of(good(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True)), good(st.just("n" * 63))),
    bad(st.sampled_from(["", "Shop", "shop_1", "shop.prod", "-shop", "shop-", "n" * 64, "shop\n"])))
HEALTH_PATH = Pool(
    st.one_of(good(st.sampled_from(["/", "/healthz", "/ready?full=1", "/a/b%20c", "/_status/#x"])),
              good(PRINTABLE.map(lambda t: "/" + t))),
    bad(st.sampled_from(["healthz", "", " /healthz", "/health z", "/a\tb", "/healthz\n", "http://x/healthz"])))
TLS_SECRET = Pool(DNS_NAME, bad(st.sampled_from(["Shop_TLS", "shop-tls\n", "tls secret"])))
SCALAR_KEYS = {
    "appName": APP_NAME,
    "namespace": NAMESPACE,
    "createNamespace": boolean_text(),
    "containerPort": whole_text(1, 65535),
    "healthPath": HEALTH_PATH,
    "prodHost": HOST,
    "stageHost": HOST,
    "ingressClass": Pool(DNS_NAME, bad(st.sampled_from(["", "Traefik", "nginx_class"]))),
    "secretsAs": choice_text(("file", "env")),
    "imagePullPolicy": choice_text(("IfNotPresent", "Always")),
    "allowProdChange": boolean_text(),
    "readOnlyRootFilesystem": boolean_text(),
    "helmTimeoutSeconds": whole_text(30, 3600),
}


# --- images ---------------------------------------------------------------------------------------

POOL = ("registry.example.com/shop/web:1.4.0", "registry.example.com/shop/web:1.5.0", "shop/web:2")
_COMPONENT = st.from_regex(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+){0,2}", fullmatch=True)
_TAG = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_DIGEST = st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: "sha256:" + h)
_REGISTRY = st.sampled_from(["", "registry.example.com/", "localhost:5000/", "localhost/", "reg.io:443/",
                             "my-registry:5000/", "Registry.Example.com/"])


@st.composite
def _image(draw) -> V:
    """An image reference with a tag and/or a digest; good while its name is at most 255 characters
    (Docker's references stop there)."""
    path = "/".join(draw(st.lists(_COMPONENT, min_size=1, max_size=3)))
    if draw(chance(3)):
        path = "/".join([path] + ["p" * 60] * draw(st.integers(3, 5)))
    name = draw(_REGISTRY) + path
    ending = draw(st.sampled_from(["tag", "digest", "both"]))
    tag = draw(st.one_of(_TAG, _TAG, _TAG, st.just("t" * 128)))
    ref = name + {"tag": f":{tag}", "digest": "@" + draw(_DIGEST), "both": f":{tag}@" + draw(_DIGEST)}[ending]
    return V(ref, len(name) <= 255, ref)


IMAGE = Pool(
    st.one_of(good(st.sampled_from(POOL)), _image()),
    st.one_of(bad(st.sampled_from(["Shop/Web:1", "shop/web", "web:", ":1", "web:1 ", " web:1", "web:1\n",
                                   "web@sha256:abc", "web:-1", "https://reg.io/web:1", "web::1", "web:" + "a" * 129,
                                   "shop//web:1", "registry.example.com:port/web:1", "web:1.0@sha256:" + "A" * 64])),
              bad(st.sampled_from([3, True, None, ["web:1"]]))))


# --- objects: decoded from JSON -------------------------------------------------------------------

BOOL_VALUE = Pool(good(st.sampled_from([True, False, "true", "false"]), lambda v: v in (True, "true")),
                  bad(st.sampled_from(["True", "yes", 1, 0, None, "", "on"])))


@functools.cache
def whole_value(low: int, high: int) -> Pool:
    number = st.one_of(st.sampled_from([low, high]), st.integers(low, high))
    return Pool(
        good(number.flatmap(lambda n: st.sampled_from([n, str(n), float(n), f" {n}"])), lambda v: int(float(v))),
        bad(st.one_of(st.sampled_from([low - 1, high + 1, 2.5, "2.5", "two", True, None, "", [2]]),
                      st.integers(min_value=high + 1), st.integers(max_value=low - 1))))


ENV_NAME = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda n: not n.startswith("BLUEGREEN_")), st.sampled_from(["y", "N", "ON", "Off", "NULL", "True", "no"]))
BAD_ENV_NAMES = ["1X", "A-B", "BLUEGREEN_SLOT", "BLUEGREEN_X", "A B", "", "A\nB", "é"]
ENV_VALUE = st.one_of(TEXT, st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                      st.booleans())


def env_text(value: Any) -> str:
    """How a variable's value reaches the pod: numbers and booleans as text."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@st.composite
def env_object(draw, want_bad: bool = False) -> V:
    """{NAME: value}, as `env` or `<slot>.env`."""
    found = draw(st.dictionaries(ENV_NAME, ENV_VALUE, max_size=3))
    if not want_bad:
        return V(found, True, {k: env_text(v) for k, v in found.items()})
    kind = draw(st.sampled_from(["not an object", "name", "value"]))
    if kind == "not an object":
        return V(draw(st.sampled_from(["LOG_LEVEL=info", ["LOG_LEVEL"], 3])), False)
    if kind == "name":
        return V({**found, draw(st.sampled_from(BAD_ENV_NAMES)): "x"}, False)
    return V({**found, draw(ENV_NAME): draw(st.sampled_from([None, [1], {"a": 1}]))}, False)


@st.composite
def secrets_object(draw, want_bad: bool = False) -> V:
    """{NAME: non-empty text}, as `secrets` or `<slot>.secrets`."""
    found = draw(st.dictionaries(ENV_NAME, PRINTABLE, min_size=1, max_size=3))
    if not want_bad:
        return V(found, True, found)
    kind = draw(st.sampled_from(["not an object", "name", "value"]))
    if kind == "not an object":
        return V(draw(st.sampled_from(["hunter2", ["DB_PASSWORD"]])), False)
    if kind == "name":
        return V({**found, draw(st.sampled_from(BAD_ENV_NAMES)): "s3cret"}, False)
    return V({**found, draw(ENV_NAME): draw(st.sampled_from(["", 1234, None, ["x"]]))}, False)


SLOT_TYPOS = ["enabeld", "imgae", "Replicas", "image ", "replica", "Enabled", "envs", "secret"]


@st.composite
def slot_object(draw, name: str, prod: bool, want_bad: bool = False, faults: bool = True) -> V:
    """`blue` or `green`: {enabled, image, replicas, env, secrets}; fields left out keep the slot's
    defaults. The production slot is deployed with pods, but for the odd one (with `faults`) that
    is not: a promotion to an empty slot."""
    defaults = DEFAULTS[name]
    if want_bad and draw(chance(15)):
        return V(draw(st.sampled_from(["on", 3, ["web:1"], POOL[0]])), False)
    enabled = not (faults and draw(chance(6))) if prod else draw(st.booleans())
    raw: dict[str, Any] = {}
    ok = True
    if enabled != defaults["enabled"] or draw(chance(70)):
        raw["enabled"] = draw(st.sampled_from([enabled, "true" if enabled else "false"]))
    if enabled or draw(chance(30)):
        image = draw(IMAGE.good)
        raw["image"], ok = image.raw, image.ok
    elif draw(chance(30)):
        raw["image"] = ""
    if draw(chance(50)):
        low = 1 if prod and not (faults and draw(chance(10))) else 0
        raw["replicas"] = draw(whole_value(low, 100).good).raw
    if draw(chance(25)):
        raw["env"] = draw(env_object()).raw
    if draw(chance(25)):
        raw["secrets"] = draw(secrets_object()).raw
    if want_bad:
        kind = draw(st.sampled_from(["enabled", "image", "replicas", "env", "secrets", "typo", "no image"]))
        if kind == "enabled":
            raw["enabled"] = draw(BOOL_VALUE.bad).raw
        elif kind == "image":
            raw["image"] = draw(IMAGE.bad).raw
        elif kind == "replicas":
            raw["replicas"] = draw(whole_value(0, 100).bad).raw
        elif kind in ("env", "secrets"):
            raw[kind] = draw((env_object if kind == "env" else secrets_object)(True)).raw
        elif kind == "typo":
            raw[draw(st.sampled_from(SLOT_TYPOS))] = draw(st.sampled_from([True, "1.5.0", 3]))
        else:  # enabled without an image
            raw["enabled"], raw["image"] = True, ""
        return V(raw, False)
    meaning = {"enabled": raw.get("enabled", defaults["enabled"]) in (True, "true"),
               "image": raw.get("image", defaults["image"]),
               "replicas": int(float(raw["replicas"])) if "replicas" in raw else defaults["replicas"],
               "env": {k: env_text(v) for k, v in raw.get("env", {}).items()},
               "secrets": dict(raw.get("secrets", {}))}
    return V(raw, ok, meaning)


def _quantity():
    return st.one_of(
        st.tuples(st.integers(0, 4096), st.sampled_from(["", "m", "k", "M", "G", "Ki", "Mi", "Gi"]))
        .map(lambda t: f"{t[0]}{t[1]}"),
        st.sampled_from(["0.5", "1.25", "100m", "128Mi", "256Mi", "1Gi", "2Gi", 1, 2]))


@st.composite
def resources_object(draw, want_bad: bool = False) -> V:
    """{requests: {cpu, memory, ephemeral-storage}, limits: {...}}; fields left out keep the
    defaults. Good when Kubernetes takes it: every request at most its limit."""
    raw: dict[str, Any] = {}
    for kind in ("requests", "limits"):
        if draw(chance(60)):
            raw[kind] = draw(st.dictionaries(st.sampled_from(["cpu", "memory", "ephemeral-storage"]), _quantity(),
                                             max_size=3))
    if want_bad:
        kind = draw(st.sampled_from(["kind", "resource", "quantity", "not an object"]))
        if kind == "not an object":
            return V(draw(st.sampled_from(["100m", ["cpu"]])), False)
        if kind == "kind":
            raw[draw(st.sampled_from(["request", "Limits", "max"]))] = {"cpu": "1"}
        elif kind == "resource":
            raw.setdefault("requests", {})[draw(st.sampled_from(["gpu", "CPU", "storage"]))] = "1"
        else:
            raw.setdefault("limits", {})["memory"] = draw(st.sampled_from(["1.5.5", "-1", "100 m", "lots", "", None,
                                                                           "1Mb"]))
        return V(raw, False)
    merged = {kind: {**DEFAULTS["resources"].get(kind, {}), **raw.get(kind, {})} for kind in ("requests", "limits")}
    within = all(kube_rules.quantity(merged["requests"][r]) <= kube_rules.quantity(limit)
                 for r, limit in merged["limits"].items() if r in merged["requests"])
    return V(raw, within, merged)


# --- networks, peers, selectors -------------------------------------------------------------------

@st.composite
def network_text(draw, prefix: bool = True) -> str:
    """A network without host bits (or, when `prefix` is False, sometimes a bare address)."""
    if draw(st.booleans()):
        net = ipaddress.ip_network((draw(st.integers(0, 2**32 - 1)), draw(st.integers(8, 32))), strict=False)
    else:
        net = ipaddress.ip_network((draw(st.integers(0, 2**128 - 1)), draw(st.integers(16, 128))), strict=False)
    if not prefix and net.prefixlen == net.max_prefixlen and draw(st.booleans()):
        return str(net.network_address)
    return str(net)


BAD_NETWORKS = ["10.0.0.1/8", "10.0.0.0/33", "localhost", "", "*", "10.0.0.0/8 ", "fe80::1%eth0", "10.0.0",
                "2001:db8::1/32", "010.0.0.0/8", "0.0.0.0/-1"]


@st.composite
def ip_block(draw, want_bad: bool = False) -> V:
    cidr = draw(network_text())
    net = ipaddress.ip_network(cidr)
    block: dict[str, Any] = {"cidr": cidr}
    if net.prefixlen < net.max_prefixlen and draw(chance(30)):
        inner = net.subnets(new_prefix=min(net.max_prefixlen, net.prefixlen + draw(st.integers(1, 8))))
        first = next(inner)
        block["except"] = [str(first)]
    if want_bad:
        kind = draw(st.sampled_from(["cidr", "except outside", "except equal", "no prefix", "shape"]))
        if kind == "cidr":
            block["cidr"] = draw(st.sampled_from(BAD_NETWORKS))
        elif kind == "except outside":
            outside = "192.0.2.0/24" if net.version == 6 else "2001:db8::/64"  # another family: never inside
            block["except"] = [draw(st.sampled_from([outside, "0.0.0.0/0" if net.version == 4 else "::/0"]))]
        elif kind == "except equal":
            block["except"] = [cidr]
        elif kind == "no prefix":
            block["cidr"] = str(net.network_address)
        else:
            block["ports"] = [80]
    return V(block, kube_rules.ip_block_ok(block))


LABEL_KEY = st.one_of(st.sampled_from(["app", "app.kubernetes.io/name", "kubernetes.io/metadata.name", "team"]),
                      st.from_regex(r"[a-z]([a-z0-9.-]{0,10}[a-z0-9])?", fullmatch=True))
LABEL_VALUE = st.from_regex(r"([A-Za-z0-9]([A-Za-z0-9._-]{0,10}[A-Za-z0-9])?)?", fullmatch=True)
BAD_LABEL_VALUES = ["-x", "x-", "a b", "v" * 64, "é", "x\n"]


@st.composite
def selector(draw, want_bad: bool = False) -> V:
    raw: Any = {}
    if draw(st.booleans()):
        raw["matchLabels"] = draw(st.dictionaries(LABEL_KEY, LABEL_VALUE, max_size=2))
    if draw(chance(40)):
        expressions = []
        for _ in range(draw(st.integers(1, 2))):
            operator = draw(st.sampled_from(kube_rules.OPERATORS))
            item = {"key": draw(LABEL_KEY), "operator": operator}
            if operator in ("In", "NotIn"):
                item["values"] = draw(st.lists(LABEL_VALUE, min_size=1, max_size=2))
            expressions.append(item)
        raw["matchExpressions"] = expressions
    if want_bad:
        kind = draw(st.sampled_from(["In without values", "Exists with values", "operator", "label value",
                                     "label key", "value not a label", "shape"]))
        if kind == "In without values":
            raw["matchExpressions"] = [{"key": "app", "operator": draw(st.sampled_from(["In", "NotIn"]))}]
        elif kind == "Exists with values":
            raw["matchExpressions"] = [{"key": "app", "operator": draw(st.sampled_from(["Exists", "DoesNotExist"])),
                                        "values": ["web"]}]
        elif kind == "operator":
            raw["matchExpressions"] = [{"key": "app", "operator": "Equals", "values": ["web"]}]
        elif kind == "label value":
            raw["matchLabels"] = {"app": draw(st.sampled_from(BAD_LABEL_VALUES))}
        elif kind == "label key":
            raw["matchLabels"] = {draw(st.sampled_from(["-app", "a/b/c", "k" * 64, ""])): "web"}
        elif kind == "value not a label":
            raw["matchExpressions"] = [{"key": "app", "operator": "In",
                                        "values": [draw(st.sampled_from(BAD_LABEL_VALUES))]}]
        else:
            raw = draw(st.sampled_from([{"app": "web"}, {"matchLabels": "app=web"}, "app=web"]))
    return V(raw, kube_rules.selector_ok(raw))


@st.composite
def peer(draw, want_bad: bool = False) -> V:
    kind = draw(st.sampled_from(["ipBlock", "namespaceSelector", "podSelector", "both selectors"]))
    if want_bad and draw(chance(20)):
        return V(draw(st.sampled_from([{}, {"podselector": {}}, "traefik", None,
                                       {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}])), False)
    if kind == "ipBlock":
        block = draw(ip_block(want_bad))
        return V({"ipBlock": block.raw}, block.ok)
    keys = ["namespaceSelector", "podSelector"] if kind == "both selectors" else [kind]
    parts = [draw(selector(want_bad and i == 0)) for i in range(len(keys))]
    return V(dict(zip(keys, [p.raw for p in parts], strict=True)), all(p.ok for p in parts))


@st.composite
def peers(draw, min_size: int, want_bad: bool = False) -> V:
    items = draw(st.lists(peer(), min_size=min_size, max_size=2))
    if want_bad:
        items.insert(draw(st.integers(0, len(items))), draw(peer(True)))
    return V([p.raw for p in items], all(p.ok for p in items))


@st.composite
def network_policy(draw, want_bad: bool = False) -> V:
    raw: Any = {}
    if draw(chance(50)):
        raw["enabled"] = draw(BOOL_VALUE.good).raw
    if draw(chance(50)):
        raw["ingressController"] = draw(peers(1)).raw
    if draw(chance(40)):
        raw["from"] = draw(peers(0)).raw
    if want_bad:
        kind = draw(st.sampled_from(["enabled", "controller peer", "from peer", "no controller", "typo",
                                     "not an object", "not a list"]))
        if kind == "enabled":
            raw["enabled"] = draw(BOOL_VALUE.bad).raw
        elif kind in ("controller peer", "from peer"):
            key = "ingressController" if kind == "controller peer" else "from"
            raw[key] = draw(peers(0 if key == "from" else 1, want_bad=True)).raw
        elif kind == "no controller":
            raw["ingressController"] = []  # prod would be cut off where the policy is enforced
        elif kind == "typo":
            raw[draw(st.sampled_from(["enable", "ingresscontroller", "From"]))] = True
        elif kind == "not a list":
            raw["from"] = {"ipBlock": {"cidr": "10.0.0.0/8"}}
        else:
            raw = draw(st.sampled_from(["off", False, ["traefik"]]))
        return V(raw, False)
    policy_ok = all(kube_rules.peer_ok(p) for key in ("ingressController", "from") for p in raw.get(key, []))
    return V(raw, policy_ok, raw)


@st.composite
def allow_from(draw, want_bad: bool = False) -> V:
    items: Any = draw(st.lists(network_text(prefix=False), min_size=1, max_size=3))
    if want_bad:
        if draw(chance(20)):
            return V(draw(st.sampled_from(["10.0.0.0/8", {"cidr": "10.0.0.0/8"}])), False)
        items.insert(draw(st.integers(0, len(items))), draw(st.sampled_from([*BAD_NETWORKS, 3, None])))
    return V(items, all(kube_rules.network(i) is not None for i in items), items)


@st.composite
def stage_auth(draw, want_bad: bool = False) -> V:
    username = draw(st.one_of(st.sampled_from(["tester", "qa-team", "ci.bot"]),
                              PRINTABLE.filter(lambda u: ":" not in u)))
    raw: Any = {"username": username, "password": draw(PRINTABLE)}
    if want_bad:
        kind = draw(st.sampled_from(["username", "password", "shape"]))
        if kind == "username":
            raw["username"] = draw(st.sampled_from(["", "a:b", "two words", 3, None]))
        elif kind == "password":
            raw["password"] = draw(st.sampled_from(["", None, 1234]))
        else:
            raw = draw(st.sampled_from([{"username": "tester"}, {"user": "t", "password": "p"}, "tester:pw",
                                        {"username": "t", "password": "p", "realm": "x"}, ["tester"]]))
        return V(raw, False)
    return V(raw, True, raw)


@st.composite
def gateway(draw, want_bad: bool = False) -> V:
    raw: Any = {"name": draw(st.sampled_from(["traefik", "public", "edge.gw"])),
                "namespace": draw(st.sampled_from(["kube-system", "edge", "gateways"]))}
    if draw(chance(30)):
        raw["sectionName"] = draw(st.sampled_from(["web", "http", "https-1"]))
    if want_bad:
        kind = draw(st.sampled_from(["name", "namespace", "section", "shape"]))
        if kind == "name":
            raw["name"] = draw(st.sampled_from(["", "Traefik", "gw_1", 3, "g" * 64]))
        elif kind == "namespace":
            raw["namespace"] = draw(st.sampled_from(["", "kube.system", "Edge", None]))
        elif kind == "section":
            raw["sectionName"] = draw(st.sampled_from(["", "Web", "web_1"]))
        else:
            raw = draw(st.sampled_from([{"name": "traefik"}, {"namespace": "edge"}, "traefik",
                                        {"name": "gw", "namespace": "edge", "listener": "web"}]))
        return V(raw, False)
    return V(raw, True, raw)


@st.composite
def registry(draw, want_bad: bool = False) -> V:
    raw: Any = {"server": draw(st.sampled_from(["registry.example.com", "localhost:5000", "reg.io:443", "ghcr.io"])),
                "username": draw(st.sampled_from(["ci", "robot$shop", "deploy-bot"])), "password": draw(PRINTABLE)}
    if want_bad:
        kind = draw(st.sampled_from(["server", "username", "password", "shape"]))
        if kind == "server":
            raw["server"] = draw(st.sampled_from(["https://registry.example.com", "registry.example.com/shop", "",
                                                  "reg_io", 5000]))
        elif kind == "username":
            raw["username"] = draw(st.sampled_from(["", 3, None]))
        elif kind == "password":
            raw["password"] = draw(st.sampled_from(["", None]))
        else:
            raw = draw(st.sampled_from([{"server": "ghcr.io"}, "ghcr.io", ["ghcr.io"],
                                        {"server": "ghcr.io", "username": "u", "password": "p", "email": "e"}]))
        return V(raw, False)
    return V(raw, True, raw)


ANNOTATION_KEY = st.one_of(
    st.sampled_from(["cert-manager.io/cluster-issuer", "traefik.ingress.kubernetes.io/router.tls",
                     "example.com/owner", "note"]),
    st.from_regex(r"[a-z]([a-z0-9.-]{0,10}[a-z0-9])?/[A-Za-z0-9]([A-Za-z0-9_.-]{0,20}[A-Za-z0-9])?", fullmatch=True))


@st.composite
def annotations(draw, want_bad: bool = False) -> V:
    raw: Any = draw(st.dictionaries(ANNOTATION_KEY, st.one_of(TEXT, st.integers(), st.booleans()),
                                    min_size=1, max_size=2))
    if want_bad:
        kind = draw(st.sampled_from(["key", "value", "not an object"]))
        if kind == "not an object":
            return V(draw(st.sampled_from(["cert-manager.io/cluster-issuer=letsencrypt", ["x"]])), False)
        if kind == "key":
            raw[draw(st.sampled_from(["-x", "a/b/c", "k" * 64, "example.com/", "/x", "", "Example.com/x"]))] = "v"
        else:
            raw[draw(ANNOTATION_KEY)] = draw(st.sampled_from([None, ["a"], {"a": 1}]))
        return V(raw, False)
    return V(raw, all(kube_rules.qualified_name(k) for k in raw), raw)


@st.composite
def pull_secrets(draw, want_bad: bool = False) -> V:
    names = [v.raw for v in draw(st.lists(DNS_NAME, min_size=1, max_size=2))]
    if want_bad:
        bad_item = draw(st.sampled_from(["Reg_Cred", "", None, 3, {"name": "regcred"}, "regcred\n"]))
        return V(draw(st.sampled_from([names + [bad_item], "regcred"])), False)
    return V(names, all(kube_rules.dns_subdomain(n) for n in names), names)


# --- a whole stack config -------------------------------------------------------------------------

OBJECT_KEYS = {"env": env_object, "secrets": secrets_object, "resources": resources_object,
               "networkPolicy": network_policy, "registry": registry, "imagePullSecrets": pull_secrets}
OBJECT_CHANCE = {"env": 30, "secrets": 25, "resources": 25, "networkPolicy": 25, "registry": 15, "imagePullSecrets": 15}
ROUTING_KEYS = ("productionSlot", "routing", "gateway", "tlsSecret", "ingressAnnotations", "stageAccess",
                "stageAllowFrom", "stageAuth")
UNKNOWN_KEYS = ["productoinSlot", "replicas", "image", "blue.image", "stageHosts", "prodhost", "ProductionSlot",
                "tls", "networkpolicy"]
SECRET_PLACES = ("secrets", "blue.secrets", "green.secrets", "registry.password", "stageAuth.password")


@dataclass
class ConfigCase:
    raw: dict[str, Any]
    secret_keys: tuple[str, ...]
    before: dict[str, Any] | None  # the last update's outputs: {"slots", "secretDigests", "routing"}
    must_name: frozenset[str] = frozenset()  # the keys a refusal must name; empty: the config deploys
    meaning: dict[str, Any] = field(default_factory=dict)  # per key, what it means (None: bad)

    @property
    def production_slot(self) -> str:
        return self.meaning["productionSlot"]


@st.composite
def config_cases(draw, faults: bool = True) -> ConfigCase:
    """A stack config. With `faults`, more than half have one to three keys bad on their own, and
    now and then keys that do not go together, secrets in plain text, or a last update whose
    guards refuse the change; without, every key is good."""
    bad_keys: set[str] = set()
    if faults and draw(chance(55)):
        bad_keys = draw(st.sets(st.sampled_from([*SCALAR_KEYS, *OBJECT_KEYS, *ROUTING_KEYS, "blue", "green",
                                                 "unknown"]), min_size=1, max_size=3))
    raw: dict[str, Any] = {}
    values: dict[str, V] = {}

    def put(key: str, value: V) -> None:
        raw[key], values[key] = value.raw, value

    for key, pool in SCALAR_KEYS.items():
        if key in bad_keys or draw(chance(30)):
            put(key, pick(draw, pool, key in bad_keys))
    prod = draw(st.sampled_from(["blue", "green"]))
    if "productionSlot" in bad_keys:
        put("productionSlot", pick(draw, choice_text(("blue", "green")), True))
    elif prod == "green" or draw(st.booleans()):
        put("productionSlot", V(prod, True, prod))
    for slot in ("blue", "green"):
        if slot in bad_keys or slot == prod or draw(chance(70)):
            put(slot, draw(slot_object(slot, slot == prod, want_bad=slot in bad_keys, faults=faults)))
    for key, strategy in OBJECT_KEYS.items():
        if key in bad_keys or draw(chance(OBJECT_CHANCE[key])):
            put(key, draw(strategy(key in bad_keys)))

    # Routing and the stage's protection: keys that go together, and (with faults) now and then not.
    mismatch = chance(10) if faults else st.just(False)
    routing = draw(st.sampled_from(["ingress", "gateway", "both"]))
    if "routing" in bad_keys:
        put("routing", pick(draw, choice_text(("ingress", "gateway", "both")), True))
    elif routing != "ingress" or draw(st.booleans()):
        put("routing", V(routing, True, routing))
    if "gateway" in bad_keys or (routing != "ingress") != draw(mismatch):
        put("gateway", draw(gateway("gateway" in bad_keys)))
    for key, pool in (("tlsSecret", TLS_SECRET), ("ingressAnnotations", Pool(annotations(), annotations(True)))):
        wanted = draw(chance(20)) if routing != "gateway" else draw(mismatch)
        if key in bad_keys or wanted:
            put(key, pick(draw, pool, key in bad_keys))
    access = draw(st.sampled_from(["public", "restricted", "internal"]))
    if "stageAccess" in bad_keys:
        put("stageAccess", pick(draw, choice_text(("public", "restricted", "internal")), True))
    elif access != "public" or draw(st.booleans()):
        put("stageAccess", V(access, True, access))
    which = draw(st.sampled_from([("stageAllowFrom",), ("stageAuth",), ("stageAllowFrom", "stageAuth")]))
    for key, strategy in (("stageAllowFrom", allow_from), ("stageAuth", stage_auth)):
        if key in bad_keys or (access == "restricted" and key in which) != draw(mismatch):
            put(key, draw(strategy(key in bad_keys)))
    if "unknown" in bad_keys:
        put(draw(st.sampled_from(UNKNOWN_KEYS)), V(draw(st.sampled_from(["green", True, "3"])), False))

    # The keys set with --secret: those that hold secrets (with faults, now and then not one of
    # them: a secret in plain text), and now and then another one.
    holders = {place.split(".")[0] for place, value in secret_values(raw) if value}
    secret_keys = {key for key in holders if not faults or not draw(chance(8))}
    if raw and draw(chance(10)):
        secret_keys.add(draw(st.sampled_from(sorted(raw))))
    meaning = {key: (values[key].meaning if values[key].ok else None) if key in values else DEFAULTS[key]
               for key in DEFAULTS}
    before = draw(last_update(meaning)) if faults and draw(chance(45)) else None
    case = ConfigCase(raw, tuple(sorted(secret_keys)), before, meaning=meaning)
    case.must_name = frozenset(must_name(case, values))
    return case


def secret_values(raw: dict[str, Any]) -> list[tuple[str, Any]]:
    """(place, value) of each place secrets live in a raw config; None where unset."""
    found = []
    for place in SECRET_PLACES:
        value: Any = raw
        for part in place.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        found.append((place, value))
    return found


def digest(value: str) -> str:
    """How the stack's secretDigests output records a secret's value."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def effective(meaning: dict[str, Any], slot: str, kind: str) -> dict[str, str] | None:
    """What a slot's pods get of `kind` (env or secrets): the shared ones, then the slot's own."""
    shared, own = meaning.get(kind), (meaning.get(slot) or {}).get(kind)
    if shared is None or own is None:
        return None
    return {**shared, **own}


@st.composite
def last_update(draw, meaning: dict[str, Any]) -> dict[str, Any]:
    """The outputs of the stack's last update: mostly what this config runs (then nothing changes
    for prod), sometimes another image, variable or secret, an older stack's shapes (no env, no
    secretDigests, no routing), or a slot the last update did not deploy."""
    slots: dict[str, Any] = {}
    digests: dict[str, Any] = {}
    for slot in ("blue", "green"):
        now = meaning.get(slot)
        if now is None or not now["enabled"] or draw(chance(12)):
            slots[slot] = None if now is None or draw(chance(70)) else {"image": draw(st.sampled_from(POOL))}
            digests[slot] = None
            continue
        record: dict[str, Any] = {"image": now["image"] if draw(chance(80)) else draw(st.sampled_from(POOL))}
        env = effective(meaning, slot, "env") or {}
        if draw(chance(85)):  # a stack deployed before slots exported their env has none
            record["env"] = dict(env) if draw(chance(85)) else {**env, "OLD_FLAG": "on"}
        slots[slot] = record
        digests[slot] = {k: digest(v) for k, v in (effective(meaning, slot, "secrets") or {}).items()}
        if draw(chance(15)):
            digests[slot]["ROTATED"] = digest("old value")
    if not any(slots.values()):  # an update always deployed its production slot
        slots[draw(st.sampled_from(["blue", "green"]))] = {"image": draw(st.sampled_from(POOL))}
    outputs: dict[str, Any] = {"slots": slots}
    if draw(chance(85)):
        outputs["secretDigests"] = digests
    if draw(chance(80)):
        outputs["routing"] = draw(st.sampled_from(["ingress", "gateway", "both", None]))
    return outputs


def must_name(case: ConfigCase, values: dict[str, V]) -> set[str]:
    """The keys a refusal must name: each key bad on its own; then the rules between keys, as the
    README states them; then, for a config with no other problem, the last update's guards."""
    named = {key for key, value in values.items() if not value.ok}
    m, raw = case.meaning, case.raw
    if raw.get("stageHost", DEFAULTS["stageHost"]) == raw.get("prodHost", DEFAULTS["prodHost"]):
        named.add("stageHost")  # the stage host must differ from prod's
    for slot in ("blue", "green"):  # a deployed slot needs an image (blue is deployed by default)
        if m[slot] is not None and m[slot]["enabled"] and not m[slot]["image"]:
            named.add(slot)
    prod = m["productionSlot"]
    if prod is not None and m[prod] is not None:  # prod needs a deployed slot with an image and pods
        slot = m[prod]
        if not slot["enabled"] or not slot["image"] or slot["replicas"] == 0:
            named.add(prod)
    routing = m["routing"]
    if routing is not None:  # a Gateway exactly when there are HTTPRoutes; no Ingress keys without Ingresses
        if m["gateway"] is not None and bool(m["gateway"]) != (routing in ("gateway", "both")):
            named.add("gateway")
        if routing == "gateway":
            named.update(key for key in ("tlsSecret", "ingressAnnotations") if key in values and raw[key])
    access = m["stageAccess"]
    if access is not None and m["stageAllowFrom"] is not None and m["stageAuth"] is not None:
        if access == "restricted" and not m["stageAllowFrom"] and not m["stageAuth"]:
            named.add("stageAccess")  # restricted needs source ranges or basic auth, ...
        if access != "restricted":  # ... and they need restricted
            named.update(key for key in ("stageAllowFrom", "stageAuth") if m[key])
    for place, value in secret_values(raw):
        if value and place.split(".")[0] not in case.secret_keys:
            named.add(place.split(".")[0])  # a secret kept in plain text
    if named or case.before is None:
        return named
    return _guard_names(m, case.before)


def _guard_names(m: dict[str, Any], before: dict[str, Any]) -> set[str]:
    """Prod only gets what a slot already ran (unless allowProdChange); routing changes only
    through both."""
    named: set[str] = set()
    prod = m["productionSlot"]
    was = (before.get("slots") or {}).get(prod)
    if not m["allowProdChange"]:
        slot = m[prod]
        if was is None:
            named.add("productionSlot")
        else:
            if was.get("image") != slot["image"]:
                named.add(prod)
            if was.get("env") is not None:
                env = effective(m, prod, "env") or {}
                for var in set(was["env"]) | set(env):
                    if was["env"].get(var) != env.get(var):
                        named.add(prod if var in slot["env"] or var not in m["env"] else "env")
            old = (before.get("secretDigests") or {}).get(prod)
            if old is not None:
                now = {k: digest(v) for k, v in (effective(m, prod, "secrets") or {}).items()}
                for name in set(old) | set(now):
                    if old.get(name) != now.get(name):
                        named.add(prod if name in slot["secrets"] or name not in m["secrets"] else "secrets")
    if {before.get("routing") or "ingress", m["routing"]} == {"ingress", "gateway"}:
        named.add("routing")
    return named


# --- the release tool's arguments ------------------------------------------------------------------

CHECK_URLS = ["{url}/healthz", "{url}/", "{url}", "{url}/fail", "{url}/healthz?full=1", "http://other.example/{url}",
              "{url", "{url}}", "{{url}}", "ftp://{url}", "", "{url}/ path", "{url}/\n", "{url}/é", "http://[::1/x",
              "http://127.0.0.1:1/healthz", "{url}/fail-on-prod", "https://{url}", "{url}/%zz", "{url}/#frag"]
CHECK_CMDS = ["true", "false", "exit 3", 'test "$BLUEGREEN_TARGET" = stage', 'test -n "$BLUEGREEN_SLOT"']
SLOT_ARGS = ["blue", "green", "purple", "", "Blue", "prod"]
NUMBER_ARGS = ["0", "1", "2", "3", "100", "101", "-1", "1000000", "abc", "2.5", "", " 3", "0x3", "1e2"]
STACK_ARGS = ["dev", "production", "org/bluegreen/dev", "../escape", "a b", "", "dev\n", "x" * 120, "-dev", "é"]
APP_ARGS = ["web", "api", "Web", "", "a" * 41, "../x", "web\n"]


@st.composite
def image_arg(draw) -> str:
    value = draw(st.one_of(IMAGE.good, IMAGE.bad))
    return value.raw if isinstance(value.raw, str) else str(value.raw)


@st.composite
def release_argv(draw) -> list[str]:
    """One `bluegreen` command line: a command, its arguments and options, valid or not."""
    command = draw(st.sampled_from(["status", "deploy", "deploy", "promote", "promote", "promote", "rollback",
                                    "retire", "retire", "repair", "recover", "garbage"]))
    argv: list[str]
    if command == "deploy":
        argv = ["deploy", draw(image_arg())]
        if draw(chance(30)):
            argv.append("--replace")
        if draw(chance(40)):
            argv += ["--replicas", draw(st.sampled_from(NUMBER_ARGS))]
    elif command == "promote":
        argv = ["promote"]
        if draw(chance(60)):  # half the time one that passes on stage and fails on prod
            argv += ["--check-url", draw(st.one_of(st.just("{url}/fail-on-prod"), st.sampled_from(CHECK_URLS)))]
        if draw(chance(30)):
            argv += ["--check-cmd", draw(st.one_of(st.just(CHECK_CMDS[3]), st.sampled_from(CHECK_CMDS)))]
    elif command == "retire":
        argv = ["retire"]
        if draw(chance(40)):
            argv += ["--slot", draw(st.sampled_from(SLOT_ARGS))]
        if draw(chance(40)):
            argv += ["--keep-replicas", draw(st.sampled_from(NUMBER_ARGS))]
    elif command == "garbage":
        argv = draw(st.sampled_from([["deploy"], ["promte"], [], ["deploy", "web:1", "--replicas"],
                                     ["retire", "--slot"], ["status", "extra"], ["promote", "--check-url"],
                                     ["deploy", "web:1", "--replicas", "3", "--replicas", "x"], ["--json"]]))
    else:
        argv = [command]
    if draw(chance(20)):
        argv += ["--stack", draw(st.sampled_from(STACK_ARGS))]
    if draw(chance(15)):
        argv += ["--app", draw(st.sampled_from(APP_ARGS))]
    if draw(chance(70)):
        argv.insert(draw(st.integers(0, len(argv))) if draw(chance(10)) else len(argv), "--json")
    return argv
