"""Tier 3: the chart's names and labels are contract.py's (the release tool and the exported
selectors use contract.py; the chart's templates, _helpers.tpl, write their own): rendered by the
real helm CLI and compared with what contract.py computes, for an app named otherwise than the
chart and for every step of a release."""

import pytest

from bluegreen.config import parse
from bluegreen.contract import CONTAINER, ROLES, SLOT_LABEL, SLOTS, Names, role_slots, selected_slot
from bluegreen.values import chart_values
from tests.chart.render import template
from tests.scenarios import SCENARIOS

APPS = [("web", "shop"), ("api", "payments")]


def render(helm, scenario, app: str, namespace: str):
    # The component's release name is the app name (component.py); so is the chart's nameOverride.
    values = chart_values(parse({**scenario.config, "appName": app, "namespace": namespace}))
    return template(helm, values, release=app, namespace=namespace)


@pytest.mark.parametrize("app,namespace", APPS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_services_are_named_and_select_as_contract_says(helm, scenario, app, namespace):
    names, manifest = Names(namespace, app), render(helm, scenario, app, namespace)
    assert sorted(s["metadata"]["name"] for s in manifest.all("Service")) == sorted(names.service(r) for r in ROLES)
    for role, slot in role_slots(scenario.prod).items():
        service = manifest.get("Service", names.service(role))
        assert service["spec"]["selector"] == names.pod_selector(slot)
        assert selected_slot(service) == slot


@pytest.mark.parametrize("app,namespace", APPS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_deployments_are_named_and_labelled_as_contract_says(helm, scenario, app, namespace):
    names, manifest = Names(namespace, app), render(helm, scenario, app, namespace)
    deployed = [slot for slot in SLOTS if scenario.images[slot]]
    assert sorted(d["metadata"]["name"] for d in manifest.all("Deployment")) == sorted(
        names.deployment(slot) for slot in deployed)
    for slot in deployed:
        deployment = manifest.get("Deployment", names.deployment(slot))
        assert deployment["spec"]["selector"]["matchLabels"] == names.pod_selector(slot)
        pods = deployment["spec"]["template"]["metadata"]["labels"]
        assert names.pod_selector(slot).items() <= pods.items()
        assert deployment["metadata"]["labels"][SLOT_LABEL] == slot
        # deploy --from-stack reads the app container's imageID by this name
        assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == [CONTAINER]
