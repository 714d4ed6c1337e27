"""Every Helm subprocess the release tool runs, and Helm's release records decoded.

Helm keeps each revision of a release in a Secret `sh.helm.release.v1.<release>.v<N>` whose
`release` field is the release as JSON, gzipped and base64-encoded (and base64-encoded once more by
the Secret's `data`). The record holds the values the revision was installed with (`config`) and
the manifest Helm applied (`manifest`: every object but the hooks, which are kept apart in `hooks`).

`template` renders what an upgrade with some values would apply, in the form Helm records it: the
same manifest without hooks, so that `manifests.diff(record.manifest, template(...))` lists exactly
what the upgrade changes.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..contract import Names
from ..values import helm_json
from .kube import KubeClient

HELM = "helm"  # the helm CLI, found on PATH (scripts/activate puts the toolchain's first)
_GZIP_MAGIC = b"\x1f\x8b\x08"


class HelmError(Exception):
    """A helm command failed, or a release record could not be read; the message says which."""


@dataclass(frozen=True)
class Record:
    """One revision of a Helm release, as Helm recorded it."""

    name: str
    namespace: str
    revision: int
    status: str  # deployed, superseded, failed, pending-upgrade, ...
    chart: str  # <chart name>-<chart version>
    values: dict[str, Any]  # the values it was installed with (Helm's `config`)
    manifest: str  # the objects Helm applied, a multi-document YAML stream, without the hooks
    hooks: tuple[str, ...]  # each hook's manifest (the chart's `helm test` pod)


def decode_record(payload: str | bytes, where: str = "the Helm release record") -> Record:
    """A record from the `release` field of Helm's Secret as the API returns it (`data.release`:
    base64 of Helm's own base64 of the gzipped JSON). Helm also reads records it stored without
    gzip; so does this."""
    try:
        encoded = base64.b64decode(payload, validate=True)
        raw = base64.b64decode(encoded, validate=True)
        if raw[:3] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
        release = json.loads(raw)
    except (binascii.Error, OSError, EOFError, ValueError) as error:
        raise HelmError(f"{where} is not a Helm release (base64, base64, gzip, JSON): {error}") from None
    if not isinstance(release, dict):
        raise HelmError(f"{where} is not a Helm release: its JSON is a {type(release).__name__}, not an object")
    info, chart = release.get("info") or {}, (release.get("chart") or {}).get("metadata") or {}
    return Record(
        name=release.get("name", ""),
        namespace=release.get("namespace", ""),
        revision=int(release.get("version", 0)),
        status=info.get("status", ""),
        chart=f"{chart.get('name', '')}-{chart.get('version', '')}",
        values=release.get("config") or {},
        manifest=release.get("manifest") or "",
        hooks=tuple(hook.get("manifest", "") for hook in release.get("hooks") or []),
    )


def record_from_secret(secret: Mapping[str, Any]) -> Record:
    """The record in one of Helm's release Secrets (an object read from the API)."""
    name = (secret.get("metadata") or {}).get("name", "?")
    payload = (secret.get("data") or {}).get("release")
    if not payload:
        raise HelmError(f"Secret {name} has no data.release: it is not a Helm release record")
    return decode_record(payload, f"Secret {name}")


def template(chart_dir: str, release: str, namespace: str, values: Mapping[str, Any],
             kube_version: str | None = None) -> str:
    """The manifest `helm upgrade RELEASE CHART -n NAMESPACE` with `values` would record: `helm
    template` with the values as a JSON file, without hooks (the record keeps them apart). Nothing
    is read from a cluster: the chart reads neither `.Capabilities` nor `lookup`, so the render does
    not depend on it. `kube_version` (`--kube-version`) only when a chart's `kubeVersion`
    constraint needs another version than helm's built-in one (its client-go's)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as file:
        file.write(helm_json(values))  # what Helm's YAML parser reads back exactly
        file.flush()
        args = [HELM, "template", release, chart_dir, "--namespace", namespace, "--values", file.name, "--no-hooks"]
        if kube_version:
            args += ["--kube-version", kube_version]
        done = _run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise HelmError(f"helm template {release} {chart_dir} failed (exit {done.returncode}): "
                        f"{done.stderr.strip()}")
    return done.stdout


def upgrade(release: str, chart_dir: str, namespace: str, values: Mapping[str, Any], timeout_seconds: int) -> None:
    """Helm's three-way merge against the live objects, with exactly `values` (`--reset-values`);
    `--atomic`: an upgrade that fails is rolled back, not left half-done. Helm's output goes to
    stderr (the tool's stdout carries only its result)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as file:
        file.write(helm_json(values))  # what Helm's YAML parser reads back exactly
        file.flush()
        done = _run([HELM, "upgrade", release, chart_dir, "-n", namespace, "-f", file.name, "--reset-values",
                     "--wait", "--atomic", "--timeout", f"{timeout_seconds}s"], stdout=sys.stderr)
    if done.returncode != 0:
        raise HelmError(f"helm upgrade {release} failed (exit {done.returncode})")


def rollback(release: str, revision: int, namespace: str, timeout_seconds: int) -> None:
    """`helm rollback` to `revision`, waiting until its objects are ready. Output to stderr."""
    done = _run([HELM, "rollback", release, str(revision), "-n", namespace, "--wait",
                 "--timeout", f"{timeout_seconds}s"], stdout=sys.stderr)
    if done.returncode != 0:
        raise HelmError(f"helm rollback to v{revision} failed (exit {done.returncode})")


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, check=False, **kwargs)
    except FileNotFoundError:
        raise HelmError(f"{HELM} is not on PATH; install Helm 3 (in a checkout of bluegreen, "
                        "`source scripts/activate` puts the pinned one there)") from None


def newest_release(kube: KubeClient, names: Names) -> dict | None:
    """The newest release record (name, revision, status) with the values it was installed with."""
    records = kube.helm_releases(names.namespace, names.app)
    if not records:
        return None
    secret = kube.get(f"/api/v1/namespaces/{names.namespace}/secrets/{records[0]['name']}")
    return {**records[0], "values": record_from_secret(secret).values if secret else {}}


def delete_record(kube: KubeClient, names: Names, record: Mapping[str, Any]) -> None:
    kube.delete_secret(names.namespace, record["name"])
