"""Stack config -> typed, validated settings.

This is the product's user interface: every key a user can `pulumi config set` is in the key
table (keys.py), which reads each value; the rules across keys (prod needs pods, routing modes
that go together, secrets kept encrypted, what prod may get in an update) are here. Every error
message a user can get from bad config is written in these two modules. Nothing here needs a
Pulumi runtime, so each rule is tested as a plain function.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .contract import PROJECT, SLOTS, Problem, other_slot
from .keys import DEFAULTS, GATEWAY_FIX, KEYS, OBJECT_KEYS, SECRET_PATHS, STAGE_AUTH_FIX, SlotSettings, bad


class ConfigError(ValueError):
    """The stack config cannot be deployed. Raised before any resource is registered."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = [f"{len(problems)} problem(s) in the stack config; nothing was changed."]
        lines += [f"- {p}" for p in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Settings:
    """Everything the program needs, validated: one field per key of keys.KEYS (its `field`, in
    the table's order; tests/unit/test_one_truth.py holds the two to each other)."""

    app_name: str
    namespace: str
    create_namespace: bool
    production_slot: str
    blue: SlotSettings
    green: SlotSettings
    container_port: int
    health_path: str
    prod_host: str
    stage_host: str
    ingress_class: str
    ingress_annotations: Mapping[str, str]
    tls_secret: str
    routing: str
    gateway: Mapping[str, str]  # {name, namespace, sectionName?} under gateway, or {}
    stage_access: str
    stage_allow_from: tuple[str, ...]
    stage_auth: Mapping[str, str] = field(repr=False)  # {username, password} or {}
    env: Mapping[str, str]  # both slots'; a slot's own env wins
    secrets: Mapping[str, str] = field(repr=False)  # both slots'; a slot's own win
    secrets_as: str
    image_pull_secrets: tuple[str, ...]
    registry: Mapping[str, str] = field(repr=False)  # {server, username, password} or {}
    image_pull_policy: str
    network_policy: Mapping[str, Any]
    allow_prod_change: bool
    resources: Mapping[str, Mapping[str, str]]
    read_only_root_filesystem: bool
    helm_timeout_seconds: int

    @property
    def slots(self) -> dict[str, SlotSettings]:
        """The two slots' settings by name (the fields `blue` and `green`)."""
        return {name: getattr(self, name) for name in SLOTS}

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

    def image(self, name: str) -> str | None:
        """The image a slot runs, or None when the slot has no Deployment."""
        state = self.slot(name)
        return state.image if state.enabled else None

    def slot_env(self, name: str) -> dict[str, str]:
        """The variables a slot's pods get: the shared ones, overridden by the slot's own."""
        return {**self.env, **self.slot(name).env}

    def slot_secrets(self, name: str) -> dict[str, str]:
        """The secrets a slot's pods get: the shared ones, overridden by the slot's own."""
        return {**self.secrets, **self.slot(name).secrets}

    def secret_digests(self, name: str) -> dict[str, str] | None:
        """Per secret of a slot, a digest of its value: how the prod guard sees a secret change
        without keeping the value. Exported only as a Pulumi secret. None: no Deployment."""
        if not self.slot(name).enabled:
            return None
        return {key: hashlib.sha256(value.encode()).hexdigest()[:16] for key, value in self.slot_secrets(name).items()}

    def deployed(self, name: str) -> dict[str, Any] | None:
        """What a slot runs, as the stack exports it (`slots`) and the prod guard compares it:
        None when the slot has no Deployment."""
        image = self.image(name)
        return None if image is None else {"image": image, "env": self.slot_env(name)}

    def url(self, role: str) -> str:
        """Where the Ingress or the Gateway serves `role` ("prod" or "stage"); empty for an internal stage."""
        if role == "stage" and self.stage_access == "internal":
            return ""
        host = self.prod_host if role == "prod" else self.stage_host
        return f"{'https' if self.tls_secret else 'http'}://{host}/"


def parse(raw: Mapping[str, Any], before: Mapping[str, Any] | None = None,
          encrypted: Collection[str] | None = None) -> Settings:
    """Turn raw stack config (keys without the `bluegreen:` prefix) into Settings.

    Each key of keys.KEYS is read by its row's reader (a missing key gets its default), then the
    rules across keys are checked.
    `before`: what each slot ran after the stack's last update (its `slots` output, with the
    `secretDigests` output under the key "secretDigests" and the `routing` output under "routing"),
    if any; then the production slot may only get what a slot already ran (see
    _prod_change_problems), and routing changes only through both (see _routing_switch_problems).
    `encrypted`: the keys Pulumi keeps encrypted (set with --secret), when known; then secrets
    stored in plain text are refused.
    Collects every problem before raising, so one `pulumi up` shows them all.
    """
    problems = [bad(key, raw[key], "one of " + ", ".join(DEFAULTS), f"pulumi config rm {key}")
                for key in sorted(set(raw) - set(DEFAULTS))]
    settings = Settings(**{key.field: key.read(key, raw.get(key.name, key.default), problems) for key in KEYS})
    problems += _across_keys_problems(settings, raw, encrypted)
    if not problems and before is not None:
        problems += _prod_change_problems(settings, before) + _routing_switch_problems(settings, before)
    if problems:
        raise ConfigError(problems)
    return settings


def _across_keys_problems(settings: Settings, raw: Mapping[str, Any],
                          encrypted: Collection[str] | None) -> list[Problem]:
    problems = []
    if settings.prod_host and settings.prod_host == settings.stage_host:
        problems.append(bad("stageHost", settings.stage_host, f"a host other than prodHost ({settings.prod_host})",
                            f"pulumi config set stageHost stage.{settings.prod_host}"))
    problems += _routing_problems(settings)
    if encrypted is not None:
        problems += _plaintext_secret_problems(raw, encrypted)
    if settings.production_slot in SLOTS:
        problems += _production_slot_problems(settings.production_slot, settings.slot(settings.production_slot))
    return problems


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


def _routing_problems(settings: Settings) -> list[Problem]:
    """The routing keys that only make sense together."""
    problems = []
    gateway_mode = settings.routing == "gateway"
    if settings.routing in ("gateway", "both") and not settings.gateway:
        problems.append(bad("gateway", {},
                                f"the Gateway the HTTPRoutes attach to while routing is {settings.routing}",
                                GATEWAY_FIX))
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
                                "pulumi config set --path 'stageAllowFrom[0]' 10.0.0.0/8, and/or " + STAGE_AUTH_FIX))
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


def _decode_object(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
