"""Tier 4: a whole release with plain Pulumi steps (config set + up), on the real node.

The tests run in order and share one stack, like a user's release: first deploy, deploy v2 to
green, preview the promotion, promote, roll back, promote again, retire, next release, a second
environment, destroy. What happens is read back from the Kubernetes API (Service selectors,
EndpointSlices, Deployments) and from real requests to the prod host through the ingress, counted
during every update: none may fail, and prod must end up serving only the expected version.
"""

from __future__ import annotations

import re

import pytest
from pulumi import automation as auto

from bluegreen.release import helm
from bluegreen.release.kube import EndpointWatch
from bluegreen.release.manifests import CHANGED, diff
from bluegreen.values import CHART_DIR
from tests.e2e import conftest as e2e
from tests.e2e.conftest import (
    INGRESS_CLASS,
    V1,
    V2,
    V3,
    counted,
    fetch,
    fresh_namespace,
    helm_record,
    version_of,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("vegeta")]  # prod traffic is counted

NS = "bg-e2e-staging"
PROD_HOST, STAGE_HOST = "shop.e2e.example.com", "stage.shop.e2e.example.com"
WEB_PODS = {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web"}


class Cycle:
    """The stack under test, driven like a user: `pulumi config set [--path]`, then `pulumi up`."""

    def __init__(self, project_dir, stack_name, namespace):
        self.stack = auto.create_or_select_stack(stack_name, work_dir=str(project_dir))
        self.namespace = namespace

    def config(self, **settings):
        for key, value in settings.items():
            path = key.replace("__", ".")
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            self.stack.set_config(path, auto.ConfigValue(text), path=True)

    def up(self):
        return self.stack.up(on_output=print, color="never")


@pytest.fixture(scope="module")
def cycle(project_dir, kube, ingress):
    fresh_namespace(kube, NS)
    fresh_namespace(kube, "bg-e2e-production")
    cycle = Cycle(project_dir, "e2e-staging", NS)
    cycle.ingress = ingress
    cycle.config(namespace=NS, prodHost=PROD_HOST, stageHost=STAGE_HOST, ingressClass=INGRESS_CLASS,
                 productionSlot="blue", blue__enabled=True, blue__image=V1, blue__replicas=2,
                 green__enabled=False, helmTimeoutSeconds=120)
    yield cycle
    cycle.stack.destroy(on_output=print, color="never")
    cycle.stack.workspace.remove_stack(cycle.stack.name)


def selector_slot(kube, service):
    found = kube.service(NS, service)
    return found["spec"]["selector"]["slot"] if found else None


def serving(kube, role, slot):
    return e2e.serving(kube, NS, f"web-{role}", WEB_PODS, slot)


def watched_up(cycle, kube, name, image):
    """`pulumi up` with prod's Endpoints polled and real requests to the prod host counted; prod
    must end up serving only `image`."""
    with (counted(f"pulumi up: {name}", cycle.ingress, PROD_HOST, version_of(image)),
          EndpointWatch(kube, NS, "web-prod") as watch):
        result = cycle.up()
    return result, watch


def answers(cycle, host, slot, image):
    return fetch(cycle.ingress, host) == (200, slot, version_of(image))


def test_first_up_serves_blue(cycle, kube):
    result = cycle.up()
    assert result.summary.result == "succeeded"
    assert result.outputs["productionSlot"].value == "blue"
    assert result.outputs["prodSelector"].value["slot"] == "blue"
    wait_until("prod Endpoints = the blue pods", lambda: serving(kube, "prod", "blue"))
    assert kube.deployment(NS, "web-green") is None
    assert kube.endpoints(NS, "web-stage").ready == []
    wait_until("prod answers from blue through the ingress", lambda: answers(cycle, PROD_HOST, "blue", V1))


def test_deploy_v2_into_green_leaves_prod_untouched(cycle, kube):
    before = kube.endpoints(NS, "web-prod").ready
    cycle.config(green__enabled=True, green__image=V2)
    result, watch = watched_up(cycle, kube, "deploy v2 into green", V1)
    assert result.summary.result == "succeeded"
    assert watch.polls and watch.errors == []
    assert {slot for _, slot, _, _ in watch.polls} == {"blue"}
    assert {ready for _, _, ready, _ in watch.polls} == {tuple(before)}  # same Endpoints throughout
    assert kube.endpoints(NS, "web-prod").ready == before
    wait_until("stage Endpoints = the green pods", lambda: serving(kube, "stage", "green"))
    image = kube.deployment(NS, "web-green")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == V2
    wait_until("stage answers from green", lambda: answers(cycle, STAGE_HOST, "green", V2))


def test_preview_of_the_promotion_shows_the_flip_and_changes_nothing(cycle, kube):
    revision = kube.helm_releases(NS, "web")[0]["revision"]
    prod_version = kube.service(NS, "web-prod")["metadata"]["resourceVersion"]
    cycle.config(productionSlot="green")
    preview = cycle.stack.preview(diff=True, color="never")
    assert preview.change_summary.get("update") == 1, preview.change_summary
    out = preview.stdout
    assert 'productionSlot: "blue" => "green"' in out, out  # the Release's values
    assert re.search(r'~ prodSelector\s*: \{[^}]*~ slot\s*: "blue" => "green"', out), out
    assert re.search(r'~ stageSelector\s*: \{[^}]*~ slot\s*: "green" => "blue"', out), out
    assert "1 to update" in out and "3 unchanged" in out, out
    assert kube.helm_releases(NS, "web")[0]["revision"] == revision
    assert kube.service(NS, "web-prod")["metadata"]["resourceVersion"] == prod_version
    assert selector_slot(kube, "web-prod") == "blue"


def test_the_release_record_is_the_charts_render_and_the_promotion_changes_only_the_selectors(cycle, kube):
    # What the Release recorded (Pulumi's provider runs Helm's library) is `helm template` of the
    # recorded values, so the object diff of a pending change shows only what it changes.
    record = helm_record(kube, NS, "web")
    assert diff(record.manifest, helm.template(CHART_DIR, "web", NS, record.values), NS) == []
    promoted = helm.template(CHART_DIR, "web", NS, {**record.values, "productionSlot": "green"})
    assert [(c.action, c.kind, c.name, [(f.path, f.old, f.new) for f in c.fields])
            for c in diff(record.manifest, promoted, NS)] == [
        (CHANGED, "Service", "web-prod", [("spec.selector.slot", "blue", "green")]),
        (CHANGED, "Service", "web-stage", [("spec.selector.slot", "green", "blue")])]


def test_promote_moves_prod_to_green_without_a_gap(cycle, kube):
    result, watch = watched_up(cycle, kube, "promote blue -> green", V2)
    assert result.summary.result == "succeeded"
    assert watch.errors == [] and len(watch.polls) > 10
    assert watch.empty_polls == 0, watch.summary()
    wait_until("prod Endpoints = the green pods", lambda: serving(kube, "prod", "green"))
    assert serving(kube, "stage", "blue")
    assert result.outputs["prodSelector"].value["slot"] == "green"
    assert answers(cycle, PROD_HOST, "green", V2) and answers(cycle, STAGE_HOST, "blue", V1)


def test_rollback_is_a_flip_back(cycle, kube):
    cycle.config(productionSlot="blue")
    result, watch = watched_up(cycle, kube, "rollback green -> blue", V1)
    assert result.summary.result == "succeeded"
    assert watch.empty_polls == 0, watch.summary()
    wait_until("prod Endpoints = the blue pods", lambda: serving(kube, "prod", "blue"))
    assert serving(kube, "stage", "green")


def test_bad_config_fails_before_anything_changes(cycle, kube):
    prod_version = kube.service(NS, "web-prod")["metadata"]["resourceVersion"]
    revision = kube.helm_releases(NS, "web")[0]["revision"]
    cycle.config(productionSlot="purple")
    with pytest.raises(auto.CommandError) as error:
        cycle.up()
    assert "productionSlot is 'purple'; allowed: blue, green" in str(error.value)
    assert "Fix: pulumi config set productionSlot blue" in str(error.value)
    assert kube.service(NS, "web-prod")["metadata"]["resourceVersion"] == prod_version
    assert kube.helm_releases(NS, "web")[0]["revision"] == revision
    assert kube.deployment(NS, "web-green") is not None  # nothing was deleted


def test_promote_again_then_retire_the_old_slot(cycle, kube):
    cycle.config(productionSlot="green")
    _, watch = watched_up(cycle, kube, "promote blue -> green again", V2)
    assert watch.empty_polls == 0, watch.summary()
    cycle.config(blue__enabled=False)
    result, watch = watched_up(cycle, kube, "retire blue", V2)
    assert result.summary.result == "succeeded"
    assert watch.empty_polls == 0
    wait_until("web-blue is gone", lambda: kube.deployment(NS, "web-blue") is None)
    assert serving(kube, "prod", "green")
    assert kube.endpoints(NS, "web-stage").ready == []


def test_next_release_goes_into_the_freed_slot(cycle, kube):
    cycle.config(blue__enabled=True, blue__image=V3)
    result, watch = watched_up(cycle, kube, "deploy v3 into blue", V2)
    assert result.summary.result == "succeeded"
    assert {slot for _, slot, _, _ in watch.polls} == {"green"}
    wait_until("stage Endpoints = the new blue pods", lambda: serving(kube, "stage", "blue"))
    assert kube.deployment(NS, "web-blue")["spec"]["template"]["spec"]["containers"][0]["image"] == V3
    assert serving(kube, "prod", "green")
    wait_until("stage answers from blue v3", lambda: answers(cycle, STAGE_HOST, "blue", V3))


def test_production_stack_does_not_disturb_staging(cycle, project_dir, kube):
    staging_prod = kube.service(NS, "web-prod")["metadata"]["resourceVersion"]
    production = Cycle(project_dir, "e2e-production", "bg-e2e-production")
    production.config(namespace="bg-e2e-production", prodHost="shop.example.com", stageHost="stage.shop.example.com",
                      ingressClass=INGRESS_CLASS, blue__enabled=True, blue__image=V1, blue__replicas=3,
                      helmTimeoutSeconds=120)
    try:
        assert production.up().summary.result == "succeeded"
        wait_until("production prod Endpoints = 3 blue pods",
                   lambda: e2e.serving(kube, "bg-e2e-production", "web-prod", WEB_PODS, "blue", count=3))
        assert kube.service(NS, "web-prod")["metadata"]["resourceVersion"] == staging_prod
        assert serving(kube, "prod", "green")
        wait_until("production's host answers from blue",
                   lambda: fetch(cycle.ingress, "shop.example.com")[:2] == (200, "blue"))
        assert answers(cycle, PROD_HOST, "green", V2)
    finally:
        production.stack.destroy(on_output=print, color="never")
        production.stack.workspace.remove_stack(production.stack.name)
    wait_until("the production namespace is gone", lambda: kube.namespace("bg-e2e-production") is None, timeout=120)
    assert serving(kube, "prod", "green")


def test_destroy_leaves_nothing_behind(cycle, kube):
    cycle.stack.destroy(on_output=print, color="never")
    wait_until("the staging namespace is gone", lambda: kube.namespace(NS) is None, timeout=120)
    assert kube.helm_releases(NS, "web") == []
    assert cycle.stack.export_stack().deployment.get("resources") in (None, [])
