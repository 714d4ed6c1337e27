"""BlueGreenApp: inputs (stack config, or another program's values and Outputs) -> validated
settings -> a Namespace and a helm.v3.Release of the bundled chart.

The component only wires decisions made elsewhere (keys.py, config.py, values.py, contract.py) into
resources.
Another Pulumi program uses it like this (pip install the package into its venv):

    image = docker_build.Image("api", ...)          # any resource's Output
    BlueGreenApp("api", BlueGreenAppArgs(
        namespace="shop", prod_host="api.shop.example.com", stage_host="stage.api.shop.example.com",
        blue=SlotArgs(image=image.ref)))
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi
from pulumi_kubernetes.helm.v3 import Release

from .config import ConfigError, Settings, parse, secret_values
from .contract import COMPONENT_TYPE, SLOT_LABEL, SLOTS, pod_selector, role_slots
from .keys import DEFAULTS, KEYS, Key, bad
from .values import CHART_DIR, chart_values

# Helm keeps one Secret per revision; without a cap they pile up for ever.
MAX_HISTORY = 10
# The provider plugin version the pulumi-kubernetes package asks for (its resources pin it too).
PROVIDER_VERSION = importlib.metadata.version("pulumi-kubernetes")


@dataclass
class SlotArgs:
    """One slot. Unset fields take the slot's default (its row in keys.KEYS)."""

    image: pulumi.Input[str] | None = None
    enabled: pulumi.Input[bool] | None = None
    replicas: pulumi.Input[int] | None = None
    env: pulumi.Input[Mapping[str, pulumi.Input[str]]] | None = None
    secrets: Mapping[str, str] | None = None


def _one_field_per_key(cls: type) -> type:
    """Makes `cls` a dataclass with a field per key of keys.KEYS (its snake_case `field`, None by
    default), before the fields `cls` declares itself."""
    def annotation(key: Key) -> str:  # annotations are text in this module (from __future__ import annotations)
        if key.name in SLOTS:
            return "SlotArgs | Mapping[str, Any] | None"
        objects: dict[type, str] = {dict: "Mapping[str, Any]", list: "list[Any]"}
        kind = objects.get(type(key.default), type(key.default).__name__)
        # Secrets, and createNamespace (it decides whether a resource exists), must be known now.
        return f"{kind} | None" if key.secret is not None or key.name == "createNamespace" else \
            f"pulumi.Input[{kind}] | None"

    own = dict(cls.__dict__.get("__annotations__", {}))
    cls.__annotations__ = {**{key.field: annotation(key) for key in KEYS}, **own}
    for key in KEYS:
        setattr(cls, key.field, None)
    return dataclass(cls)


@_one_field_per_key
class BlueGreenAppArgs:
    """The app's settings: one field per stack config key (keys.KEYS), in snake case
    (`production_slot` is `productionSlot`), each a `pulumi.Input`: a plain value or an Output of
    another resource. Unset fields take the keys' defaults; `app_name` defaults to the component's
    name. Or the stack config itself, as `config` (from_config).

    Plain values are validated when the component is created, before any resource is registered;
    values that wait on Outputs are validated when they arrive. `create_namespace` decides whether
    a resource exists at all, so it must be a plain bool.
    """

    deployed_slots: Mapping[str, Any] | None = None
    """What each slot ran after the stack's last update (this component's `slots` output, read
    back with `last_update_outputs`). Given, the production slot may only get what a slot already
    ran: a changed prod image or variable is refused (config.parse), unless allow_prod_change.
    With the last update's `secretDigests` output under "secretDigests", secrets are held too; with
    its `routing` output under "routing", routing changes only through both."""
    encrypted: Collection[str] | None = None
    """The config keys Pulumi keeps encrypted (config.encrypted_keys); given, secrets kept in plain
    text are refused."""
    config: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Stack config keys as `pulumi config` holds them (config.stack_config, secrets decrypted),
    passed to config.parse as they are, unknown keys too (it reports them). A field set above wins
    over its key here."""

    if TYPE_CHECKING:  # the key fields are added when the class is made, so a type checker takes any
        def __init__(self, **fields: Any) -> None: ...

        def __getattr__(self, name: str) -> Any: ...

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> BlueGreenAppArgs:
        """From stack config keys (config.stack_config)."""
        return cls(config=raw)

    def config_keys(self) -> dict[str, Any]:
        """The stack config these args stand for: `config`, and each field that is set under its key."""
        raw: dict[str, Any] = dict(self.config)
        for key in KEYS:
            value = getattr(self, key.field)
            if isinstance(value, SlotArgs):
                value = {k: v for k, v in vars(value).items() if v is not None}
            if value is not None:
                raw[key.name] = value
        return raw


def last_update_outputs(*names: str) -> dict[str, Any]:
    """Outputs of this stack as its last update left them (None before the first one; a secret
    output's plain value), synchronously, so that the program can decide before it registers
    anything. Read with the engine's builtin function `pulumi:pulumi:readStackOutputs` (what a
    StackReference reads, without registering one) through the SDK's public, synchronous
    `pulumi.runtime.invoke`, which hands back secret outputs unwrapped."""
    own = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    for attempt in range(1, 6):
        try:
            read = pulumi.runtime.invoke("pulumi:pulumi:readStackOutputs", {"name": own})
            break
        except Exception as error:
            # The engine writes the stack's checkpoint as the update starts; a read that meets the
            # file half-written ("failed to load checkpoint: EOF", seen on a new stack) is made again.
            if "failed to load checkpoint" not in str(error) or attempt == 5:
                raise
            time.sleep(0.2 * attempt)
    outputs = (read.value or {}).get("outputs") or {}
    return {name: outputs.get(name) for name in names}


class BlueGreenApp(pulumi.ComponentResource):
    """Two slots of one app behind a prod and a stage Service, as one Helm release.

    Every attribute below is an Output, and `outputs` holds them under the names the stack
    exports (the component registers the same).
    """

    release: Release
    production_slot: pulumi.Output[str]
    stage_slot: pulumi.Output[str]
    prod_selector: pulumi.Output[dict]
    stage_selector: pulumi.Output[dict]
    images: pulumi.Output[dict]
    slots: pulumi.Output[dict]  # per slot, what it runs ({image, env}) or None: the prod guard's record
    secret_digests: pulumi.Output[dict]  # per slot, {secret name: digest of its value}, a Pulumi secret
    prod_url: pulumi.Output[str]
    stage_url: pulumi.Output[str]
    routing: pulumi.Output[str]  # how the hosts were routed: the routing guard's record
    revision: pulumi.Output[int | None]  # ReleaseStatus.revision is Optional: None if Helm reported none
    status: pulumi.Output[str]
    outputs: dict[str, pulumi.Output[Any]]

    def __init__(self, name: str, args: BlueGreenAppArgs, opts: pulumi.ResourceOptions | None = None):
        raw = {"appName": name, **args.config_keys()}
        # Known now: validated before any resource is registered (a ConfigError lists every problem).
        before = args.deployed_slots
        known = parse(raw, before, args.encrypted) if not _waits(raw) else None
        if not known and _has_secrets(raw):
            raise ConfigError([bad("secrets", "(hidden)", "secrets with settings known when the program runs",
                                   "pass plain values (not Outputs) to an app with secrets")])
        create_namespace = known.create_namespace if known else _plain_bool("createNamespace",
                                                                            raw.get("createNamespace"))
        super().__init__(COMPONENT_TYPE, name, {}, opts)
        settings: pulumi.Output[Settings] = (pulumi.Output.from_input(known) if known else
                                             pulumi.Output.from_input(raw).apply(lambda r: parse(r, before)))

        depends_on: list[pulumi.Resource] = []
        if create_namespace:
            # Our own namespace enforces Pod Security "restricted", which the chart's pods meet,
            # and `pulumi destroy` removes it again.
            depends_on.append(RestrictedNamespace(f"{name}-namespace", settings.apply(lambda s: s.namespace),
                                                  pulumi.ResourceOptions(parent=self)))
        secret_names, needed = self._stack_secrets(name, known, depends_on)
        values = pulumi.Output.all(settings, pulumi.Output.all(**secret_names) if secret_names else {}).apply(
            lambda both: chart_values(both[0], both[1]))
        self.release = self._release(name, settings, values, [*depends_on, *needed])
        self._export(settings)

    def _stack_secrets(self, name: str, known: Settings | None, depends_on: list[pulumi.Resource]
                       ) -> tuple[dict[str, pulumi.Output[str]], list[pulumi.Resource]]:
        """The Secrets the stack owns: per deployed slot with secrets, the name of its Secret; and
        the Secrets the chart names, which must exist before the Release."""
        secret_names: dict[str, pulumi.Output[str]] = {}
        needed: list[pulumi.Resource] = []
        if not known:
            return secret_names, needed

        def options() -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=depends_on)

        # Each deployed slot's secrets in a Secret of its own, named by Pulumi with a random
        # suffix and immutable: a changed value makes a new Secret (a new name) for that slot
        # only, so its pods roll and the other slot's do not. The chart gets only the name.
        for slot in SLOTS:
            data = known.slot_secrets(slot)
            if known.slot(slot).enabled and data:
                secret = StackSecret(f"{name}-{slot}-secrets", known.namespace, "Opaque", data, options(),
                                     labels={"app.kubernetes.io/name": known.app_name, SLOT_LABEL: slot},
                                     immutable=True)
                secret_names[slot] = secret.metadata.apply(lambda m: m["name"])
        # A private registry's credentials as the pull secret the pods name; a new password
        # updates it in place (same name), so no pod restarts for it.
        if known.registry:
            needed.append(StackSecret(f"{name}-registry", known.namespace, "kubernetes.io/dockerconfigjson",
                                      docker_config(known.registry), options(), secret_name=known.registry_secret))
        # Basic auth in front of the stage host: the Secret Traefik's basicAuth Middleware reads
        # (username, password); a new password updates it in place.
        if known.stage_auth:
            needed.append(StackSecret(f"{name}-stage-auth", known.namespace, "kubernetes.io/basic-auth",
                                      known.stage_auth, options(), secret_name=known.stage_auth_secret))
        return secret_names, needed

    def _release(self, name: str, settings: pulumi.Output[Settings], values: pulumi.Output[dict],
                 depends_on: list[pulumi.Resource]) -> Release:
        return Release(
            f"{name}-release",
            # An explicit name: an auto-named release would rename every Service it owns.
            name=settings.apply(lambda s: s.app_name),
            namespace=settings.apply(lambda s: s.namespace),
            chart=chart_path(),
            values=values,
            max_history=MAX_HISTORY,
            # A failed upgrade (pods never ready, timeout) is rolled back by Helm to the last good
            # revision, and resources it created are removed: prod keeps serving the old slot.
            atomic=True,
            cleanup_on_fail=True,
            # Await readiness (Helm's --wait) so `pulumi up` ends only when the slots are Available.
            skip_await=False,
            timeout=settings.apply(lambda s: s.helm_timeout_seconds),
            # Stack config is the source of truth: values set behind Pulumi's back are not kept.
            reset_values=True,
            # Helm would fetch and parse the cluster's whole OpenAPI document on every upgrade to
            # check the rendered objects (0.2 s of each flip here). The chart is ours and its values
            # are validated (config.py, values.schema.json, the chart tier's kube-score); the API
            # server still validates every object it receives.
            disable_openapi_validation=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )

    def _export(self, settings: pulumi.Output[Settings]) -> None:
        """The outputs: the slots, the Services' selectors (what a reviewer of a preview sees move,
        since a Release's preview diffs only its input values: pulumi-kubernetes issue 1701), what
        each slot runs, the URLs and the release's state."""
        selectors = settings.apply(lambda s: {role: pod_selector(s.app_name, slot)
                                              for role, slot in role_slots(s.production_slot).items()})
        self.production_slot = settings.apply(lambda s: s.production_slot)
        self.stage_slot = settings.apply(lambda s: s.stage_slot)
        self.prod_selector = selectors.apply(lambda by_role: by_role["prod"])
        self.stage_selector = selectors.apply(lambda by_role: by_role["stage"])
        self.images = settings.apply(lambda s: {slot: s.image(slot) for slot in SLOTS})
        self.slots = settings.apply(lambda s: {slot: s.deployed(slot) for slot in SLOTS})
        # Digests of each slot's secret values, for the prod guard; a Pulumi secret, like the values.
        self.secret_digests = pulumi.Output.secret(settings.apply(lambda s: {slot: s.secret_digests(slot)
                                                                             for slot in SLOTS}))
        self.prod_url = settings.apply(lambda s: s.url("prod"))
        self.stage_url = settings.apply(lambda s: s.url("stage"))
        self.routing = settings.apply(lambda s: s.routing)
        self.revision = self.release.status.apply(lambda s: s.revision)
        self.status = self.release.status.apply(lambda s: s.status)
        self.outputs = {
            "productionSlot": self.production_slot,
            "stageSlot": self.stage_slot,
            "prodSelector": self.prod_selector,
            "stageSelector": self.stage_selector,
            "images": self.images,
            "slots": self.slots,
            "secretDigests": self.secret_digests,
            "prodUrl": self.prod_url,
            "stageUrl": self.stage_url,
            "routing": self.routing,
            "releaseName": self.release.name,
            "namespace": self.release.namespace,
            "revision": self.revision,
            "status": self.status,
        }
        self.register_outputs(self.outputs)


def _has_secrets(raw: Mapping[str, Any]) -> bool:
    return any(value for _, value in secret_values(raw))


def _waits(value: Any) -> bool:
    """Whether a (nested) input holds an Output or an awaitable, known only later."""
    if isinstance(value, Mapping):
        return any(_waits(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_waits(v) for v in value)
    return isinstance(value, pulumi.Output) or hasattr(value, "__await__")


def _plain_bool(key: str, value: Any) -> bool:
    if value is None:
        return bool(DEFAULTS[key])
    if isinstance(value, bool) or value in ("true", "false"):
        return value in (True, "true")
    raise ConfigError([bad(key, value, "true or false, known when the program runs (not an Output)",
                               f"pass {key}=True or False")])


class RestrictedNamespace(pulumi.CustomResource):
    """A kubernetes:core/v1:Namespace labelled to enforce Pod Security "restricted".

    The same resource pulumi_kubernetes.core.v1.Namespace registers (type, inputs, provider
    version), declared here because importing core.v1 loads every core type: 0.2 s of each
    `pulumi up`, a tenth of a flip (see bench/).
    """

    def __init__(self, name: str, namespace: pulumi.Input[str], opts: pulumi.ResourceOptions):
        metadata = {"name": namespace, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "app.kubernetes.io/managed-by": "pulumi",
        }}
        opts = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(version=PROVIDER_VERSION), opts)
        super().__init__("kubernetes:core/v1:Namespace", name,
                         {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata, "spec": None, "status": None},
                         opts)


class StackSecret(pulumi.CustomResource):
    """A kubernetes:core/v1:Secret the stack owns, its values a Pulumi secret (encrypted in the
    state, masked in every preview and update). Named `secret_name`, or by Pulumi (prefix + random
    suffix) without one. Declared by hand for the same reason as RestrictedNamespace."""

    metadata: pulumi.Output[dict]

    def __init__(self, name: str, namespace: str, kind: str, string_data: Mapping[str, str],
                 opts: pulumi.ResourceOptions, secret_name: str | None = None,
                 labels: Mapping[str, str] | None = None, immutable: bool = False):
        metadata: dict[str, Any] = {"namespace": namespace,
                                    "labels": {**(labels or {}), "app.kubernetes.io/managed-by": "pulumi"}}
        if secret_name:
            metadata["name"] = secret_name
        props: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "type": kind, "metadata": metadata,
                                 "stringData": pulumi.Output.secret(dict(string_data)), "data": None}
        if immutable:
            props["immutable"] = True
        opts = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(
            version=PROVIDER_VERSION, additional_secret_outputs=["data", "stringData"]), opts)
        super().__init__("kubernetes:core/v1:Secret", name, props, opts)


def docker_config(registry: Mapping[str, str]) -> dict[str, str]:
    """A kubernetes.io/dockerconfigjson Secret's data for one registry's credentials."""
    auth = base64.b64encode(f"{registry['username']}:{registry['password']}".encode()).decode()
    return {".dockerconfigjson": json.dumps({"auths": {registry["server"]: {
        "username": registry["username"], "password": registry["password"], "auth": auth}}})}


def chart_path() -> str:
    """The chart's path as stored in the Release's inputs: the same from any checkout path and on
    any machine, so a preview never shows a spurious chart diff (pulumi-kubernetes issue 2573).

    Pulumi runs a program in its project's directory. Inside this project, the chart is
    `./bluegreen/chart`. Installed into another project's environment (a venv anywhere, under any
    Python version), the chart is copied once into that project, to `./.bluegreen/chart-<digest>`:
    a path named by the chart's content, so a new chart shows in the preview as a changed path.
    """
    project = os.getcwd()
    relative = os.path.relpath(CHART_DIR, project)
    if not relative.startswith("..") and "site-packages" not in relative.split(os.sep):
        # "./" keeps Helm from reading "bluegreen/chart" as chart "chart" of a repo named "bluegreen".
        return "./" + relative
    digest = _chart_digest(CHART_DIR)
    own = os.path.join(project, "bluegreen", "chart")
    if os.path.isdir(own) and _chart_digest(own) == digest:
        # The project's own copy of this package (the release tool runs the program in its own
        # process, with the package it was started from): the path `pulumi up` stores.
        return "./bluegreen/chart"
    copy = os.path.join(project, ".bluegreen", f"chart-{digest}")
    if not os.path.isdir(copy):
        os.makedirs(os.path.dirname(copy), exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".chart-", dir=os.path.dirname(copy))
        shutil.copytree(CHART_DIR, staging, dirs_exist_ok=True)
        try:
            os.rename(staging, copy)  # whole or not at all; a concurrent run may have won
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return f"./.bluegreen/chart-{digest}"


def _chart_digest(directory: str) -> str:
    """12 hex digits of SHA-256 over the chart's relative file paths and contents."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for file in sorted(files):
            path = os.path.join(root, file)
            digest.update(os.path.relpath(path, directory).encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(f.read() + b"\0")
    return digest.hexdigest()[:12]
