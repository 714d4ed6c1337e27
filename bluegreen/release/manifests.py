"""What a Helm upgrade changes, object by object and field by field: two manifests (the one Helm
recorded for the deployed revision, and the chart's render of the new values) compared. Pure: no
cluster, no subprocess.

`pulumi preview` of a helm.v3.Release shows only its values (pulumi-kubernetes issue 1701); this
shows the objects. An object is known by its API group, kind, namespace and name (a new apiVersion
of the same group is the same object, changed). Lists of objects are matched by their Kubernetes
merge key (containers, env, volumes, ... by `name`; volumeMounts by `mountPath`; ports by `name`,
else their number), so a new variable is one added entry, not a shifted list; other lists of
objects by position, and lists of plain values (a command, source ranges) as a whole.

Secrets: the values under a Secret's `data` and `stringData` are never kept, only a short digest of
each (`sha256:` and 8 hex digits of the decoded value), so a change shows as old digest -> new
digest and the value itself reaches no output.

What is not compared, because it is no change to any object: the documents' order, empty
documents, YAML comments (Helm's `# Source:` lines), and fields whose value is null (Kubernetes
treats them as absent). Everything else is compared: this chart renders nothing that changes from
one render to the next (no checksum annotations, random or time values; `.Release.Revision` is
only in NOTES.txt), and its own labels (`helm.sh/chart`, `app.kubernetes.io/*`) change only when
the chart's version or a slot's image does, which an upgrade does apply.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

ADDED, REMOVED, CHANGED = "added", "removed", "changed"
_MARK = {ADDED: "+", REMOVED: "-", CHANGED: "~"}

# Kinds that live in no namespace (a manifest does not say; the API server knows). The common ones a
# chart may hold; any other kind is shown in the release's namespace.
CLUSTER_SCOPED = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
    "StorageClass", "IngressClass", "PriorityClass", "RuntimeClass", "APIService", "GatewayClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "CSIDriver", "Node",
})
# Merge keys of lists of objects, by the list's field name, tried before `name` (Kubernetes'
# strategic merge keys); then `name`, then these. The first key every entry has, unique, wins.
_FIRST_KEYS = {"volumeMounts": ("mountPath",), "volumeDevices": ("devicePath",)}
_OTHER_KEYS = ("containerPort", "port", "mountPath", "ip")
_SECRET_FIELDS = ("data", "stringData")
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"  # holds a Secret's values in clear
_INLINE = 80  # values longer than this (as JSON) are printed as an indented YAML block


class _Loader(yaml.SafeLoader):
    """YAML as Kubernetes reads it: an unquoted date is text, not a date."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class ManifestError(ValueError):
    """A manifest that is not a stream of Kubernetes objects; the message names the document."""


class _Absent:
    """The side of a field change where the field does not exist."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class Masked:
    """A Secret's value, of which only a digest is kept."""

    digest: str  # sha256:<8 hex digits>

    def __str__(self) -> str:
        return f"(secret {self.digest})"


@dataclass(frozen=True)
class FieldChange:
    """One field of an object: `old` or `new` is ABSENT where the field is added or removed."""

    path: str  # spec.template.spec.containers[name=app].image
    old: Any = ABSENT
    new: Any = ABSENT

    @property
    def action(self) -> str:
        return ADDED if self.old is ABSENT else REMOVED if self.new is ABSENT else CHANGED


@dataclass(frozen=True)
class ObjectChange:
    action: str  # added, removed, changed
    api_version: str  # the new one, or the old one of a removed object
    kind: str
    namespace: str  # "" for a cluster-scoped kind
    name: str
    fields: tuple[FieldChange, ...] = ()  # a changed object's changed fields
    object: Mapping[str, Any] | None = field(default=None, compare=False)  # an added object (masked)

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


def parse(manifest: str, namespace: str = "") -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """The objects of a multi-document manifest, by (API group, kind, namespace, name), in their
    order, with null fields dropped and Secret values masked. `namespace`: the release's, for the
    objects that do not name one."""
    try:
        documents = list(yaml.load_all(manifest, Loader=_Loader))
    except yaml.YAMLError as error:
        raise ManifestError(f"the manifest is not YAML: {error}") from None
    objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for number, document in enumerate(documents, 1):
        if document is None:
            continue
        for item in _items(document):
            obj = _mask_secret(_without_nulls(item))
            key = _identity(obj, number, namespace)
            if key in objects:
                raise ManifestError(f"document {number}: {key[1]} {key[3]} appears twice in the manifest")
            objects[key] = obj
    return objects


def _items(document: Any) -> list[Any]:
    """A `List` (any kind `...List` with `items`, as kubectl reads one) is its items."""
    if isinstance(document, dict) and str(document.get("kind", "")).endswith("List") \
            and isinstance(document.get("items"), list):
        return document["items"]
    return [document]


def diff(old_manifest: str, new_manifest: str, namespace: str = "") -> list[ObjectChange]:
    """Every object the change from `old_manifest` to `new_manifest` adds, removes or changes: in
    the new manifest's order (Helm's install order), then the removed ones."""
    old, new = parse(old_manifest, namespace), parse(new_manifest, namespace)
    changes: list[ObjectChange] = []
    for key, obj in new.items():
        if key not in old:
            changes.append(_object_change(ADDED, key, obj))
            continue
        fields: list[FieldChange] = []
        _diff(old[key], obj, "", fields)
        if fields:
            changes.append(_object_change(CHANGED, key, obj, tuple(fields)))
    changes += [_object_change(REMOVED, key, obj) for key, obj in old.items() if key not in new]
    return changes


def summary(changes: Iterable[ObjectChange]) -> dict[str, int]:
    counts = dict.fromkeys((CHANGED, ADDED, REMOVED), 0)
    for change in changes:
        counts[change.action] += 1
    return counts


def render_text(changes: list[ObjectChange], added_bodies: bool = True) -> str:
    """Object by object, like `kubectl diff` but compact: `~` a changed object and each changed
    field (`~ path: old -> new`, `+ path: new`, `- path: old`), `+` an added object and (unless
    `added_bodies` is false) its content, `-` a removed object (its name only); then the counts."""
    if not changes:
        return "No object changes.\n"
    lines: list[str] = []
    for change in changes:
        lines.append(f"{_MARK[change.action]} {change} ({change.action})")
        if added_bodies and change.action == ADDED and change.object is not None:
            body = {k: v for k, v in change.object.items() if k not in ("apiVersion", "kind")}
            lines += ["    " + line for line in _yaml(body).splitlines()]
        for item in change.fields:
            lines += _field_lines(item)
    counts = summary(changes)
    lines.append(", ".join(f"{n} {action}" for action, n in counts.items() if n) + ".")
    return "\n".join(lines) + "\n"


def as_json(changes: list[ObjectChange]) -> dict[str, Any]:
    """The same as plain data, for `--json`: a Secret's value as the text `(secret sha256:...)`."""
    def entry(change: ObjectChange) -> dict[str, Any]:
        out: dict[str, Any] = {"action": change.action, "apiVersion": change.api_version, "kind": change.kind,
                               "namespace": change.namespace, "name": change.name}
        if change.action == ADDED:
            out["object"] = _plain(change.object)
        if change.action == CHANGED:
            out["fields"] = [{"path": f.path, "action": f.action,
                              **({"old": _plain(f.old)} if f.old is not ABSENT else {}),
                              **({"new": _plain(f.new)} if f.new is not ABSENT else {})} for f in change.fields]
        return out
    return {"changes": [entry(change) for change in changes], "summary": summary(changes)}


# --- comparing ------------------------------------------------------------------------------


def _diff(old: Any, new: Any, path: str, out: list[FieldChange], list_name: str = "") -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            _diff(old.get(key, ABSENT), new.get(key, ABSENT), _join(path, key), out, key)
    elif isinstance(old, list) and isinstance(new, list):
        _diff_list(old, new, path, out, list_name)
    else:
        out.append(FieldChange(path, old, new))


def _diff_list(old: list, new: list, path: str, out: list[FieldChange], list_name: str) -> None:
    if not all(isinstance(item, dict) for item in (*old, *new)):
        out.append(FieldChange(path, old, new))  # plain values (or mixed): the whole list
        return
    key = _merge_key(list_name, old, new)
    if key is None:
        for index in range(max(len(old), len(new))):
            _diff(old[index] if index < len(old) else ABSENT, new[index] if index < len(new) else ABSENT,
                  f"{path}[{index}]", out)
        return
    old_by, new_by = {item[key]: item for item in old}, {item[key]: item for item in new}
    kept_old, kept_new = [k for k in old_by if k in new_by], [k for k in new_by if k in old_by]
    if kept_old != kept_new:  # the same entries in another order (it can matter: env references)
        out.append(FieldChange(f"{path}[*].{key}", [item[key] for item in old], [item[key] for item in new]))
    for name in [*new_by, *(k for k in old_by if k not in new_by)]:
        _diff(old_by.get(name, ABSENT), new_by.get(name, ABSENT), f"{path}[{key}={_key_text(name)}]", out)


def _merge_key(list_name: str, old: list[dict], new: list[dict]) -> str | None:
    for key in (*_FIRST_KEYS.get(list_name, ()), "name", *_OTHER_KEYS):
        if all(_usable_key(items, key) for items in (old, new)):
            return key
    return None


def _usable_key(items: list[dict], key: str) -> bool:
    values = [item.get(key) for item in items]
    return all(isinstance(v, str | int) and not isinstance(v, bool) for v in values) and len(set(values)) == len(values)


def _identity(obj: Any, number: int, namespace: str) -> tuple[str, str, str, str]:
    if not isinstance(obj, dict):
        raise ManifestError(f"document {number} is a {type(obj).__name__}, not a Kubernetes object")
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    name = (obj.get("metadata") or {}).get("name")
    if not (isinstance(api_version, str) and isinstance(kind, str) and isinstance(name, str) and name):
        raise ManifestError(f"document {number} has no apiVersion, kind and metadata.name: "
                            f"apiVersion={api_version!r}, kind={kind!r}, name={name!r}")
    group = api_version.rpartition("/")[0]
    scope = "" if kind in CLUSTER_SCOPED else (obj["metadata"].get("namespace") or namespace)
    return group, kind, scope, name


def _object_change(action: str, key: tuple[str, str, str, str], obj: dict[str, Any],
                   fields: tuple[FieldChange, ...] = ()) -> ObjectChange:
    _, kind, namespace, name = key
    return ObjectChange(action, obj["apiVersion"], kind, namespace, name, fields, obj if action == ADDED else None)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _mask_secret(obj: Any) -> Any:
    """A Secret with a digest in place of every value (and of kubectl's copy of the object)."""
    if not (isinstance(obj, dict) and obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1"):
        return obj
    masked = dict(obj)
    for name in _SECRET_FIELDS:
        if name in masked:
            content = masked[name]
            masked[name] = ({key: _masked(value, name == "data") for key, value in content.items()}
                            if isinstance(content, dict) else _masked(content, False))
    annotations = (masked.get("metadata") or {}).get("annotations") or {}
    if _LAST_APPLIED in annotations:
        masked["metadata"] = {**masked["metadata"],
                              "annotations": {**annotations, _LAST_APPLIED: _masked(annotations[_LAST_APPLIED], False)}}
    return masked


def _masked(value: Any, base64_encoded: bool) -> Masked:
    raw = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    data = raw.encode()
    if base64_encoded:
        # not base64 (the API server would refuse it): the digest of the text
        with contextlib.suppress(binascii.Error, ValueError):
            data = base64.b64decode(raw, validate=True)
    return Masked("sha256:" + hashlib.sha256(data).hexdigest()[:8])


# --- printing -------------------------------------------------------------------------------

_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _join(path: str, key: Any) -> str:
    key = str(key)
    if _SIMPLE_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _key_text(value: Any) -> str:
    return str(value) if isinstance(value, int) or _SIMPLE_KEY.match(value) else json.dumps(value)


def _field_lines(item: FieldChange) -> list[str]:
    if item.action == CHANGED:
        old, new = _inline(item.old), _inline(item.new)
        if old is not None and new is not None:
            return [f"    ~ {item.path}: {old} -> {new}"]
        return [f"    ~ {item.path}:", *_block(item.old, "was"), *_block(item.new, "now")]
    value = item.new if item.action == ADDED else item.old
    shown = _inline(value)
    mark = _MARK[item.action]
    if shown is not None:
        return [f"    {mark} {item.path}: {shown}"]
    return [f"    {mark} {item.path}:", *_block(value, None)]


def _inline(value: Any) -> str | None:
    if isinstance(value, Masked):
        return str(value)
    text = json.dumps(_plain(value), ensure_ascii=False)
    return text if len(text) <= _INLINE else None


def _block(value: Any, label: str | None) -> list[str]:
    lines = _yaml(_plain(value)).splitlines()
    prefix = "        "
    return ([f"{prefix}{label}:"] if label else []) + [prefix + ("  " if label else "") + line for line in lines]


def _yaml(value: Any) -> str:
    return yaml.safe_dump(_plain(value), default_flow_style=False, sort_keys=False, allow_unicode=True, width=100)


def _plain(value: Any) -> Any:
    """The value with every Masked as its text: what JSON and YAML can print."""
    if isinstance(value, Masked):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
