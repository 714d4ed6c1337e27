"""Helm, where the release tool needs it beside Pulumi: its release records (one Secret per
revision, read through the cluster client), and the `helm` commands of `repair` and `recover`.

These are the only places the tool changes the cluster other than through a Pulumi update:
`repair` upgrades the release with the values the stack deployed, `recover` removes the record an
interrupted update left pending and rolls back to the last settled revision.
"""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
import tempfile
from typing import Any

from ..contract import Names
from .kube import KubeClient


class HelmFailed(Exception):
    """A helm command exited non-zero; the message names it."""


def decode(secret: dict[str, Any] | None) -> dict[str, Any]:
    """A release record's content (Helm keeps it as gzipped JSON, base64-encoded twice, in the
    Secret's `release` field): `config` (the values), `manifest`, `info`, ..."""
    payload = ((secret or {}).get("data") or {}).get("release")
    if not payload:
        return {}
    return json.loads(gzip.decompress(base64.b64decode(base64.b64decode(payload))))


def newest_release(kube: KubeClient, names: Names) -> dict | None:
    """The newest release record (name, revision, status) with the values it was installed with."""
    records = kube.helm_releases(names.namespace, names.app)
    if not records:
        return None
    secret = kube.get(f"/api/v1/namespaces/{names.namespace}/secrets/{records[0]['name']}")
    return {**records[0], "values": decode(secret).get("config") or {}}


def delete_record(kube: KubeClient, names: Names, record: dict[str, Any]) -> None:
    kube.delete_secret(names.namespace, record["name"])


def upgrade(names: Names, chart: str, values: dict[str, Any], timeout_seconds: int) -> None:
    """Helm's three-way merge against the live objects, with `values`; --atomic: an upgrade that
    fails is rolled back, not left half-done."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(values, file)
        file.flush()
        _helm("upgrade", names.app, chart, "-n", names.namespace, "-f", file.name, "--reset-values", "--wait",
              "--atomic", "--timeout", f"{timeout_seconds}s")


def rollback(names: Names, revision: int, timeout_seconds: int) -> None:
    _helm("rollback", names.app, str(revision), "-n", names.namespace, "--wait", "--timeout", f"{timeout_seconds}s")


def _helm(*args: str) -> None:
    done = subprocess.run(["helm", *args], stdout=sys.stderr)  # stdout carries only the command's result
    if done.returncode != 0:
        raise HelmFailed(f"helm {args[0]} {args[1]} failed (exit {done.returncode})")
