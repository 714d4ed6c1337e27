"""Settings -> the chart's values. The only place that knows the chart's value names."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from .config import SECRETS_DIR, Settings
from .contract import SLOTS

# The chart these values are for (the component deploys it; `bluegreen repair` upgrades with it).
CHART_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chart")


def chart_values(settings: Settings, secret_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The chart's values. `secret_names`: per slot, the name of the Secret the stack made for it
    (the values themselves never go into the chart's values, which Helm keeps in the cluster)."""
    values: dict[str, Any] = {
        # Release name == app name, so the Service names are `<app>-prod` and `<app>-stage`.
        "nameOverride": settings.app_name,
        "productionSlot": settings.production_slot,
        "containerPort": settings.container_port,
        "healthPath": settings.health_path,
        "readOnlyRootFilesystem": settings.read_only_root_filesystem,
        "resources": {kind: dict(q) for kind, q in settings.resources.items()},
        "ingress": {
            "enabled": True,
            "className": settings.ingress_class,
            "prodHost": settings.prod_host,
            "stageHost": settings.stage_host,
            "tlsSecretName": settings.tls_secret,
            "annotations": dict(settings.ingress_annotations),
        },
        "routing": settings.routing,
        "gateway": dict(settings.gateway),
        "stageAccess": {"mode": settings.stage_access, "allowFrom": list(settings.stage_allow_from),
                        "basicAuthSecret": settings.stage_auth_secret},
        "secrets": {"as": settings.secrets_as, "dir": SECRETS_DIR},
        "imagePullSecrets": [{"name": name} for name in (*settings.image_pull_secrets, settings.registry_secret)
                             if name],
        "imagePullPolicy": settings.image_pull_policy,
        "networkPolicy": {key: settings.network_policy[key] for key in ("enabled", "ingressController", "from")},
    }
    for slot in SLOTS:
        state = settings.slot(slot)
        values[slot] = {"enabled": state.enabled, "image": state.image, "replicas": state.replicas,
                        "env": [{"name": k, "value": v} for k, v in sorted(settings.slot_env(slot).items())],
                        "version": version_label(state.image),
                        "secretName": (secret_names or {}).get(slot, "")}
    return values


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
