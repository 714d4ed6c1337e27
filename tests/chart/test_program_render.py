"""Tiers 2 and 3 together: the Release that __main__.py builds, rendered by the real helm CLI."""

import pytest

from tests.chart.render import template
from tests.mocks.harness import run_program
from tests.scenarios import SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_program_release_renders_prod_on_production_slot(helm, scenario, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    release = run_program(scenario.config).release.inputs
    manifest = template(helm, release["values"], release=release["name"], namespace=release["namespace"],
                        chart=release["chart"])
    assert manifest.deployments_selected_by("web-prod") == [f"web-{scenario.prod}"]
    stage = manifest.deployments_selected_by("web-stage")
    assert stage == ([f"web-{scenario.stage}"] if scenario.images[scenario.stage] else [])
    prod_pods = manifest.get("Deployment", f"web-{scenario.prod}")["spec"]["template"]["metadata"]["labels"]
    assert prod_pods["slot"] == scenario.prod


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_the_exported_selectors_are_the_rendered_ones(helm, scenario, repo_root, monkeypatch):
    """The program exports the Services' selectors so that a preview shows the flip (a Release's
    preview diffs only its input values): they must be the ones the chart renders."""
    monkeypatch.chdir(repo_root)
    run = run_program(scenario.config)
    release = run.release.inputs
    manifest = template(helm, release["values"], release=release["name"], namespace=release["namespace"],
                        chart=release["chart"])
    assert manifest.get("Service", "web-prod")["spec"]["selector"] == run.outputs["prodSelector"]
    assert manifest.get("Service", "web-stage")["spec"]["selector"] == run.outputs["stageSelector"]
