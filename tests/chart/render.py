"""Renders the chart with the real helm CLI and reads what Kubernetes would receive."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass

import yaml

from bluegreen.values import helm_json
from tests.conftest import REPO_ROOT

CHART = REPO_ROOT / "bluegreen" / "chart"
# Pinned so that rendering does not depend on helm's built-in default cluster version.
KUBE_VERSION = "1.34.0"


class HelmError(Exception):
    pass


@dataclass
class Manifest:
    objects: list[dict]

    def get(self, kind: str, name: str) -> dict:
        matches = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        assert len(matches) == 1, f"{kind}/{name}: found {len(matches)} in {self.names()}"
        return matches[0]

    def all(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def names(self) -> list[str]:
        return [f"{o['kind']}/{o['metadata']['name']}" for o in self.objects]

    def deployments_selected_by(self, service_name: str) -> list[str]:
        """The Deployments whose pods a Service's selector matches, as Kubernetes would decide."""
        selector = self.get("Service", service_name)["spec"]["selector"]
        return sorted(
            d["metadata"]["name"] for d in self.all("Deployment")
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        )


def template(helm: str, values: dict | None = None, sets: list[str] = (), release: str = "web",
             namespace: str = "shop", chart: str = str(CHART)) -> Manifest:
    args = [helm, "template", release, chart, "--namespace", namespace, "--kube-version", KUBE_VERSION]
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as values_file:
        if values is not None:
            values_file.write(helm_json(values))
            values_file.flush()
            args += ["--values", values_file.name]
        for item in sets:
            args += ["--set", item]
        done = subprocess.run(args, capture_output=True, text=True, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise HelmError(done.stderr)
    return Manifest([doc for doc in yaml.safe_load_all(done.stdout) if doc])
