"""Tier 4: `bluegreen promote --check-for --check-every --max-error-rate` on the real node.

The checks repeat through a window against stage before the flip and against prod after it, and
the 5xx share of each Service comes from the local Traefik's own Prometheus metrics. Prod traffic is
counted through every step. The flaky demo build (bluegreen.local/demo:2.0.0-flaky) answers 500 to
30% of its requests while its health path stays OK (it becomes Ready):
- a good release promoted over a 10 s window: every round passes, no prod request fails;
- the flaky release under stage load: refused before the flip, nothing changed, no prod request fails;
- the flaky release with no stage load: the checks pass on stage, prod's errors after the flip breach
  the rate, and prod goes back by itself; the app's own 500s and any other failure are counted apart.
Traefik's service label is read as it really is, for an Ingress's backend and, after the switch to
routing gateway, for an HTTPRoute's.
"""

from __future__ import annotations

import subprocess

import pytest
from pulumi import automation as auto

from bench.traffic import Traffic
from bluegreen.release import metrics
from tests.conftest import REPO_ROOT
from tests.e2e import conftest as e2e
from tests.e2e.conftest import DEMO, INGRESS_CLASS, V1, V2, counted, fetch, fresh_namespace, version_of, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("vegeta")]  # prod traffic is counted

STACK, NS = "e2e-checks", "bg-e2e-checks"
PROD_HOST, STAGE_HOST = "shop.checks.example.com", "stage.shop.checks.example.com"
WEB_PODS = {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web"}
FLAKY = f"{DEMO}:2.0.0-flaky"  # scripts/images/build.py: main.failPercent=30
WINDOW = ["--check-for", "10s", "--check-every", "2s"]
# Where the real metrics text is kept (the unit tests' fixtures were copied from it).
CAPTURE = REPO_ROOT / ".state" / "checks-metrics"


@pytest.fixture(scope="module")
def tool(project_dir, pulumi_env, kube, ingress):
    fresh_namespace(kube, NS)
    stack = auto.create_or_select_stack(STACK, work_dir=str(project_dir))
    for key, value in {"namespace": NS, "prodHost": PROD_HOST, "stageHost": STAGE_HOST,
                       "ingressClass": INGRESS_CLASS, "blue.enabled": "true", "blue.image": V1,
                       "blue.replicas": "2", "green.enabled": "false", "helmTimeoutSeconds": "60"}.items():
        stack.set_config(key, auto.ConfigValue(value), path=True)
    stack.up(on_output=print, color="never")
    metrics_url = subprocess.run([str(e2e.SCRIPTS / "ingress" / "traefik.sh"), "metrics-url"], capture_output=True,
                                 text=True, check=True).stdout.strip()
    env = {**pulumi_env, "BLUEGREEN_INGRESS": ingress, "BLUEGREEN_INGRESS_METRICS": metrics_url}
    run = e2e.ReleaseTool(STACK, project_dir, env)
    run.ingress, run.metrics_url, run.stack = ingress, metrics_url, stack
    yield run
    stack.destroy(on_output=print, color="never")
    stack.workspace.remove_stack(STACK)


def prod_slot(kube) -> str:
    return kube.service(NS, "web-prod")["spec"]["selector"]["slot"]


def serving(kube, role, slot) -> bool:
    return e2e.serving(kube, NS, f"web-{role}", WEB_PODS, slot)


def rounds(result: dict, target: str) -> list[dict]:
    return result["checks"][target]["rounds"]


def test_traefik_counts_the_chart_services_requests(tool):
    """The mapping from Traefik's service label to the chart's Services, on Traefik's real output."""
    before = metrics.counts(metrics.scrape(tool.metrics_url), NS, ["web-prod", "web-stage"])
    answered = [fetch(tool.ingress, PROD_HOST)[0] for _ in range(20)]
    assert answered == [200] * 20
    text = metrics.scrape(tool.metrics_url)
    CAPTURE.mkdir(parents=True, exist_ok=True)
    (CAPTURE / "after-20-prod-requests.prom").write_text(text)
    after = metrics.counts(text, NS, ["web-prod", "web-stage"])
    assert metrics.share(before["web-prod"], after["web-prod"]) == metrics.Share(20, 0)
    assert metrics.share(before["web-stage"], after["web-stage"]) == metrics.Share(0, 0)


def test_a_good_release_passes_every_round(tool, kube):
    tool("deploy", V2)
    wait_until("stage answers from green", lambda: fetch(tool.ingress, STAGE_HOST)[0] == 200)
    with counted("promote V2 over 10 s (every 2 s, at most 1% 5xx)", tool.ingress, PROD_HOST, version_of(V2)):
        result = tool("promote", "--check-url", "{url}/healthz", *WINDOW, "--max-error-rate", "1")
    assert [r["ok"] for r in rounds(result, "stage")] == [True] * 6
    assert [r["ok"] for r in rounds(result, "prod")] == [True] * 6
    prod = result["checks"]["prod"]["errorRate"]["web-prod"]
    assert prod["requests"] > 0 and prod["errors5xx"] == 0, prod
    assert serving(kube, "prod", "green") and result["state"]["productionSlot"] == "green"
    e2e.REPORT["checks (a): ingress metrics over the prod window"] = result["checks"]["prod"]["errorRate"]


def test_a_flaky_release_under_stage_load_is_refused_before_the_flip(tool, kube):
    tool("deploy", FLAKY, "--replace")
    wait_until("stage answers from blue", lambda: fetch(tool.ingress, STAGE_HOST)[2] == version_of(FLAKY))
    (CAPTURE / "before-stage-load.prom").write_text(metrics.scrape(tool.metrics_url))
    with counted("promote flaky under stage load (refused)", tool.ingress, PROD_HOST, version_of(V2)), \
            Traffic(tool.ingress, STAGE_HOST, rate=40, max_seconds=120) as stage:
        code, result = tool.run("promote", *WINDOW, "--max-error-rate", "5")
    (CAPTURE / "after-stage-load.prom").write_text(metrics.scrape(tool.metrics_url))
    assert code == 2, result
    assert "smoke checks against stage failed: Service web-stage answered 5xx" in result["error"], result["error"]
    assert "above --max-error-rate 5%" in result["error"]
    assert "upSeconds" not in result  # the update started ahead never went ahead
    assert prod_slot(kube) == "green" and serving(kube, "prod", "green")
    assert tool("status")["state"]["productionSlot"] == "green"
    figures = stage.summary()
    e2e.REPORT["checks (b): stage load (the flaky release's own 500s)"] = {
        "sent": figures["sent"], "failed": figures["failed"],
        "500 from 2.0.0-flaky": sum(1 for r in stage.responses if r.status == 500 and r.version == "2.0.0-flaky"),
        "stage rounds": rounds(result, "stage")}


def test_a_flaky_release_that_breaches_after_the_flip_is_rolled_back(tool, kube):
    """No stage load: stage's checks pass; prod's load meets the flaky release after the flip."""
    with Traffic(tool.ingress, PROD_HOST, max_seconds=300) as prod:
        code, result = tool.run("promote", "--check-url", "{url}/healthz", *WINDOW, "--max-error-rate", "5")
    assert code == 1, result
    assert "Service web-prod answered 5xx" in result["error"] and "rolled back, prod serves green" in result["error"]
    assert all(r["ok"] for r in rounds(result, "stage"))
    assert not rounds(result, "prod")[-1]["ok"]
    assert result["state"]["productionSlot"] == "green"
    wait_until("prod serves green again", lambda: serving(kube, "prod", "green"))
    assert fetch(tool.ingress, PROD_HOST)[2] == version_of(V2)
    own = [r for r in prod.responses if r.status == 500 and r.version == version_of(FLAKY)]
    other = [r for r in prod.responses if r.failed and r not in own]
    flaky_answers = [r for r in prod.responses if r.version == version_of(FLAKY)]
    e2e.REPORT["checks (c): prod load through the flip and the automatic rollback"] = {
        "sent": len(prod.responses), "answered by 2.0.0-flaky": len(flaky_answers),
        "its own 500s": len(own), "other failures (transport, proxy)": len(other),
        "other kinds": sorted({r.kind for r in other}), "prod rounds": rounds(result, "prod")}
    assert own, "prod's load never met the flaky release"
    assert not other, [r.kind for r in other[:10]]


def test_traefik_counts_the_services_behind_httproutes_too(tool, kube):
    """Routing through the local Gateway (switched through `both`, as the program requires): the
    label Traefik gives an HTTPRoute's backend maps to the same Service."""
    for key, value in {"gateway.name": "traefik", "gateway.namespace": "kube-system"}.items():
        tool.stack.set_config(key, auto.ConfigValue(value), path=True)
    for routing in ("both", "gateway"):
        tool.stack.set_config("routing", auto.ConfigValue(routing))
        with counted(f"routing -> {routing}", tool.ingress, PROD_HOST, version_of(V2)):
            tool.stack.up(on_output=print, color="never")
    wait_until("prod answers through the HTTPRoute", lambda: fetch(tool.ingress, PROD_HOST)[0] == 200)
    first = metrics.scrape(tool.metrics_url)
    (CAPTURE / "gateway-before-20-prod-requests.prom").write_text(first)
    assert [fetch(tool.ingress, PROD_HOST)[0] for _ in range(20)] == [200] * 20
    text = metrics.scrape(tool.metrics_url)
    (CAPTURE / "gateway-after-20-prod-requests.prom").write_text(text)
    labels = sorted({line.split('service="', 1)[1].split('"', 1)[0] for line in text.splitlines()
                     if line.startswith(metrics.REQUESTS + "{") and 'service="' in line})
    before, after = (metrics.counts(t, NS, ["web-prod"])["web-prod"] for t in (first, text))
    e2e.REPORT["checks: Traefik service labels after the switch to HTTPRoutes"] = {
        "labels": labels, "web-prod before": before.requests, "after 20 requests": after.requests}
    assert labels and all(metrics.matches(label, NS, "web-prod") for label in labels), labels
    # Right after the switch the Ingress's series is still there, then gone: counted series by series.
    assert metrics.share(before, after) == metrics.Share(20, 0), (labels, before, after)
