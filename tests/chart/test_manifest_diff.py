"""Tier 3: the object diff of two real renders of the chart (bluegreen/release/helm.py's template,
bluegreen/release/manifests.py's diff): a flip, a deploy, a retire, a chart edit and a chart
version bump each change exactly the objects and fields they should, and nothing else."""

from __future__ import annotations

import os
import shutil

import pytest
import yaml

from bluegreen.config import parse
from bluegreen.release import helm
from bluegreen.release.manifests import ADDED, CHANGED, REMOVED, diff, render_text
from bluegreen.values import CHART_DIR, chart_values
from tests.scenarios import SCENARIOS

STEPS = {s.name: s for s in SCENARIOS}
NAMESPACE = "shop"


@pytest.fixture(autouse=True)
def helm_on_path(helm, monkeypatch):
    """helm.py runs the `helm` on PATH: the toolchain's."""
    monkeypatch.setenv("PATH", f"{os.path.dirname(helm)}{os.pathsep}{os.environ['PATH']}")


def render(step: str, chart: str = CHART_DIR) -> str:
    return helm.template(chart, "web", NAMESPACE, chart_values(parse(STEPS[step].config)))


def summary(changes):
    """(action, kind/name, [(path, old, new)]) per object."""
    return [(c.action, f"{c.kind}/{c.name}", [(f.path, f.old, f.new) for f in c.fields]) for c in changes]


def test_the_same_values_render_the_same_objects():
    # Nothing in the chart changes from one render to the next (no checksum, random or time values).
    assert diff(render("green-staged"), render("green-staged"), NAMESPACE) == []


def test_a_flip_changes_only_the_two_services_selectors():
    changes = diff(render("green-staged"), render("promoted-to-green"), NAMESPACE)
    assert summary(changes) == [
        (CHANGED, "Service/web-prod", [("spec.selector.slot", "blue", "green")]),
        (CHANGED, "Service/web-stage", [("spec.selector.slot", "green", "blue")])]
    assert render_text(changes) == (
        "~ Service shop/web-prod (changed)\n"
        '    ~ spec.selector.slot: "blue" -> "green"\n'
        "~ Service shop/web-stage (changed)\n"
        '    ~ spec.selector.slot: "green" -> "blue"\n'
        "2 changed.\n")
    back = diff(render("promoted-to-green"), render("rolled-back"), NAMESPACE)
    assert summary(back) == [
        (CHANGED, "Service/web-prod", [("spec.selector.slot", "green", "blue")]),
        (CHANGED, "Service/web-stage", [("spec.selector.slot", "blue", "green")])]


def test_deploying_the_idle_slot_adds_its_deployment_and_budget_and_fills_stage():
    changes = diff(render("blue-live"), render("green-staged"), NAMESPACE)
    assert summary(changes) == [
        (ADDED, "PodDisruptionBudget/web-green", []),
        (CHANGED, "Service/web-stage", [("metadata.annotations", {"kube-score/ignore": "service-targets-pod"},
                                         changes[1].fields[0].new)]),
        (ADDED, "Deployment/web-green", [])]
    assert changes[1].fields[0].action == REMOVED  # stage is no longer empty
    added = changes[2].object
    assert added["spec"]["template"]["spec"]["containers"][0]["image"] == STEPS["green-staged"].images["green"]


def test_retiring_a_slot_removes_its_deployment_and_budget():
    changes = diff(render("promoted-to-green"), render("blue-retired"), NAMESPACE)
    assert [(c.action, f"{c.kind}/{c.name}") for c in changes] == [
        (CHANGED, "Service/web-stage"), (REMOVED, "PodDisruptionBudget/web-blue"), (REMOVED, "Deployment/web-blue")]
    assert [(f.path, f.action) for f in changes[0].fields] == [("metadata.annotations", ADDED)]


@pytest.fixture
def chart_copy(tmp_path):
    copy = tmp_path / "chart"
    shutil.copytree(CHART_DIR, copy)
    return copy


def test_a_chart_edit_changes_the_deployments_probe(chart_copy):
    template = chart_copy / "templates" / "deployment.yaml"
    source = template.read_text()
    probe = "          readinessProbe:\n            httpGet:\n              path: {{ $.Values.healthPath | quote }}\n" \
            "              port: http\n            periodSeconds: 5\n"
    assert source.count(probe) == 1
    template.write_text(source.replace(probe, probe.replace("periodSeconds: 5", "periodSeconds: 2")))
    changes = diff(render("green-staged"), render("green-staged", str(chart_copy)), NAMESPACE)
    path = "spec.template.spec.containers[name=app].readinessProbe.periodSeconds"
    assert summary(changes) == [(CHANGED, "Deployment/web-blue", [(path, 5, 2)]),
                                (CHANGED, "Deployment/web-green", [(path, 5, 2)])]
    assert render_text(changes) == (
        "~ Deployment shop/web-blue (changed)\n"
        f"    ~ {path}: 5 -> 2\n"
        "~ Deployment shop/web-green (changed)\n"
        f"    ~ {path}: 5 -> 2\n"
        "2 changed.\n")


def test_a_chart_version_bump_changes_only_the_chart_label_of_every_object(chart_copy):
    # Not ignored: Helm applies the new label. It is on the objects, not on the pod template, so
    # no pod restarts for it.
    meta = chart_copy / "Chart.yaml"
    chart = yaml.safe_load(meta.read_text())
    meta.write_text(meta.read_text().replace(f"version: {chart['version']}", "version: 9.9.9"))
    old, new = render("green-staged"), render("green-staged", str(chart_copy))
    changes = diff(old, new, NAMESPACE)
    assert len(changes) == len([d for d in yaml.safe_load_all(old) if d])
    for change in changes:
        assert [(f.path, f.old, f.new) for f in change.fields] == [
            ('metadata.labels["helm.sh/chart"]', f"bluegreen-{chart['version']}", "bluegreen-9.9.9")], change
