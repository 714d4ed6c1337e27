"""Tier 4: the manifest Helm records for a release is what `helm template` renders for the same
values, so an object diff of the deployed revision against a render shows only real changes.

Installs the chart with plain helm into a namespace of its own (as the Release does: values from
the stack config, OpenAPI validation off), upgrades it with a flip and rolls it back with the
tool's own helm.upgrade and helm.rollback, and compares each recorded revision, decoded from its
Secret, with helm.template of its values. (test_release_cycle.py checks the same of the record the
Pulumi Release makes.)"""

from __future__ import annotations

import json
import subprocess
import tempfile

import pytest

from bluegreen.config import parse
from bluegreen.release import helm
from bluegreen.release.manifests import CHANGED, diff
from bluegreen.release.manifests import parse as parse_manifest
from bluegreen.values import CHART_DIR, chart_values
from tests.e2e.conftest import INGRESS_CLASS, V1, V2, fresh_namespace, helm_record, wait_until

pytestmark = pytest.mark.e2e

NS = "bg-e2e-record"
RELEASE = "web"
CONFIG = {"namespace": NS, "prodHost": "shop.record.example.com", "stageHost": "stage.shop.record.example.com",
          "ingressClass": INGRESS_CLASS, "productionSlot": "blue",
          "blue": {"enabled": True, "image": V1, "replicas": 1}, "green": {"enabled": True, "image": V2, "replicas": 1}}
VALUES = chart_values(parse(CONFIG))
FLIPPED = chart_values(parse({**CONFIG, "productionSlot": "green"}))
TIMEOUT = 180


@pytest.fixture(scope="module")
def installed(pulumi_env, kube):
    fresh_namespace(kube, NS)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as values:
        json.dump(VALUES, values)
        values.flush()
        done = subprocess.run(["helm", "install", RELEASE, CHART_DIR, "-n", NS, "--create-namespace", "-f", values.name,
                               "--disable-openapi-validation", "--wait", "--timeout", f"{TIMEOUT}s"],
                              capture_output=True, text=True, env=pulumi_env)
    assert done.returncode == 0, done.stdout + done.stderr
    yield kube
    subprocess.run(["helm", "uninstall", RELEASE, "-n", NS, "--wait"], env=pulumi_env, check=False)
    kube.request("DELETE", f"/api/v1/namespaces/{NS}")


def newest_record(kube) -> helm.Record:
    return helm_record(kube, NS, RELEASE)


def test_the_recorded_manifest_is_the_render_of_the_recorded_values(installed):
    record = newest_record(installed)
    assert (record.revision, record.status, record.values) == (1, "deployed", VALUES)
    assert sorted(f"{kind}/{name}" for _, kind, _, name in parse_manifest(record.manifest, NS)) == [
        "Deployment/web-blue", "Deployment/web-green", "Ingress/web", "Ingress/web-stage", "NetworkPolicy/web",
        "PodDisruptionBudget/web-blue", "PodDisruptionBudget/web-green", "Service/web-prod", "Service/web-stage"]
    assert [h for h in record.hooks if "web-test-stage" in h]  # the test pod: kept apart, never rendered by template
    assert diff(record.manifest, helm.template(CHART_DIR, RELEASE, NS, record.values), NS) == []


def test_a_flip_and_a_rollback_record_exactly_their_renders(installed):
    first = newest_record(installed)
    helm.upgrade(RELEASE, CHART_DIR, NS, FLIPPED, TIMEOUT)
    flipped = newest_record(installed)
    assert (flipped.revision, flipped.status, flipped.values) == (first.revision + 1, "deployed", FLIPPED)
    assert diff(flipped.manifest, helm.template(CHART_DIR, RELEASE, NS, FLIPPED), NS) == []
    changes = diff(first.manifest, flipped.manifest, NS)
    assert [(c.action, c.kind, c.name, [(f.path, f.old, f.new) for f in c.fields]) for c in changes] == [
        (CHANGED, "Service", "web-prod", [("spec.selector.slot", "blue", "green")]),
        (CHANGED, "Service", "web-stage", [("spec.selector.slot", "green", "blue")])]
    wait_until("prod selects green", lambda: installed.service(NS, "web-prod")["spec"]["selector"]["slot"] == "green")

    helm.rollback(RELEASE, first.revision, NS, TIMEOUT)
    rolled = newest_record(installed)
    assert (rolled.revision, rolled.values) == (flipped.revision + 1, VALUES)
    assert diff(rolled.manifest, helm.template(CHART_DIR, RELEASE, NS, VALUES), NS) == []
    assert installed.service(NS, "web-prod")["spec"]["selector"]["slot"] == "blue"
