"""Tier 3: generated valid stack configs (tests/generated.py, a bounded sample: helm takes a tenth
of a second a render) through chart_values and the real `helm template`: the chart renders, prod
and stage select the right slots, every object is one the API server takes (tests/kube_rules.py:
names, labels, hosts, images, requests within limits, NetworkPolicy peers), and kube-score finds
nothing CRITICAL but the deliberate decisions (tests/chart/test_kube_score.py)."""

from __future__ import annotations

from hypothesis import assume, event, given

from bluegreen.config import parse
from bluegreen.values import chart_values, helm_json
from tests import kube_rules
from tests.chart.render import template
from tests.chart.test_kube_score import CRITICAL, score
from tests.generated import config_cases, generated


@given(config_cases(faults=False))
@generated(60)
def test_a_generated_config_renders_with_the_right_slots_and_objects_kubernetes_takes(helm, kube_score, case):
    assume(not case.must_name)  # a few good-looking values are not (a 254-character host): tier 1 covers them
    settings = parse(case.raw)
    secret_names = {slot: f"{settings.app_name}-{slot}-secrets-0a1b2c3d" for slot in ("blue", "green")
                    if settings.slot(slot).enabled and settings.slot_secrets(slot)}
    manifest = template(helm, chart_values(settings, secret_names), release=settings.app_name,
                        namespace=settings.namespace)
    prod, stage = settings.production_slot, settings.stage_slot
    deployments = {d["metadata"]["name"]: d for d in manifest.all("Deployment")}
    assert set(deployments) == {f"{settings.app_name}-{slot}" for slot in ("blue", "green")
                                if settings.slot(slot).enabled}
    for name, deployment in deployments.items():
        slot = name.rsplit("-", 1)[1]
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == settings.slot(slot).image
        assert deployment["spec"]["replicas"] == settings.slot(slot).replicas
    assert manifest.get("Service", f"{settings.app_name}-prod")["spec"]["selector"]["slot"] == prod
    assert manifest.get("Service", f"{settings.app_name}-stage")["spec"]["selector"]["slot"] == stage
    assert manifest.deployments_selected_by(f"{settings.app_name}-prod") == [f"{settings.app_name}-{prod}"]
    problems = [p for obj in manifest.objects for p in kube_rules.object_problems(obj)]
    assert not problems, problems
    critical = [str(f) for f in score(kube_score, "\n---\n".join(helm_json(o) for o in manifest.objects))
                if f.grade == CRITICAL]
    assert not critical, critical
    event(f"routing {settings.routing}, stage {settings.stage_access}, "
          f"{'both slots' if len(deployments) == 2 else 'one slot'}")
