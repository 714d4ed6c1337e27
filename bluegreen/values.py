"""Settings -> the chart's values: each key's setting at its row's `chart` path (keys.KEYS), and the
values made of several settings, written here."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from .config import Settings
from .contract import SLOTS
from .keys import KEYS, SECRETS_DIR

# The chart these values are for (the component deploys it; `bluegreen repair` upgrades with it).
CHART_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chart")


def chart_values(settings: Settings, secret_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The chart's values. `secret_names`: per slot, the name of the Secret the stack made for it
    (the values themselves never go into the chart's values, which Helm keeps in the cluster)."""
    values: dict[str, Any] = {
        "ingress": {"enabled": True},
        "stageAccess": {"basicAuthSecret": settings.stage_auth_secret},
        "secrets": {"dir": SECRETS_DIR},
        "imagePullSecrets": [{"name": name} for name in (*settings.image_pull_secrets, settings.registry_secret)
                             if name],
    }
    # appName goes to nameOverride (its row's `chart` path), and the release name is the app name
    # too, so the Service names are `<app>-prod` and `<app>-stage`.
    for key in KEYS:
        if key.chart:
            *parents, name = key.chart.split(".")
            node = values
            for parent in parents:
                node = node.setdefault(parent, {})
            node[name] = _plain(getattr(settings, key.field))
    for slot in SLOTS:
        state = settings.slot(slot)
        values[slot] = {"enabled": state.enabled, "image": state.image, "replicas": state.replicas,
                        "env": [{"name": k, "value": v} for k, v in sorted(settings.slot_env(slot).items())],
                        "version": version_label(state.image),
                        "secretName": (secret_names or {}).get(slot, "")}
    return values


def _plain(value: Any) -> Any:
    """A setting as the chart's values hold it: plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def helm_json(values: Any) -> str:
    """Values (or any JSON data) as text for Helm's YAML parser (`helm --values`; kube-score's is
    the same): JSON, so every string stays quoted (YAML would read a bare y, 0 or null as a boolean,
    a number or nothing), with non-ASCII written as UTF-8 rather than \\u escapes (the parser cannot
    join an escaped surrogate pair), and the characters YAML folds or refuses when raw (C1 controls,
    NEL, line separators, BOM) escaped."""
    return re.sub(r"[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]", lambda m: f"\\u{ord(m[0]):04x}",
                  json.dumps(values, ensure_ascii=False))


def version_label(image: str) -> str:
    """The app.kubernetes.io/version of a slot: its image's tag, else its digest's first 12 hex
    digits (a label value: at most 63 characters, starting and ending with a letter or digit; a tag
    may start with '_')."""
    name, _, digest = image.partition("@")
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""
    label = tag or (digest.replace("sha256:", "sha256-")[:19] if digest else "")
    return label.lstrip("._-")[:63].rstrip("._-")
