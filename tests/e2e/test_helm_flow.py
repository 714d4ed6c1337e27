"""Tier 4: the chart on its own, driven by the article's plain helm commands on the real node, with
real requests to the prod host counted through every step, and `helm test` run in the cluster."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO_ROOT
from tests.e2e import conftest as e2e
from tests.e2e.conftest import INGRESS_CLASS, V1, V2, counted, fetch, fresh_namespace, version_of, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("vegeta")]  # prod traffic is counted

NS = "bg-e2e-helm"
RELEASE = "shop"
# Plain helm, no nameOverride: objects are named <release>-<chart> (helm create's convention).
POD_LABELS = {"app.kubernetes.io/name": "bluegreen", "app.kubernetes.io/instance": RELEASE}
PROD_HOST, STAGE_HOST = "shop.helm.example.com", "stage.shop.helm.example.com"
# The local cluster's ingress class and hosts; `helm test` runs the demo app's own HTTP check.
LOCAL = (f"--set ingress.className={INGRESS_CLASS} --set ingress.prodHost={PROD_HOST} "
         f"--set ingress.stageHost={STAGE_HOST} --set tests.image={V1} --set 'tests.command={{/app,check}}'")


def sh(script: str, env) -> str:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                          env=env, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def helm_release(pulumi_env, kube, ingress):
    fresh_namespace(kube, NS)
    pulumi_env = {**pulumi_env, "BLUEGREEN_INGRESS": ingress}
    yield pulumi_env
    subprocess.run(["helm", "uninstall", RELEASE, "-n", NS, "--wait"], env=pulumi_env, check=False)
    kube.request("DELETE", f"/api/v1/namespaces/{NS}")


def serving(kube, role, slot):
    return e2e.serving(kube, NS, f"shop-bluegreen-{role}", POD_LABELS, slot)


def test_articles_helm_upgrade_flow_flips_the_selectors(helm_release, kube):
    env = helm_release
    ingress = env["BLUEGREEN_INGRESS"]
    chart = "./bluegreen/chart"
    notes = sh(f"helm install {RELEASE} {chart} -n {NS} --create-namespace --set blue.image={V1} {LOCAL} "
               "--wait --timeout 120s", env)
    assert f"prod  -> slot blue: {V1} x2" in notes  # NOTES.txt tells the operator what is live
    assert "stage -> slot green: empty (no Deployment)" in notes
    wait_until("prod serves blue", lambda: serving(kube, "prod", "blue"))
    wait_until("prod answers from blue", lambda: fetch(ingress, PROD_HOST) == (200, "blue", version_of(V1)))

    # The article's release script: read the live slot, deploy into the other one.
    current = sh(f"helm get values --all {RELEASE} -n {NS} | grep -Po '^productionSlot: \\K.*'", env)
    assert current == "blue"
    new_slot = "green" if current == "blue" else "blue"
    with counted("helm: deploy v2 into green", ingress, PROD_HOST, version_of(V1)):
        sh(f"helm upgrade {RELEASE} {chart} -n {NS} --reuse-values --set {new_slot}.enabled=true "
           f"--set {new_slot}.image={V2} --wait --timeout 120s", env)
    wait_until("stage serves green", lambda: serving(kube, "stage", "green"))
    assert serving(kube, "prod", "blue")
    assert fetch(ingress, STAGE_HOST) == (200, "green", version_of(V2))

    # Test the release through stage, in the cluster: `helm test` (the chart's test pod).
    # (The chart deletes a test pod that succeeded, so there are no logs to show here.)
    tested = sh(f"helm test {RELEASE} -n {NS} --timeout 60s", env)
    assert "Phase:          Succeeded" in tested, tested

    # Promote.
    with counted("helm: promote (--reuse-values --set productionSlot)", ingress, PROD_HOST, version_of(V2)):
        sh(f"helm upgrade {RELEASE} {chart} -n {NS} --reuse-values --set productionSlot={new_slot} "
           "--wait --timeout 120s", env)
    wait_until("prod serves green", lambda: serving(kube, "prod", "green"))
    assert serving(kube, "stage", "blue")

    # Optionally delete the old slot.
    with counted("helm: delete the old slot", ingress, PROD_HOST, version_of(V2)):
        sh(f"helm upgrade {RELEASE} {chart} -n {NS} --reuse-values --set {current}.enabled=false "
           "--wait --timeout 120s", env)
    wait_until("shop-bluegreen-blue is gone", lambda: kube.deployment(NS, "shop-bluegreen-blue") is None)
    assert serving(kube, "prod", "green")


def test_chart_refuses_to_send_prod_to_an_empty_slot(helm_release, kube):
    done = subprocess.run(["helm", "upgrade", RELEASE, "./bluegreen/chart", "-n", NS, "--reuse-values",
                           "--set", "productionSlot=blue"], capture_output=True, text=True, env=helm_release,
                          cwd=REPO_ROOT)
    assert done.returncode != 0
    assert "productionSlot is blue but blue.enabled is false: prod would have no pods" in done.stderr
    assert serving(kube, "prod", "green")
