"""Tier 4: `bluegreen deploy --from-stack staging` on the real node: the project's two stacks,
staging and production (their own Pulumi.<stack>.yaml: namespaces, hosts, replicas and resources),
in the one local cluster. V2 is deployed to staging and promoted; production then gets exactly the
digest staging's prod pods run, pinned, in its idle slot, and is promoted. Requests to BOTH prod
hosts are counted through the ingress during every step that changes anything, and none may fail.
The refusals for a too recent promotion (--min-age) and for the image production already runs
are seen for real.
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import time

import pytest
import yaml
from pulumi import automation as auto

from tests.conftest import REPO_ROOT
from tests.e2e import conftest as e2e
from tests.e2e.conftest import INGRESS_CLASS, V1, V2, counted, fetch, fresh_namespace, version_of, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("vegeta")]  # prod traffic is counted

STACKS = ("staging", "production")
APP_PODS = {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web"}
DIGEST_PREFIX = "bluegreen.local/demo@sha256:"
TIMES: dict[str, float] = {}  # step -> seconds the command took


def stack_file(name: str) -> dict:
    with open(REPO_ROOT / f"Pulumi.{name}.yaml") as f:
        return yaml.safe_load(f)["config"]


CONFIG = {name: stack_file(name) for name in STACKS}
NS = {name: CONFIG[name]["bluegreen:namespace"] for name in STACKS}
PROD_HOST = {name: CONFIG[name]["bluegreen:prodHost"] for name in STACKS}


@pytest.fixture(scope="module")
def tools(project_dir, pulumi_env, kube, ingress):
    """Both stacks created from the project's own stack files, with what the local node needs on
    top for production: the demo image instead of the registry's, 2 replicas per slot (the node's
    room), and the local ingress class. Each is deployed with a plain `pulumi up`."""
    stacks = {}
    for name in STACKS:
        fresh_namespace(kube, NS[name])
        shutil.copy(REPO_ROOT / f"Pulumi.{name}.yaml", project_dir / f"Pulumi.{name}.yaml")
        stack = auto.create_or_select_stack(name, work_dir=str(project_dir))
        if name == "production":
            for key, value in {"blue.image": V1, "blue.replicas": "2", "green.replicas": "2",
                               "ingressClass": INGRESS_CLASS}.items():
                stack.set_config(key, auto.ConfigValue(value), path=True)
        stacks[name] = stack
    try:
        for stack in stacks.values():
            stack.up(on_output=print, color="never")
        env = {**pulumi_env, "BLUEGREEN_INGRESS": ingress}
        run = {name: e2e.ReleaseTool(name, project_dir, env) for name in STACKS}
        for name in STACKS:
            run[name].stack = stacks[name]
        yield run
    finally:
        for name, stack in stacks.items():
            with contextlib.suppress(auto.CommandError):
                stack.destroy(on_output=print, color="never")
                stack.workspace.remove_stack(name)
            (project_dir / f"Pulumi.{name}.yaml").unlink(missing_ok=True)
        e2e.SECTIONS["deploy --from-stack: seconds per command"] = [f"{step}: {seconds} s"
                                                                     for step, seconds in TIMES.items()]


@contextlib.contextmanager
def both_prods(step: str, ingress: str, staging: str, production: str):
    """Requests to both prod hosts counted during the step; each must end up serving only its version."""
    with counted(f"{step}: staging prod", ingress, PROD_HOST["staging"], version_of(staging)), \
            counted(f"{step}: production prod", ingress, PROD_HOST["production"], version_of(production)):
        started = time.monotonic()
        yield
        TIMES[step] = round(time.monotonic() - started, 1)


def image_ids(kube, stack: str, slot: str) -> set[str]:
    """The imageIDs the node reports for a slot's ready pods (read here, not by the release tool)."""
    found = set()
    for pod in kube.pods(NS[stack], {**APP_PODS, "slot": slot}):
        if any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])):
            found |= {status["imageID"] for status in pod["status"]["containerStatuses"]}
    return found


def unchanged(kube, stack: str) -> tuple:
    deployments = {slot: kube.deployment(NS[stack], f"web-{slot}") for slot in ("blue", "green")}
    return (kube.service(NS[stack], "web-prod")["spec"]["selector"]["slot"],
            {slot: d and d["metadata"]["generation"] for slot, d in deployments.items()})


def test_staging_releases_v2(tools, kube, ingress):
    with both_prods("staging: deploy V2 + promote", ingress, V2, V1):
        tools["staging"]("deploy", V2)
        tools["staging"]("promote")
    assert e2e.serving(kube, NS["staging"], "web-prod", APP_PODS, "green")
    assert fetch(ingress, PROD_HOST["staging"])[:1] == (200,)


def test_a_promotion_younger_than_min_age_is_refused(tools, kube):
    before = unchanged(kube, "production")
    started = time.monotonic()
    result = tools["production"]("deploy", "--from-stack", "staging", "--min-age", "1h", expect=2)
    TIMES["production: deploy --from-stack staging --min-age 1h (refused)"] = round(time.monotonic() - started, 1)
    assert result["refused"] is True
    assert "stack staging's prod (green) was promoted" in result["error"] and "--min-age is 1h" in result["error"]
    assert unchanged(kube, "production") == before


def test_a_source_that_is_the_target_or_does_not_exist_is_refused(tools, kube):
    before = unchanged(kube, "production")
    result = tools["production"]("deploy", "--from-stack", "production", expect=2)
    assert "--from-stack is 'production', the stack this command deploys to" in result["error"]
    result = tools["production"]("deploy", "--from-stack", "qa", expect=2)
    assert "--from-stack 'qa': stack 'qa' does not exist" in result["error"]
    assert "The stacks of this project: production, staging" in result["error"]
    assert unchanged(kube, "production") == before


def test_production_gets_stagings_digest_in_its_idle_slot(tools, kube, ingress, pulumi_env, tmp_path):
    staged = image_ids(kube, "staging", "green")
    assert len(staged) == 1 and next(iter(staged)).startswith(DIGEST_PREFIX), staged
    running = next(iter(staged))
    with both_prods("production: deploy --from-stack staging", ingress, V2, V1):
        # SOURCE's cluster through a kubeconfig of its own (here a copy: the same cluster).
        source_kubeconfig = tmp_path / "staging-kubeconfig"
        shutil.copy(pulumi_env["KUBECONFIG"], source_kubeconfig)
        result = tools["production"]("deploy", "--from-stack", "staging", "--min-age", "1s",
                                     "--from-kubeconfig", str(source_kubeconfig))
    source = result["source"]
    assert (source["stack"], source["slot"], source["imageID"], source["tag"]) == ("staging", "green", running, "2.0.0")
    pinned = f"bluegreen.local/demo:2.0.0@{running.split('@')[1]}"
    assert source["image"] == pinned
    assert result["slot"] == "green" and result["state"]["slots"]["green"]["image"] == pinned
    deployment = kube.deployment(NS["production"], "web-green")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == pinned
    assert image_ids(kube, "production", "green") == {running}  # the same bytes staging runs
    assert e2e.serving(kube, NS["production"], "web-prod", APP_PODS, "blue")
    # The promotion time is the staging update that flipped productionSlot to green.
    history = tools["staging"].stack.history(page_size=10, page=1)
    flip = next(h for h in history if h.message.startswith("bluegreen promote: green"))
    started = flip.start_time if flip.start_time.tzinfo else flip.start_time.replace(tzinfo=datetime.UTC)
    assert datetime.datetime.fromisoformat(source["promoted"]) == started.replace(microsecond=0)
    message = tools["production"].stack.history(page_size=1, page=1)[0].message
    assert message.startswith(f"bluegreen deploy: green <- staging's prod ({running}, tag 2.0.0, promoted "), message


def test_production_promotes_the_carried_image(tools, kube, ingress):
    with both_prods("production: promote", ingress, V2, V2):
        result = tools["production"]("promote")
    assert result["state"]["productionSlot"] == "green"
    assert e2e.serving(kube, NS["production"], "web-prod", APP_PODS, "green")
    wait_until("production's prod answers from green", lambda: fetch(ingress, PROD_HOST["production"])[:2]
               == (200, "green"))


def test_the_image_production_already_runs_is_refused(tools, kube):
    before = unchanged(kube, "production")
    result = tools["production"]("deploy", "--from-stack", "staging", expect=2)
    assert "stack production's prod (green) already runs bluegreen.local/demo@sha256:" in result["error"]
    assert unchanged(kube, "production") == before
