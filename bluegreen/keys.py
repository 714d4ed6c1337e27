"""The stack config keys: one table (KEYS), one row per key a user can `pulumi config set`.

Each row gives the key's name, its default, how its value is read (a reader that turns the raw
value into the setting, or records what is wrong with it), where secrets live in it, where the
chart gets it, and a one-line description. What the rest of the project knows about keys is
derived from the table: DEFAULTS, OBJECT_KEYS, SECRET_PATHS and config.parse (config.py), the
component's BlueGreenAppArgs fields (component.py), the chart's values that pass a setting as it
is (values.py), Pulumi.yaml's `config:` block (`make pulumi-yaml` writes it from `declared_config`).
The tests hold Settings' fields, Pulumi.yaml and the README's configuration table to it.

Adding a key: a row here, its field in config.Settings, `make pulumi-yaml`, the chart's template
(and values.yaml and values.schema.json when the chart takes it), a row in the README's table.

Values are accepted the way Pulumi stores them: `pulumi config set --path green.enabled true`
may arrive as the boolean true or the string "true", a replica count as 3 or "3". Their
*meaning* is checked strictly: "yes" is not a boolean, 2.5 is not a replica count. Each reader
reads one key's value; the rules across keys are in config.py. Nothing here needs a Pulumi runtime.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import yaml

from .contract import SLOTS, Problem

SECRETS_AS = ("file", "env")  # how pods get their secrets: files under SECRETS_DIR (the CIS benchmark's choice), or env
SECRETS_DIR = "/etc/secrets"
# How the hosts reach the Services: Ingresses (of ingressClass), or Gateway API HTTPRoutes attached
# to an existing Gateway (`gateway`), or both at once: the step between the two, because a direct
# switch drops requests (the controller drops the old routes before it serves the new ones).
ROUTINGS = ("ingress", "gateway", "both")
GATEWAY_KEYS = ("name", "namespace", "sectionName")
# Who reaches the stage host: anyone; only allowed source ranges and/or basic auth (Traefik
# Middlewares); or nobody from outside (no stage route: kubectl port-forward to <app>-stage).
STAGE_ACCESS = ("public", "restricted", "internal")
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
# IfNotPresent: a pod start (a reschedule, a drain during a promotion) does not depend on the
# registry; Always re-pulls a tag on every start (and re-checks the pull credentials).
IMAGE_PULL_POLICIES = ("IfNotPresent", "Always")

# A Docker image reference: [registry[:port]/]path[:tag][@digest], with a tag or a digest.
# A reference without either silently means ":latest", which makes two slots indistinguishable.
_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# A registry is the first path component only when it looks like a host: it has a dot or a port,
# or is localhost (Docker's rule); otherwise "shop/web" is a Docker Hub path.
_HOST = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_REGISTRY = rf"(?:(?:localhost|{_HOST}(?:\.{_HOST})+)(?::[0-9]+)?/|{_HOST}:[0-9]+/)"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}"
# Plain classes and quantifiers only: the same text is a Python, an RE2 (Helm) and an ECMA (JSON
# Schema) pattern; the chart's values.schema.json holds it verbatim (tests/unit/test_one_truth.py).
# Python checks every pattern with fullmatch: its `$` alone also matches before a trailing newline.
IMAGE_PATTERN = rf"^{_REGISTRY}?{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*(?::{_TAG}(?:@{_DIGEST})?|@{_DIGEST})$"
_IMAGE_RE = re.compile(IMAGE_PATTERN)
MAX_IMAGE_NAME = 255  # Docker's limit on a repository name: [registry/]path, without tag and digest
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
DNS_NAME_PATTERN = rf"^{_DNS_LABEL}(?:\.{_DNS_LABEL})*$"
_DNS_NAME_RE = re.compile(DNS_NAME_PATTERN)
MAX_DNS_NAME = 253  # Kubernetes' limit on a DNS name: a host, an IngressClass, a Secret, a Gateway
# Number bounds: (lowest, highest), also in values.schema.json.
REPLICAS = (0, 100)
CONTAINER_PORT = (1, 65535)
_DNS_LABEL_RE = re.compile(rf"^{_DNS_LABEL}$")
# App names become Helm release names and Deployment names (`<app>-green`): keep them short.
_APP_NAME_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?$")
# The quantities accepted (100m, 128Mi, 0.5), and what each suffix multiplies by.
_QUANTITY_SUFFIXES: dict[str, Decimal | int] = {"m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                                                 "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_QUANTITY_RE = re.compile(rf"^[0-9]+(?:\.[0-9]+)?(?:{'|'.join(_QUANTITY_SUFFIXES)})?$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REGISTRY_SERVER_RE = re.compile(rf"^(?:localhost|{_HOST}(?:\.{_HOST})*)(?::[0-9]+)?$")
RESERVED_ENV_PREFIX = "BLUEGREEN_"  # the chart sets BLUEGREEN_SLOT
_ANNOTATION_RE = re.compile(  # [DNS subdomain/]name, name of at most 63 characters
    rf"^(?:{_DNS_LABEL}(?:\.{_DNS_LABEL})*/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$")


def bad(key: str, value: Any, allowed: str, fix: str) -> Problem:
    """One bad config value: the key, the value it got, what is allowed, and the command that fixes it."""
    return Problem(key, f"is {_show(value)}; allowed: {allowed}.", fix)


Read = Callable[["Key", Any, list[Problem]], Any]
"""A key's reader: (the key, its raw value or its default, the problems so far) -> the setting.
A bad value appends a Problem and returns a placeholder; parse raises once every key is read."""


@dataclass(frozen=True)
class Key:
    """One stack config key."""

    name: str  # as `pulumi config set` takes it; BlueGreenAppArgs and Settings call it `field`
    default: Any  # what a stack without the key gets; Pulumi.yaml declares the same
    read: Read = dataclasses.field(repr=False)
    description: str  # one line, what `pulumi config` shows (Pulumi.yaml)
    chart: str | None = None  # the chart value (a dotted path) that gets the setting as it is, if one does
    secret: str | None = None  # where secrets live: "" the whole value, a field name ("password"), None nowhere

    @property
    def field(self) -> str:
        """The snake_case name, of a BlueGreenAppArgs and a Settings field: productionSlot -> production_slot."""
        return re.sub(r"[A-Z]", lambda upper: "_" + upper.group().lower(), self.name)

    @property
    def is_object(self) -> bool:
        """Set with `pulumi config set --path KEY.FIELD ...`; Pulumi hands it over as JSON text."""
        return isinstance(self.default, (dict, list))


@dataclass(frozen=True)
class SlotSettings:
    """One slot's Deployment: off, or an image at a replica count, with the slot's own variables."""

    enabled: bool
    image: str
    replicas: int
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    secrets: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)


# --- one value ----------------------------------------------------------------------------------
# Each reads the value at `path` ("appName", "green.replicas"); a bad one gets a fix that sets `example`.


def _set(path: str, example: Any) -> str:
    return f"pulumi config set {'--path ' if '.' in path else ''}{path} {example}"


def read_text(path: str, value: Any, problems: list[Problem], example: Any = "...") -> str:
    if not isinstance(value, str):
        problems.append(bad(path, value, "a string", _set(path, example)))
        return ""
    return value


def read_bool(path: str, value: Any, problems: list[Problem]) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    problems.append(bad(path, value, "true or false", _set(path, "true")))
    return False


def read_int(path: str, value: Any, problems: list[Problem], low: int, high: int, example: Any) -> int:
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        number = int(value)
    if isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None or not low <= number <= high:
        problems.append(bad(path, value, f"a whole number from {low} to {high}", _set(path, example)))
        return low
    return number


def read_choice(path: str, value: Any, problems: list[Problem], choices: tuple[str, ...]) -> str:
    if value not in choices:
        problems.append(bad(path, value, ", ".join(choices), _set(path, choices[0])))
    return value


def read_matching(path: str, value: Any, problems: list[Problem], pattern: re.Pattern, allowed: str,
                  example: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_DNS_NAME or not pattern.fullmatch(value):  # names all
        problems.append(bad(path, value, allowed, _set(path, example)))
        return value if isinstance(value, str) else ""
    return value


# --- readers for the table: a plain value, with its default as the example of the fix ---------------


def text(key: Key, value: Any, problems: list[Problem]) -> str:
    return read_text(key.name, value, problems, key.default or "...")


def boolean(key: Key, value: Any, problems: list[Problem]) -> bool:
    return read_bool(key.name, value, problems)


def choice(choices: tuple[str, ...]) -> Read:
    return lambda key, value, problems: read_choice(key.name, value, problems, choices)


def integer(low: int, high: int) -> Read:
    return lambda key, value, problems: read_int(key.name, value, problems, low, high, key.default)


def matching(pattern: re.Pattern, allowed: str) -> Read:
    return lambda key, value, problems: read_matching(key.name, value, problems, pattern, allowed, key.default)


def _at_path(read: Callable[[str, Any, list[Problem]], Any]) -> Read:
    """A reader of a value at any path (also used inside the slots), as the key's reader."""
    return lambda key, value, problems: read(key.name, value, problems)


def _health_path(key: Key, value: Any, problems: list[Problem]) -> str:
    path = text(key, value, problems)
    if not path.startswith("/") or any(c.isspace() for c in path):
        problems.append(bad(key.name, path, "an HTTP path starting with '/'", f"pulumi config set {key.name} /healthz"))
    return path


def _tls_secret(key: Key, value: Any, problems: list[Problem]) -> str:
    name = text(key, value, problems)
    if name and not _is_dns_name(name):
        problems.append(bad(key.name, name, "empty (no TLS) or the name of a kubernetes.io/tls Secret",
                            f"pulumi config set {key.name} web-tls"))
    return name


def _slot(key: Key, value: Any, problems: list[Problem]) -> SlotSettings:
    name, defaults = key.name, key.default
    keys = ", ".join(defaults)
    if not isinstance(value, Mapping):
        problems.append(bad(name, value, f"an object with keys {keys}",
                            f"pulumi config set --path {name}.image registry/name:tag"))
        return SlotSettings(enabled=defaults["enabled"], image=defaults["image"], replicas=defaults["replicas"])
    for field_name in sorted(set(value) - set(defaults)):
        problems.append(bad(f"{name}.{field_name}", value[field_name], f"keys {keys}",
                            f"pulumi config rm --path {name}.{field_name}"))
    merged = {**defaults, **value}
    enabled = read_bool(f"{name}.enabled", merged["enabled"], problems)
    image = read_text(f"{name}.image", merged["image"], problems)
    if image and not _IMAGE_RE.fullmatch(image):
        problems.append(bad(f"{name}.image", image,
                            "an image reference with a tag or digest, such as registry/name:1.2.3",
                            f"pulumi config set --path {name}.image registry/name:tag"))
    elif image and len(re.sub(r":[^/]*$", "", image.split("@")[0])) > MAX_IMAGE_NAME:  # without tag and digest
        problems.append(bad(f"{name}.image", image, f"an image whose name ([registry/]path) is at most "
                            f"{MAX_IMAGE_NAME} characters (the runtime cannot pull a longer one)",
                            f"pulumi config set --path {name}.image registry/name:tag"))
    elif enabled and not image:
        problems.append(bad(f"{name}.image", image, f"an image while {name}.enabled is true",
                            f"pulumi config set --path {name}.image registry/name:tag, "
                            f"or pulumi config set --path {name}.enabled false"))
    replicas = read_int(f"{name}.replicas", merged["replicas"], problems, *REPLICAS, defaults["replicas"])
    return SlotSettings(enabled=enabled, image=image, replicas=replicas,
                        env=read_env(f"{name}.env", value.get("env", {}), problems),
                        secrets=read_secrets(f"{name}.secrets", value.get("secrets", {}), problems))


def _variable_name(name: Any) -> bool:
    """A name a pod gets a value under (a variable, or a secret's file): letters, digits and '_',
    not starting with a digit, and not the chart's own prefix."""
    return bool(_ENV_NAME_RE.fullmatch(str(name))) and not str(name).startswith(RESERVED_ENV_PREFIX)


_VARIABLE_NAME = f"letters, digits and '_', not starting with a digit or {RESERVED_ENV_PREFIX}"


def read_env(key: str, value: Any, problems: list[Problem]) -> dict[str, str]:
    """Environment variables: NAME -> text. Numbers and booleans become their text."""
    if not isinstance(value, Mapping):
        problems.append(bad(key, value, "an object of variables {NAME: value}",
                            f"pulumi config set --path {key}.LOG_LEVEL info"))
        return {}
    env = {}
    for name, item in value.items():
        if not _variable_name(name):
            problems.append(bad(f"{key}.{name}", item, f"a variable name of {_VARIABLE_NAME} (the chart's own)",
                                f"pulumi config rm --path {key}.{name}"))
        elif isinstance(item, bool):
            env[str(name)] = "true" if item else "false"
        elif isinstance(item, (str, int, float)):
            env[str(name)] = str(item)
        else:
            problems.append(bad(f"{key}.{name}", item, "text (a number or true/false is taken as text)",
                                f"pulumi config set --path {key}.{name} VALUE"))
    return env


def read_secrets(key: str, value: Any, problems: list[Problem]) -> dict[str, str]:
    """Secrets: NAME -> text, set with `pulumi config set --secret --path KEY.NAME ...`. A name
    is a file name under SECRETS_DIR or a variable name, so both rules apply."""
    if not isinstance(value, Mapping):
        problems.append(bad(key, "(hidden)", "an object of secrets {NAME: value}",
                            f"pulumi config set --secret --path {key}.DB_PASSWORD ..."))
        return {}
    found = {}
    for name, item in value.items():
        if not _variable_name(name):
            problems.append(bad(f"{key}.{name}", "(hidden)", f"a name of {_VARIABLE_NAME}",
                                f"pulumi config rm --path {key}.{name}"))
        elif not isinstance(item, str) or not item:
            problems.append(bad(f"{key}.{name}", "(hidden)", "non-empty text",
                                f"pulumi config set --secret --path {key}.{name} ..."))
        else:
            found[str(name)] = item
    return found


def _registry(key: Key, value: Any, problems: list[Problem]) -> dict[str, str]:
    """A private registry's credentials: {server, username, password}, the password set with
    --secret. The stack turns them into a kubernetes.io/dockerconfigjson Secret."""
    fix = ("pulumi config set --path registry.server registry.example.com; ... registry.username ci; "
           "pulumi config set --secret --path registry.password ...")
    if value in ({}, None):
        return {}
    if not isinstance(value, Mapping) or set(value) != {"server", "username", "password"}:
        shown = sorted(value) if isinstance(value, Mapping) else value
        problems.append(bad("registry", shown, "an object with exactly server, username and password", fix))
        return {}
    server = value["server"]
    if not isinstance(server, str) or not _REGISTRY_SERVER_RE.fullmatch(server):
        problems.append(bad("registry.server", server, "a registry host, with a port if needed", fix))
    for name in ("username", "password"):
        if not isinstance(value[name], str) or not value[name]:
            problems.append(bad(f"registry.{name}", "(hidden)" if name == "password" else value[name],
                                "non-empty text", fix))
    return {name: str(value[name]) for name in ("server", "username", "password")}


GATEWAY_FIX = "pulumi config set --path gateway.name traefik; pulumi config set --path gateway.namespace kube-system"
STAGE_AUTH_FIX = ("pulumi config set --path stageAuth.username tester; "
                  "pulumi config set --secret --path stageAuth.password ...")


def _gateway(key: Key, value: Any, problems: list[Problem]) -> dict[str, str]:
    """The Gateway the HTTPRoutes attach to: {name, namespace, sectionName (a listener; optional)}."""
    if value in ({}, None):
        return {}
    if not isinstance(value, Mapping) or not {"name", "namespace"} <= set(value) <= set(GATEWAY_KEYS):
        shown = sorted(value) if isinstance(value, Mapping) else value
        problems.append(bad("gateway", shown, "an object with name and namespace, and optionally sectionName "
                            "(a listener of that Gateway)", GATEWAY_FIX))
        return {}
    found = {}
    for name in GATEWAY_KEYS:
        if name not in value:
            continue
        item = value[name]
        if not (_is_dns_label(item) if name == "namespace" else _is_dns_name(item)):
            problems.append(bad(f"gateway.{name}", item, "a lowercase DNS name" if name != "namespace" else
                                "a namespace name (a DNS label)", f"pulumi config set --path gateway.{name} ..."))
        else:
            found[name] = item
    return found


def _allow_from(key: Key, value: Any, problems: list[Problem]) -> tuple[str, ...]:
    """Source ranges allowed to reach the stage host: IP addresses or CIDRs (IPv4 or IPv6)."""
    fix = "pulumi config set --path 'stageAllowFrom[0]' 10.0.0.0/8"
    if not isinstance(value, list):
        problems.append(bad("stageAllowFrom", value, "a list of IP addresses or CIDRs", fix))
        return ()
    found = []
    for index, item in enumerate(value):
        if _is_network(item):
            found.append(item)
        else:
            problems.append(bad(f"stageAllowFrom[{index}]", item,
                                "an IP address or a CIDR without host bits, such as 203.0.113.0/24",
                                f"pulumi config set --path 'stageAllowFrom[{index}]' 203.0.113.0/24"))
    return tuple(found)


def _stage_auth(key: Key, value: Any, problems: list[Problem]) -> dict[str, str]:
    """Basic auth in front of the stage host: {username, password}, the password set with --secret.
    The stack turns them into a kubernetes.io/basic-auth Secret <app>-stage-auth."""
    fix = STAGE_AUTH_FIX
    if value in ({}, None):
        return {}
    if not isinstance(value, Mapping) or set(value) != {"username", "password"}:
        shown = sorted(value) if isinstance(value, Mapping) else "(hidden)"
        problems.append(bad("stageAuth", shown, "an object with exactly username and password", fix))
        return {}
    username, password = value["username"], value["password"]
    if not isinstance(username, str) or not username or ":" in username or any(c.isspace() for c in username):
        problems.append(bad("stageAuth.username", username, "non-empty text without ':' or spaces", fix))
    if not isinstance(password, str) or not password:
        problems.append(bad("stageAuth.password", "(hidden)", "non-empty text", fix))
    return {"username": str(username), "password": str(password)}


def _pull_secrets(key: Key, value: Any, problems: list[Problem]) -> tuple[str, ...]:
    """Names of existing kubernetes.io/dockerconfigjson Secrets in the namespace."""
    if not isinstance(value, list) or not all(_is_dns_name(v) for v in value):
        problems.append(bad("imagePullSecrets", value, "a list of Secret names",
                            "pulumi config set --path 'imagePullSecrets[0]' registry-credentials"))
        return ()
    return tuple(value)


def _annotations(key: Key, value: Any, problems: list[Problem]) -> dict[str, str]:
    """Annotations for the Ingress (cert-manager, controller settings): key -> text."""
    if not isinstance(value, Mapping):
        problems.append(bad("ingressAnnotations", value, "an object {annotation: value}",
                            "pulumi config set --path 'ingressAnnotations[\"cert-manager.io/cluster-issuer\"]' "
                            "letsencrypt"))
        return {}
    found = {}
    for name, item in value.items():
        if not _ANNOTATION_RE.fullmatch(str(name)) or not isinstance(item, (str, int, float, bool)):
            problems.append(bad(f"ingressAnnotations.{name}", item,
                                "an annotation key ([prefix/]name, a name of at most 63 characters) with text",
                                f"pulumi config rm --path 'ingressAnnotations[\"{name}\"]'"))
            continue
        found[str(name)] = ("true" if item else "false") if isinstance(item, bool) else str(item)
    return found


def _resources(key: Key, value: Any, problems: list[Problem]) -> dict[str, dict[str, str]]:
    names = ", ".join(RESOURCE_NAMES)
    allowed = f"an object {{requests: {{{names}}}, limits: {{{names}}}}} of Kubernetes quantities"
    fix = "pulumi config set --path resources.requests.cpu 100m"
    if not isinstance(value, Mapping):
        problems.append(bad("resources", value, allowed, fix))
        return key.default
    # Like the slots (and like Helm's own values merge), fields not given keep their defaults.
    result = {kind: dict(quantities) for kind, quantities in key.default.items()}
    given = set()  # (kind, resource) set in the config
    for kind, quantities in value.items():
        if kind not in ("requests", "limits") or not isinstance(quantities, Mapping):
            problems.append(bad(f"resources.{kind}", quantities, allowed,
                                f"pulumi config rm --path resources.{kind}"))
            continue
        result.setdefault(kind, {})
        for resource, quantity in quantities.items():
            if resource not in RESOURCE_NAMES or not _QUANTITY_RE.fullmatch(str(quantity)):
                problems.append(bad(f"resources.{kind}.{resource}", quantity,
                                    f"one of {names}, as a quantity such as 100m or 128Mi", fix))
                continue
            result[kind][resource] = str(quantity)
            given.add((kind, resource))
    for resource, limit in result["limits"].items():  # Kubernetes refuses a request above its limit
        request = result["requests"].get(resource)
        if request is not None and _quantity(request) > _quantity(limit):
            # Name the one the user set: the limit when only it was set, else the request.
            only_limit = ("limits", resource) in given and ("requests", resource) not in given
            kind, shown, other = ("limits", limit, request) if only_limit else ("requests", request, limit)
            problems.append(bad(f"resources.{kind}.{resource}", shown,
                                f"{'at least' if kind == 'limits' else 'at most'} "
                                f"resources.{'requests' if kind == 'limits' else 'limits'}.{resource} ({other}): "
                                "Kubernetes refuses a request above its limit",
                                f"pulumi config set --path resources.{kind}.{resource} {other}"))
    return result


def _quantity(text: str) -> Decimal:
    """A quantity that matched _QUANTITY_RE, as a number (100m -> 0.1, 1Ki -> 1024)."""
    number = text.rstrip("".join(_QUANTITY_SUFFIXES))
    return Decimal(number) * _QUANTITY_SUFFIXES.get(text[len(number):], 1)


def _network_policy(key: Key, value: Any, problems: list[Problem]) -> dict[str, Any]:
    """{enabled, ingressController, from}: fields not given keep their defaults."""
    keys = ", ".join(key.default)
    if not isinstance(value, Mapping):
        problems.append(bad("networkPolicy", value, f"an object with keys {keys}",
                            "pulumi config set --path networkPolicy.enabled true"))
        return key.default
    for name in sorted(set(value) - set(key.default)):
        problems.append(bad(f"networkPolicy.{name}", value[name], f"keys {keys}",
                            f"pulumi config rm --path networkPolicy.{name}"))
    merged = {**key.default, **value}
    enabled = read_bool("networkPolicy.enabled", merged["enabled"], problems)
    controller = _peers("networkPolicy.ingressController", merged["ingressController"], problems)
    if merged["ingressController"] == []:
        # The Ingress is always made: without its controller, prod would be cut off where the
        # policy is enforced. (An empty list would also not reach the chart: the provider drops
        # empty lists from a Release's values, and the chart's default would apply.)
        problems.append(bad("networkPolicy.ingressController", [], "at least one peer: the ingress "
                            "controller's pods, or ipBlock CIDRs for one outside the cluster",
                            "pulumi config set --path 'networkPolicy.ingressController[0].ipBlock.cidr' "
                            "10.0.0.0/16, or pulumi config set --path networkPolicy.enabled false"))
    return {"enabled": enabled, "ingressController": controller,
            "from": _peers("networkPolicy.from", merged["from"], problems)}


_PEER_EXAMPLE = ("[{ipBlock: {cidr: 10.0.0.0/16}}] or [{namespaceSelector: {matchLabels: {...}}, "
                 "podSelector: {matchLabels: {...}}}]")
_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_LABEL_KEY_RE = _ANNOTATION_RE  # same syntax: [DNS subdomain/]name
_LABEL_VALUE_RE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def _peers(key: str, value: Any, problems: list[Problem]) -> list[dict[str, Any]]:
    """NetworkPolicy peers: each an ipBlock {cidr, except}, or a namespaceSelector and/or a
    podSelector ({matchLabels, matchExpressions}), as Kubernetes takes them."""
    fix = f"pulumi config set --path '{key}[0].ipBlock.cidr' 10.0.0.0/16"
    if not isinstance(value, list):
        problems.append(bad(key, value, f"a list of NetworkPolicy peers such as {_PEER_EXAMPLE}", fix))
        return []
    peers = []
    for i, peer in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(peer, Mapping) or not peer or set(peer) - {"ipBlock", "namespaceSelector", "podSelector"} \
                or ("ipBlock" in peer and len(peer) > 1):
            problems.append(bad(where, peer, "a NetworkPolicy peer: an ipBlock alone, or a namespaceSelector "
                                "and/or a podSelector", f"pulumi config rm --path '{where}'"))
            continue
        found = [_peer_problem(where, name, part) for name, part in peer.items()]
        if any(found):
            problems += [p for p in found if p]
            continue
        peers.append(json.loads(json.dumps(peer)))  # plain dicts and lists
    return peers


def _peer_problem(where: str, name: str, part: Any) -> Problem | None:
    path = f"{where}.{name}"
    if name == "ipBlock":
        shape = (isinstance(part, Mapping) and set(part) <= {"cidr", "except"}
                 and isinstance(part.get("except", []), list))
        if not shape or not all(map(_is_cidr_block, [part.get("cidr"), *part.get("except", [])])):
            return bad(path, part, "{cidr, except}: CIDRs such as 10.244.0.1/32 (host bits zero)",
                       f"pulumi config set --path '{path}.cidr' 10.0.0.0/16")
        cidr = _network(part["cidr"])
        for index, text in enumerate(part.get("except", [])):  # Kubernetes' rule for except
            inner = _network(text)
            if not (cidr and inner and inner != cidr and _within(inner, cidr)):
                return bad(f"{path}.except[{index}]", text, f"a range inside cidr {part['cidr']}, smaller than it",
                           f"pulumi config rm --path '{path}.except[{index}]'")
        return None
    if not isinstance(part, Mapping) or set(part) - {"matchLabels", "matchExpressions"}:
        return bad(path, part, "a label selector {matchLabels, matchExpressions} ({} selects all)",
                   f"pulumi config set --path '{path}.matchLabels.app' web")
    labels, expressions = part.get("matchLabels", {}), part.get("matchExpressions", [])
    good_labels = isinstance(labels, Mapping) and all(
        _LABEL_KEY_RE.fullmatch(str(k)) and isinstance(v, str) and _LABEL_VALUE_RE.fullmatch(v)
        for k, v in labels.items())
    good_expressions = isinstance(expressions, list) and all(
        isinstance(e, Mapping) and set(e) <= {"key", "operator", "values"}
        and _LABEL_KEY_RE.fullmatch(str(e.get("key"))) and e.get("operator") in _SELECTOR_OPERATORS
        and isinstance(e.get("values", []), list)
        and all(isinstance(v, str) and _LABEL_VALUE_RE.fullmatch(v) for v in e.get("values", []))
        # Kubernetes' rule: In and NotIn need values, Exists and DoesNotExist take none.
        and bool(e.get("values")) == (e.get("operator") in ("In", "NotIn")) for e in expressions)
    if not good_labels or not good_expressions:
        return bad(path, part, "matchLabels {label: value} and matchExpressions [{key, operator: "
                   f"{'/'.join(_SELECTOR_OPERATORS)}, values}}] with Kubernetes label keys and values "
                   "(values for In and NotIn, none for Exists and DoesNotExist)",
                   f"pulumi config set --path '{path}.matchLabels.app' web")
    return None


def _is_network(text: Any) -> bool:
    """An IP address or a CIDR with no host bits set (IPv4 or IPv6), without an IPv6 zone
    ("fe80::1%eth0": Python takes it, Traefik and Kubernetes do not)."""
    return _network(text) is not None


def _network(text: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if not isinstance(text, str) or "%" in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        return None


def _within(inner: ipaddress.IPv4Network | ipaddress.IPv6Network,
            outer: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False  # another family


def _is_dns_label(text: Any) -> bool:
    return isinstance(text, str) and bool(_DNS_LABEL_RE.fullmatch(text))


def _is_dns_name(text: Any) -> bool:
    """A lowercase DNS name Kubernetes takes (a DNS-1123 subdomain, at most 253 characters)."""
    return isinstance(text, str) and len(text) <= MAX_DNS_NAME and bool(_DNS_NAME_RE.fullmatch(text))


def _is_cidr_block(text: Any) -> bool:
    """A CIDR, prefix written out (what a NetworkPolicy ipBlock takes)."""
    return _is_network(text) and "/" in text


def _slot_default(enabled: bool) -> dict[str, Any]:
    return {"enabled": enabled, "image": "", "replicas": 2, "env": {}, "secrets": {}}


# The keys, in the order `parse` reads them (and reports their problems). The defaults live here
# once: an object set with `--path` replaces Pulumi.yaml's declared default object as a whole, so
# the readers apply per-field defaults from here.
KEYS = (
    Key("appName", "web", matching(_APP_NAME_RE, "a DNS label of 1-40 characters: a-z, 0-9, '-', starting with a "
                                   "letter"),
        "Helm release name and name prefix: Services <appName>-prod and <appName>-stage, Deployments "
        "<appName>-blue/-green.", chart="nameOverride"),
    Key("namespace", "bluegreen", matching(_DNS_LABEL_RE, "a DNS label: a-z, 0-9, '-', at most 63 characters"),
        "Kubernetes namespace of the release."),
    Key("createNamespace", True, boolean,
        "Create the namespace (labelled Pod Security restricted) and delete it on destroy. false: use an existing "
        "one."),
    Key("productionSlot", "blue", choice(SLOTS),
        "The slot the prod Service and the primary host serve: blue or green. Flip it to promote; flip back to "
        "roll back.", chart="productionSlot"),
    Key("blue", _slot_default(True), _slot,
        "The blue slot: {enabled, image (registry/name:tag), replicas, env and secrets (its own)}. Set fields with "
        "`pulumi config set --path blue.image shop/web:1.5.0`.", secret="secrets"),
    Key("green", _slot_default(False), _slot,
        "The green slot: {enabled, image (registry/name:tag), replicas, env, secrets}. "
        "`pulumi config set --path green.enabled true` deploys it.", secret="secrets"),
    Key("containerPort", 8080, integer(*CONTAINER_PORT), "The port the app's container listens on.",
        chart="containerPort"),
    Key("healthPath", "/healthz", _health_path,
        "HTTP path for the readiness probe and the helm test (the liveness probe checks that containerPort "
        "accepts connections).", chart="healthPath"),
    Key("prodHost", "www.example.com", matching(_DNS_NAME_RE, "a lowercase DNS name such as www.example.com"),
        "Primary domain; the Ingress routes it to the prod Service.", chart="ingress.prodHost"),
    Key("stageHost", "stage.example.com", matching(_DNS_NAME_RE, "a lowercase DNS name such as stage.example.com"),
        "Stage domain; the Ingress routes it to the stage Service. Must differ from prodHost.",
        chart="ingress.stageHost"),
    # Traefik: maintained, serves Ingress and Gateway API, and is what the local cluster runs
    # (ingress-nginx was retired upstream in March 2026).
    Key("ingressClass", "traefik", matching(_DNS_NAME_RE, "the name of an IngressClass"),
        "IngressClass of the Ingress (Traefik by default; ingress-nginx was retired upstream in March 2026).",
        chart="ingress.className"),
    Key("ingressAnnotations", {}, _annotations,
        "Annotations of the Ingress, e.g. cert-manager.io/cluster-issuer or controller settings.",
        chart="ingress.annotations"),
    Key("tlsSecret", "", _tls_secret,
        "Name of a kubernetes.io/tls Secret for both hosts; empty for plain HTTP. Ingress routing only (a "
        "Gateway's TLS is its listener's).", chart="ingress.tlsSecretName"),
    Key("routing", "ingress", choice(ROUTINGS),
        "How the hosts reach the Services: ingress (an Ingress per host, of ingressClass), gateway (a Gateway API "
        "HTTPRoute per host, attached to `gateway`), or both: the step between the two, so that a switch drops "
        "no request.", chart="routing"),
    Key("gateway", {}, _gateway,
        "The existing Gateway the HTTPRoutes attach to when routing is gateway or both: {name, namespace, "
        "sectionName (one listener; optional)}.", chart="gateway"),
    # Today's behaviour, and what a dev or staging stack wants; Pulumi.production.yaml sets internal.
    Key("stageAccess", "public", choice(STAGE_ACCESS),
        "Who reaches the stage host: public (anyone), restricted (stageAllowFrom and/or stageAuth; Traefik "
        "Middlewares) or internal (no stage route: port-forward to the stage Service). Pulumi.production.yaml "
        "sets internal.", chart="stageAccess.mode"),
    Key("stageAllowFrom", [], _allow_from,
        "With stageAccess restricted: the source ranges (IPs or CIDRs) allowed to reach the stage host; others "
        "get 403.", chart="stageAccess.allowFrom"),
    Key("stageAuth", {}, _stage_auth,
        "With stageAccess restricted: basic auth {username, password} in front of the stage host, the password "
        "set with --secret; the stack keeps it in a kubernetes.io/basic-auth Secret <appName>-stage-auth.",
        secret="password"),
    Key("env", {}, _at_path(read_env),
        "Environment variables of both slots' pods ({NAME: value}); a slot's own <slot>.env wins. Changing one "
        "that prod runs is refused: set it in the idle slot's env and promote."),
    Key("secrets", {}, _at_path(read_secrets),
        "Secrets of both slots' pods ({NAME: value}), set with `pulumi config set --secret --path "
        "secrets.DB_PASSWORD ...`; a slot's own <slot>.secrets win. Each slot gets them in a Kubernetes Secret "
        "of its own, owned by the stack.", secret=""),
    Key("secretsAs", "file", choice(SECRETS_AS),
        "How pods get their secrets: file (one file per secret under /etc/secrets, read-only) or env "
        "(environment variables).", chart="secrets.as"),
    Key("imagePullSecrets", [], _pull_secrets,
        "Names of existing kubernetes.io/dockerconfigjson Secrets in the namespace, for a private registry."),
    Key("registry", {}, _registry,
        "A private registry's credentials {server, username, password} (the password set with --secret): the "
        "stack makes a kubernetes.io/dockerconfigjson Secret <appName>-registry and the pods pull with it.",
        secret="password"),
    Key("imagePullPolicy", "IfNotPresent", choice(IMAGE_PULL_POLICIES),
        "When nodes pull a slot's image: IfNotPresent (a pod start does not depend on the registry) or Always "
        "(every start pulls, and re-checks the pull credentials).", chart="imagePullPolicy"),
    # Who may reach the app's pods (a NetworkPolicy): the ingress controller and the peers in `from`,
    # as NetworkPolicy peers. By default the ingress controller is an in-cluster Traefik (the default
    # ingressClass), whose pods its Helm chart labels app.kubernetes.io/name=traefik, in any namespace.
    Key("networkPolicy", {
        "enabled": True,
        "ingressController": [
            {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}}},
        ],
        "from": [],
    }, _network_policy,
        "A NetworkPolicy: the app's pods accept traffic on containerPort only from the ingress controller and "
        "the `from` peers (NetworkPolicy peers: ipBlock, or namespaceSelector and/or podSelector). "
        "ingressController: your controller's pods, or ipBlock CIDRs for one outside the cluster. enabled: false "
        "creates none.", chart="networkPolicy"),
    Key("allowProdChange", False, boolean,
        "true lets this update change what the production slot runs in place (image or env) or deploy and "
        "promote a slot at once: a deliberate hotfix that skips stage. Remove it afterwards."),
    # No CPU limit on purpose: a limit throttles the app (CFS quota) even when the node has CPU to spare.
    # Ephemeral storage covers the writable /tmp and the container's logs.
    Key("resources", {
        "requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "64Mi"},
        "limits": {"memory": "256Mi", "ephemeral-storage": "1Gi"},
    }, _resources,
        "Container resources: {requests: {cpu, memory, ephemeral-storage}, limits: {cpu, memory, "
        "ephemeral-storage}}. No CPU limit by default (it throttles the app even when the node has CPU to "
        "spare).", chart="resources"),
    Key("readOnlyRootFilesystem", True, boolean,
        "Run containers with a read-only root filesystem (a writable /tmp is mounted).",
        chart="readOnlyRootFilesystem"),
    Key("helmTimeoutSeconds", 300, integer(30, 3600),
        "How long an update waits for the slots to become ready before Helm rolls it back."),
)

DEFAULTS: dict[str, Any] = {key.name: key.default for key in KEYS}
OBJECT_KEYS = tuple(key.name for key in KEYS if key.is_object)
# Where secrets live in the stack config: each slot's own, the stage's basic auth password, the
# shared ones, the registry password.
SECRET_PATHS = tuple(".".join(filter(None, (key.name, key.secret))) for key in KEYS if key.secret is not None)


def declared_config() -> str:
    """Pulumi.yaml's `config:` block: every key with its type, default and description, so that
    `pulumi config` shows them (`make pulumi-yaml` writes it; a test keeps it current)."""
    lines = ["config:"]
    for key in KEYS:
        kind = {bool: "boolean", int: "integer", str: "string", dict: "object", list: "array"}[type(key.default)]
        lines += [f"  {key.name}:", f"    type: {kind}"]
        if kind == "array":
            lines.append("    items: {type: string}")
        default = yaml.safe_dump(key.default, default_flow_style=True, sort_keys=False, width=1 << 16)
        lines += [f"    default: {default.strip().removesuffix('...').strip()}",
                  f"    description: {json.dumps(key.description)}"]
    return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value) if isinstance(value, (dict, list)) else repr(value)
