"""Stack config -> typed, validated settings.

This is the product's user interface: every key a user can `pulumi config set` is read here,
and every error message a user can get from bad config is written here. Nothing in this module
needs a Pulumi runtime, so each rule is tested as a plain function.

Values are accepted the way Pulumi stores them: `pulumi config set --path green.enabled true`
may arrive as the boolean true or the string "true", a replica count as 3 or "3". Their
*meaning* is checked strictly: "yes" is not a boolean, 2.5 is not a replica count.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypedDict

from .contract import PROJECT, SLOTS, Problem, other_slot

# Set with `pulumi config set --path KEY.FIELD ...`; Pulumi hands them over as JSON text.
OBJECT_KEYS = ("blue", "green", "resources", "env", "secrets", "ingressAnnotations", "imagePullSecrets", "registry",
               "networkPolicy", "gateway", "stageAllowFrom", "stageAuth")
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


class SlotDefaults(TypedDict):
    enabled: bool
    image: str
    replicas: int
    env: dict[str, str]
    secrets: dict[str, str]


# Defaults live here once. Pulumi.yaml declares the same defaults for `pulumi config` users
# (a test keeps the two in step): an object set with `--path` replaces the declared default
# object as a whole, so per-field defaults must be applied here anyway.
SLOT_DEFAULTS: dict[str, SlotDefaults] = {
    "blue": {"enabled": True, "image": "", "replicas": 2, "env": {}, "secrets": {}},
    "green": {"enabled": False, "image": "", "replicas": 2, "env": {}, "secrets": {}},
}
# No CPU limit on purpose: a limit throttles the app (CFS quota) even when the node has CPU to spare.
# Ephemeral storage covers the writable /tmp and the container's logs.
RESOURCES_DEFAULT = {
    "requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "64Mi"},
    "limits": {"memory": "256Mi", "ephemeral-storage": "1Gi"},
}
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
# IfNotPresent: a pod start (a reschedule, a drain during a promotion) does not depend on the
# registry; Always re-pulls a tag on every start (and re-checks the pull credentials).
IMAGE_PULL_POLICIES = ("IfNotPresent", "Always")
# Who may reach the app's pods (a NetworkPolicy): the ingress controller and the peers in `from`,
# as NetworkPolicy peers. By default the ingress controller is an in-cluster Traefik (the default
# ingressClass), whose pods its Helm chart labels app.kubernetes.io/name=traefik, in any namespace.
NETWORK_POLICY_DEFAULT: dict[str, Any] = {
    "enabled": True,
    "ingressController": [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}}},
    ],
    "from": [],
}
DEFAULTS: dict[str, Any] = {
    "appName": "web",
    "namespace": "bluegreen",
    "createNamespace": True,
    "productionSlot": "blue",
    "blue": SLOT_DEFAULTS["blue"],
    "green": SLOT_DEFAULTS["green"],
    "containerPort": 8080,
    "healthPath": "/healthz",
    "prodHost": "www.example.com",
    "stageHost": "stage.example.com",
    # Traefik: maintained, serves Ingress and Gateway API, and is what the local cluster runs
    # (ingress-nginx was retired upstream in March 2026).
    "ingressClass": "traefik",
    "ingressAnnotations": {},
    "tlsSecret": "",
    "routing": "ingress",
    "gateway": {},
    # Today's behaviour, and what a dev or staging stack wants; Pulumi.production.yaml sets internal.
    "stageAccess": "public",
    "stageAllowFrom": [],
    "stageAuth": {},
    "env": {},
    "secrets": {},
    "secretsAs": "file",
    "imagePullSecrets": [],
    "registry": {},
    "imagePullPolicy": "IfNotPresent",
    "networkPolicy": NETWORK_POLICY_DEFAULT,
    "allowProdChange": False,
    "resources": RESOURCES_DEFAULT,
    "readOnlyRootFilesystem": True,
    "helmTimeoutSeconds": 300,
}

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


class ConfigError(ValueError):
    """The stack config cannot be deployed. Raised before any resource is registered."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = [f"{len(problems)} problem(s) in the stack config; nothing was changed."]
        lines += [f"- {p}" for p in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class SlotSettings:
    """One slot's Deployment: off, or an image at a replica count, with the slot's own variables."""

    enabled: bool
    image: str
    replicas: int
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Settings:
    """Everything the program needs, validated."""

    app_name: str
    namespace: str
    create_namespace: bool
    production_slot: str
    slots: Mapping[str, SlotSettings]
    container_port: int
    health_path: str
    prod_host: str
    stage_host: str
    ingress_class: str
    tls_secret: str
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    read_only_root_filesystem: bool = True
    helm_timeout_seconds: int = 300
    env: Mapping[str, str] = field(default_factory=dict)  # both slots'; a slot's own env wins
    ingress_annotations: Mapping[str, str] = field(default_factory=dict)
    allow_prod_change: bool = False
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)  # both slots'; a slot's own win
    secrets_as: str = "file"
    image_pull_secrets: tuple[str, ...] = ()
    registry: Mapping[str, str] = field(default_factory=dict, repr=False)  # {server, username, password} or {}
    image_pull_policy: str = "IfNotPresent"
    network_policy: Mapping[str, Any] = field(default_factory=lambda: NETWORK_POLICY_DEFAULT)
    routing: str = "ingress"
    gateway: Mapping[str, str] = field(default_factory=dict)  # {name, namespace, sectionName?} under gateway
    stage_access: str = "public"
    stage_allow_from: tuple[str, ...] = ()
    stage_auth: Mapping[str, str] = field(default_factory=dict, repr=False)  # {username, password} or {}

    @property
    def stage_auth_secret(self) -> str:
        """The name of the kubernetes.io/basic-auth Secret the stack makes from `stageAuth`; empty without one."""
        return f"{self.app_name}-stage-auth" if self.stage_auth else ""

    @property
    def registry_secret(self) -> str:
        """The name of the pull secret the stack makes from `registry`; empty without one."""
        return f"{self.app_name}-registry" if self.registry else ""

    @property
    def stage_slot(self) -> str:
        return other_slot(self.production_slot)

    def slot(self, name: str) -> SlotSettings:
        return self.slots[name]

    def slot_env(self, name: str) -> dict[str, str]:
        """The variables a slot's pods get: the shared ones, overridden by the slot's own."""
        return {**self.env, **self.slots[name].env}

    def slot_secrets(self, name: str) -> dict[str, str]:
        """The secrets a slot's pods get: the shared ones, overridden by the slot's own."""
        return {**self.secrets, **self.slots[name].secrets}

    def secret_digests(self, name: str) -> dict[str, str] | None:
        """Per secret of a slot, a digest of its value: how the prod guard sees a secret change
        without keeping the value. Exported only as a Pulumi secret. None: no Deployment."""
        if not self.slots[name].enabled:
            return None
        return {key: hashlib.sha256(value.encode()).hexdigest()[:16] for key, value in self.slot_secrets(name).items()}

    def deployed(self, name: str) -> dict[str, Any] | None:
        """What a slot runs, as the stack exports it (`slots`) and the prod guard compares it:
        None when the slot has no Deployment."""
        state = self.slots[name]
        return {"image": state.image, "env": self.slot_env(name)} if state.enabled else None

    def url(self, role: str) -> str:
        """Where the Ingress or the Gateway serves `role` ("prod" or "stage"); empty for an internal stage."""
        if role == "stage" and self.stage_access == "internal":
            return ""
        host = self.prod_host if role == "prod" else self.stage_host
        return f"{'https' if self.tls_secret else 'http'}://{host}/"


def parse(raw: Mapping[str, Any], before: Mapping[str, Any] | None = None,
          encrypted: Collection[str] | None = None) -> Settings:
    """Turn raw stack config (keys without the `bluegreen:` prefix) into Settings.

    `before`: what each slot ran after the stack's last update (its `slots` output, with the
    `secretDigests` output under the key "secretDigests" and the `routing` output under "routing"),
    if any; then the production slot may only get what a slot already ran (see
    _prod_change_problems), and routing changes only through both (see _routing_switch_problems).
    `encrypted`: the keys Pulumi keeps encrypted (set with --secret), when known; then secrets
    stored in plain text are refused.
    Collects every problem before raising, so one `pulumi up` shows them all.
    """
    problems: list[Problem] = []
    for key in sorted(set(raw) - set(DEFAULTS)):
        problems.append(bad(key, raw[key], "one of " + ", ".join(DEFAULTS), f"pulumi config rm {key}"))
    get = _Reader(raw, problems)

    app_name = get.matching("appName", _APP_NAME_RE,
                            "a DNS label of 1-40 characters: a-z, 0-9, '-', starting with a letter")
    namespace = get.matching("namespace", _DNS_LABEL_RE, "a DNS label: a-z, 0-9, '-', at most 63 characters")
    production_slot = get.one_of("productionSlot", SLOTS)
    slots = {name: _parse_slot(name, raw.get(name, SLOT_DEFAULTS[name]), problems) for name in SLOTS}
    prod_host = get.matching("prodHost", _DNS_NAME_RE, "a lowercase DNS name such as www.example.com")
    stage_host = get.matching("stageHost", _DNS_NAME_RE, "a lowercase DNS name such as stage.example.com")
    if prod_host and prod_host == stage_host:
        problems.append(bad("stageHost", stage_host, f"a host other than prodHost ({prod_host})",
                                f"pulumi config set stageHost stage.{prod_host}"))
    tls_secret = get.text("tlsSecret")
    if tls_secret and not _is_dns_name(tls_secret):
        problems.append(bad("tlsSecret", tls_secret, "empty (no TLS) or the name of a kubernetes.io/tls Secret",
                                "pulumi config set tlsSecret web-tls"))
    health_path = get.text("healthPath")
    if not health_path.startswith("/") or any(c.isspace() for c in health_path):
        problems.append(bad("healthPath", health_path, "an HTTP path starting with '/'",
                                "pulumi config set healthPath /healthz"))

    settings = Settings(
        app_name=app_name,
        namespace=namespace,
        create_namespace=get.boolean("createNamespace"),
        production_slot=production_slot,
        slots=slots,
        container_port=get.integer("containerPort", *CONTAINER_PORT),
        health_path=health_path,
        prod_host=prod_host,
        stage_host=stage_host,
        ingress_class=get.matching("ingressClass", _DNS_NAME_RE, "the name of an IngressClass"),
        tls_secret=tls_secret,
        resources=_parse_resources(raw.get("resources", RESOURCES_DEFAULT), problems),
        read_only_root_filesystem=get.boolean("readOnlyRootFilesystem"),
        helm_timeout_seconds=get.integer("helmTimeoutSeconds", 30, 3600),
        env=_parse_env("env", raw.get("env", {}), problems),
        ingress_annotations=_parse_annotations(raw.get("ingressAnnotations", {}), problems),
        allow_prod_change=get.boolean("allowProdChange"),
        secrets=_parse_secrets("secrets", raw.get("secrets", {}), problems),
        secrets_as=get.one_of("secretsAs", SECRETS_AS),
        image_pull_secrets=_parse_pull_secrets(raw.get("imagePullSecrets", []), problems),
        registry=_parse_registry(raw.get("registry", {}), problems),
        image_pull_policy=get.one_of("imagePullPolicy", IMAGE_PULL_POLICIES),
        network_policy=_parse_network_policy(raw.get("networkPolicy", NETWORK_POLICY_DEFAULT), problems),
        routing=get.one_of("routing", ROUTINGS),
        gateway=_parse_gateway(raw.get("gateway", {}), problems),
        stage_access=get.one_of("stageAccess", STAGE_ACCESS),
        stage_allow_from=_parse_allow_from(raw.get("stageAllowFrom", []), problems),
        stage_auth=_parse_stage_auth(raw.get("stageAuth", {}), problems),
    )
    problems += _routing_problems(settings)
    if encrypted is not None:
        problems += _plaintext_secret_problems(raw, encrypted)
    if production_slot in SLOTS:
        problems += _production_slot_problems(production_slot, slots[production_slot])
    if not problems and before is not None:
        problems += _prod_change_problems(settings, before) + _routing_switch_problems(settings, before)
    if problems:
        raise ConfigError(problems)
    return settings


def stack_config(namespace: str = PROJECT) -> dict[str, Any]:
    """One app's keys of the running Pulumi program's stack config, not yet validated.

    A stack with one app keeps its keys in this project's namespace (`bluegreen:productionSlot`).
    A program with several apps gives each its own namespace, named like the app
    (`pulumi config set api:productionSlot green`; `bluegreen --app api ...`).
    """
    from pulumi.runtime import config as runtime_config  # the only Pulumi import in this module

    return project_keys({**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}, namespace)


def encrypted_keys(namespace: str = PROJECT) -> set[str]:
    """The app's keys that Pulumi keeps encrypted in the stack config (set with --secret)."""
    from pulumi.runtime import config as runtime_config

    secret = set(runtime_config.get_config_secret_keys_env())
    prefix = namespace + ":"
    return {key[len(prefix):] for key in {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
            if key.startswith(prefix) and (key in secret or runtime_config.is_config_secret(key))}


def project_keys(config: Mapping[str, Any], namespace: str = PROJECT) -> dict[str, Any]:
    """One namespace's keys of a Pulumi config map ("bluegreen:green" -> "green"), with object values
    decoded: Pulumi hands them over as JSON text. Text that is not JSON is kept, for the error."""
    prefix, raw = namespace + ":", {}
    for key, value in config.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            raw[name] = _decode_object(value) if name in OBJECT_KEYS else value
    return raw


def _production_slot_problems(slot: str, settings: SlotSettings) -> list[Problem]:
    """Prod must have pods to send traffic to: promoting to an empty slot is an outage."""
    problems = []
    if not settings.enabled:
        problems.append(bad(f"{slot}.enabled", False,
                                f"true while productionSlot is {slot} (prod would have no pods)",
                                f"pulumi config set --path {slot}.enabled true, "
                                f"or pulumi config set productionSlot {other_slot(slot)}"))
    if settings.enabled and not settings.image:
        problems.append(bad(f"{slot}.image", "", f"an image while productionSlot is {slot}",
                                f"pulumi config set --path {slot}.image registry/name:tag"))
    if settings.enabled and settings.replicas == 0:
        problems.append(bad(f"{slot}.replicas", 0, f"at least 1 while productionSlot is {slot}",
                                f"pulumi config set --path {slot}.replicas 2"))
    return problems


def _prod_change_problems(settings: Settings, before: Mapping[str, Any]) -> list[Problem]:
    """Prod only ever gets what a slot already ran: a new image or variable goes into the idle
    slot, is tested through stage, and reaches prod by the flip. Changing the production slot in
    place (a rolling update of prod) or deploying a slot and sending prod to it in one update
    skips stage, so it is refused unless allowProdChange says it is a deliberate hotfix."""
    prod, stage = settings.production_slot, settings.stage_slot
    was, now = before.get(prod), settings.deployed(prod)
    if settings.allow_prod_change or now is None:
        return []
    hotfix = "or, for a deliberate hotfix of prod in place: pulumi config set allowProdChange true (then rm it)"
    if was is None:
        return [bad("productionSlot", prod, f"a slot that already runs (the last update did not deploy {prod}: "
                        "deploying it and sending prod to it at once skips stage)",
                        f"pulumi config set productionSlot {stage}; pulumi up (deploys {prod} as stage); "
                        f"then pulumi config set productionSlot {prod}; {hotfix}")]
    problems = []
    into_stage = f"deploy it into the idle slot {stage} instead and promote it; {hotfix}"
    if was.get("image") != now["image"]:
        problems.append(bad(f"{prod}.image", now["image"], f"{was.get('image')}, what prod ({prod}) runs",
                                f"pulumi config set --path {prod}.image {was.get('image')}; {into_stage}"))
    old_env = was.get("env")
    if old_env is not None:  # a stack deployed before slots exported their env compares images only
        own = settings.slot(prod).env
        for var in sorted(set(old_env) | set(now["env"])):
            if old_env.get(var) != now["env"].get(var):
                key = f"{prod}.env.{var}" if var in own or var not in settings.env else f"env.{var}"
                shown = now["env"].get(var, "(unset)")
                problems.append(bad(key, shown, f"{old_env.get(var, '(unset)')!r}, what prod ({prod}) runs",
                                        f"put it back; set it as {stage}.env.{var} in the idle slot {stage}, deploy "
                                        f"and promote it; {hotfix}"))
    old_secrets = (before.get("secretDigests") or {}).get(prod)
    if old_secrets is not None:
        now_secrets = settings.secret_digests(prod) or {}
        own = settings.slot(prod).secrets
        for name in sorted(set(old_secrets) | set(now_secrets)):
            if old_secrets.get(name) != now_secrets.get(name):
                key = f"{prod}.secrets.{name}" if name in own or name not in settings.secrets else f"secrets.{name}"
                problems.append(bad(key, "(hidden)", f"the value of what prod ({prod}) runs",
                                        f"put it back; a rotation goes through stage like code: set it with --secret "
                                        f"as {stage}.secrets.{name} in the idle slot {stage}, deploy and promote it; "
                                        f"{hotfix}"))
    return problems


def _variable_name(name: Any) -> bool:
    """A name a pod gets a value under (a variable, or a secret's file): letters, digits and '_',
    not starting with a digit, and not the chart's own prefix."""
    return bool(_ENV_NAME_RE.fullmatch(str(name))) and not str(name).startswith(RESERVED_ENV_PREFIX)


_VARIABLE_NAME = f"letters, digits and '_', not starting with a digit or {RESERVED_ENV_PREFIX}"


def _parse_env(key: str, value: Any, problems: list[Problem]) -> dict[str, str]:
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


def _parse_secrets(key: str, value: Any, problems: list[Problem]) -> dict[str, str]:
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


# Where secrets live in the stack config: the shared ones, each slot's own, the registry password,
# the stage's basic auth password.
SECRET_PATHS = ("secrets", *(f"{slot}.secrets" for slot in SLOTS), "registry.password", "stageAuth.password")


def is_secret_path(path: str) -> bool:
    """Whether a config path (`green.secrets.DB_PASSWORD`) is, or is under, a place secrets live."""
    return any(path == place or path.startswith(place + ".") for place in SECRET_PATHS)


def secret_values(raw: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(path, value) of each place secrets live in raw stack config; the value None where unset."""
    found = []
    for place in SECRET_PATHS:
        value: Any = raw
        for part in place.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        found.append((place, value))
    return found


def _plaintext_secret_problems(raw: Mapping[str, Any], encrypted: Collection[str]) -> list[Problem]:
    """A secret kept in plain text in Pulumi.<stack>.yaml is not a secret. Pulumi marks the whole
    top-level key encrypted (`green` for green.secrets.X)."""
    problems = []
    for path, value in secret_values(raw):
        if value and path.split(".")[0] not in encrypted:
            again = f"{path} VALUE" if path.endswith(".password") else f"{path}.NAME VALUE for each"
            problems.append(bad(path, "(hidden)", "values set with --secret (encrypted in the stack config)",
                                    f"pulumi config rm --path {path}; then pulumi config set --secret --path {again}"))
    return problems


def _parse_registry(value: Any, problems: list[Problem]) -> dict[str, str]:
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
    for key in ("username", "password"):
        if not isinstance(value[key], str) or not value[key]:
            problems.append(bad(f"registry.{key}", "(hidden)" if key == "password" else value[key],
                                    "non-empty text", fix))
    return {key: str(value[key]) for key in ("server", "username", "password")}


_GATEWAY_FIX = "pulumi config set --path gateway.name traefik; pulumi config set --path gateway.namespace kube-system"
_STAGE_AUTH_FIX = ("pulumi config set --path stageAuth.username tester; "
                   "pulumi config set --secret --path stageAuth.password ...")


def _parse_gateway(value: Any, problems: list[Problem]) -> dict[str, str]:
    """The Gateway the HTTPRoutes attach to: {name, namespace, sectionName (a listener; optional)}."""
    if value in ({}, None):
        return {}
    if not isinstance(value, Mapping) or not {"name", "namespace"} <= set(value) <= set(GATEWAY_KEYS):
        shown = sorted(value) if isinstance(value, Mapping) else value
        problems.append(bad("gateway", shown, "an object with name and namespace, and optionally sectionName "
                                "(a listener of that Gateway)", _GATEWAY_FIX))
        return {}
    found = {}
    for key in GATEWAY_KEYS:
        if key not in value:
            continue
        item = value[key]
        if not (_is_dns_label(item) if key == "namespace" else _is_dns_name(item)):
            problems.append(bad(f"gateway.{key}", item, "a lowercase DNS name" if key != "namespace" else
                                    "a namespace name (a DNS label)", f"pulumi config set --path gateway.{key} ..."))
        else:
            found[key] = item
    return found


def _parse_allow_from(value: Any, problems: list[Problem]) -> tuple[str, ...]:
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


def _parse_stage_auth(value: Any, problems: list[Problem]) -> dict[str, str]:
    """Basic auth in front of the stage host: {username, password}, the password set with --secret.
    The stack turns them into a kubernetes.io/basic-auth Secret <app>-stage-auth."""
    fix = _STAGE_AUTH_FIX
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


def _routing_problems(settings: Settings) -> list[Problem]:
    """The routing keys that only make sense together."""
    problems = []
    gateway_mode = settings.routing == "gateway"
    if settings.routing in ("gateway", "both") and not settings.gateway:
        problems.append(bad("gateway", {},
                                f"the Gateway the HTTPRoutes attach to while routing is {settings.routing}",
                                _GATEWAY_FIX))
    if settings.routing == "ingress" and settings.gateway:
        problems.append(bad("gateway", dict(settings.gateway), "unset while routing is ingress",
                                "pulumi config set routing gateway, or pulumi config rm gateway"))
    if gateway_mode and settings.tls_secret:
        problems.append(bad("tlsSecret", settings.tls_secret,
                                "empty while routing is gateway (TLS is the Gateway listener's)",
                                "pulumi config rm tlsSecret; put the certificate on the Gateway's HTTPS listener"))
    if gateway_mode and settings.ingress_annotations:
        problems.append(bad("ingressAnnotations", dict(settings.ingress_annotations),
                                "empty while routing is gateway (there is no Ingress)",
                                "pulumi config rm ingressAnnotations"))
    restricted = settings.stage_access == "restricted"
    if restricted and not settings.stage_allow_from and not settings.stage_auth:
        problems.append(bad("stageAccess", "restricted", "restricted with stageAllowFrom and/or stageAuth set "
                                "(or public, or internal)",
                                "pulumi config set --path 'stageAllowFrom[0]' 10.0.0.0/8, and/or " + _STAGE_AUTH_FIX))
    for key, value in (("stageAllowFrom", list(settings.stage_allow_from)), ("stageAuth", settings.stage_auth)):
        if value and not restricted:
            problems.append(bad(key, "(hidden)" if key == "stageAuth" else value,
                                    f"unset while stageAccess is {settings.stage_access}",
                                    f"pulumi config set stageAccess restricted, or pulumi config rm {key}"))
    return problems


def _routing_switch_problems(settings: Settings, before: Mapping[str, Any]) -> list[Problem]:
    """From Ingresses straight to HTTPRoutes (or back) in one update drops requests: the controller
    removes the old routes before it serves the new ones. The switch goes through both."""
    # A stack last updated before `routing` existed routed with Ingresses.
    was, now = before.get("routing") or "ingress", settings.routing
    if was in ("ingress", "gateway") and now in ("ingress", "gateway") and was != now:
        return [bad("routing", now, f"{was} or both (the last update routed with {was}; switching straight "
                        "to the other drops requests while the controller swaps the routes)",
                        f"pulumi config set routing both; pulumi up; then pulumi config set routing {now}; pulumi up")]
    return []


def _parse_pull_secrets(value: Any, problems: list[Problem]) -> tuple[str, ...]:
    """Names of existing kubernetes.io/dockerconfigjson Secrets in the namespace."""
    if not isinstance(value, list) or not all(_is_dns_name(v) for v in value):
        problems.append(bad("imagePullSecrets", value, "a list of Secret names",
                                "pulumi config set --path 'imagePullSecrets[0]' registry-credentials"))
        return ()
    return tuple(value)


def _parse_annotations(value: Any, problems: list[Problem]) -> dict[str, str]:
    """Annotations for the Ingress (cert-manager, controller settings): key -> text."""
    if not isinstance(value, Mapping):
        problems.append(bad("ingressAnnotations", value, "an object {annotation: value}",
                                "pulumi config set --path 'ingressAnnotations[\"cert-manager.io/cluster-issuer\"]' "
                                "letsencrypt"))
        return {}
    found = {}
    for key, item in value.items():
        if not _ANNOTATION_RE.fullmatch(str(key)) or not isinstance(item, (str, int, float, bool)):
            problems.append(bad(f"ingressAnnotations.{key}", item,
                                    "an annotation key ([prefix/]name, a name of at most 63 characters) with text",
                                    f"pulumi config rm --path 'ingressAnnotations[\"{key}\"]'"))
            continue
        found[str(key)] = ("true" if item else "false") if isinstance(item, bool) else str(item)
    return found


def _parse_slot(name: str, value: Any, problems: list[Problem]) -> SlotSettings:
    defaults = SLOT_DEFAULTS[name]
    keys = ", ".join(defaults)
    if not isinstance(value, Mapping):
        problems.append(bad(name, value, f"an object with keys {keys}",
                                f"pulumi config set --path {name}.image registry/name:tag"))
        return SlotSettings(enabled=defaults["enabled"], image=defaults["image"], replicas=defaults["replicas"])
    for key in sorted(set(value) - set(defaults)):
        problems.append(bad(f"{name}.{key}", value[key], f"keys {keys}",
                                f"pulumi config rm --path {name}.{key}"))
    get = _Reader({**defaults, **value}, problems, prefix=f"{name}.")
    enabled = get.boolean("enabled")
    image = get.text("image")
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
    return SlotSettings(enabled=enabled, image=image, replicas=get.integer("replicas", *REPLICAS),
                        env=_parse_env(f"{name}.env", value.get("env", {}), problems),
                        secrets=_parse_secrets(f"{name}.secrets", value.get("secrets", {}), problems))


def _parse_resources(value: Any, problems: list[Problem]) -> dict[str, dict[str, str]]:
    names = ", ".join(RESOURCE_NAMES)
    allowed = f"an object {{requests: {{{names}}}, limits: {{{names}}}}} of Kubernetes quantities"
    fix = "pulumi config set --path resources.requests.cpu 100m"
    if not isinstance(value, Mapping):
        problems.append(bad("resources", value, allowed, fix))
        return RESOURCES_DEFAULT
    # Like the slots (and like Helm's own values merge), fields not given keep their defaults.
    result = {kind: dict(quantities) for kind, quantities in RESOURCES_DEFAULT.items()}
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


def _parse_network_policy(value: Any, problems: list[Problem]) -> dict[str, Any]:
    """{enabled, ingressController, from}: fields not given keep their defaults."""
    keys = ", ".join(NETWORK_POLICY_DEFAULT)
    if not isinstance(value, Mapping):
        problems.append(bad("networkPolicy", value, f"an object with keys {keys}",
                                "pulumi config set --path networkPolicy.enabled true"))
        return NETWORK_POLICY_DEFAULT
    for key in sorted(set(value) - set(NETWORK_POLICY_DEFAULT)):
        problems.append(bad(f"networkPolicy.{key}", value[key], f"keys {keys}",
                                f"pulumi config rm --path networkPolicy.{key}"))
    merged = {**NETWORK_POLICY_DEFAULT, **value}
    enabled = _Reader(merged, problems, prefix="networkPolicy.").boolean("enabled")
    controller = _parse_peers("networkPolicy.ingressController", merged["ingressController"], problems)
    if merged["ingressController"] == []:
        # The Ingress is always made: without its controller, prod would be cut off where the
        # policy is enforced. (An empty list would also not reach the chart: the provider drops
        # empty lists from a Release's values, and the chart's default would apply.)
        problems.append(bad("networkPolicy.ingressController", [], "at least one peer: the ingress "
                                "controller's pods, or ipBlock CIDRs for one outside the cluster",
                                "pulumi config set --path 'networkPolicy.ingressController[0].ipBlock.cidr' "
                                "10.0.0.0/16, or pulumi config set --path networkPolicy.enabled false"))
    return {"enabled": enabled, "ingressController": controller,
            "from": _parse_peers("networkPolicy.from", merged["from"], problems)}


_PEER_EXAMPLE = ("[{ipBlock: {cidr: 10.0.0.0/16}}] or [{namespaceSelector: {matchLabels: {...}}, "
                 "podSelector: {matchLabels: {...}}}]")
_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_LABEL_KEY_RE = _ANNOTATION_RE  # same syntax: [DNS subdomain/]name
_LABEL_VALUE_RE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def _parse_peers(key: str, value: Any, problems: list[Problem]) -> list[dict[str, Any]]:
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


class _Reader:
    """Reads one key with its default, coercing Pulumi's string forms; records problems."""

    def __init__(self, raw: Mapping[str, Any], problems: list[Problem], prefix: str = ""):
        self.raw, self.problems, self.prefix = raw, problems, prefix

    def _get(self, key: str) -> Any:
        return self.raw.get(key, DEFAULTS.get(key))

    def _bad(self, key: str, value: Any, allowed: str, example: Any) -> None:
        path = self.prefix + key
        flag = "--path " if self.prefix else ""
        self.problems.append(bad(path, value, allowed, f"pulumi config set {flag}{path} {example}"))

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            self._bad(key, value, "a string", DEFAULTS.get(key) or "...")
            return ""
        return value

    def matching(self, key: str, pattern: re.Pattern, allowed: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or len(value) > MAX_DNS_NAME or not pattern.fullmatch(value):  # names all
            self._bad(key, value, allowed, DEFAULTS[key])
            return value if isinstance(value, str) else ""
        return value

    def one_of(self, key: str, choices: tuple[str, ...]) -> str:
        value = self._get(key)
        if value not in choices:
            self._bad(key, value, ", ".join(choices), choices[0])
        return value

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        self._bad(key, value, "true or false", "true")
        return False

    def integer(self, key: str, low: int, high: int) -> int:
        value = self._get(key)
        number = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            number = int(value)
        if isinstance(value, float) and value.is_integer():
            number = int(value)
        if number is None or not low <= number <= high:
            self._bad(key, value, f"a whole number from {low} to {high}", DEFAULTS.get(key, max(low, 2)))
            return low
        return number


def _decode_object(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value) if isinstance(value, (dict, list)) else repr(value)
