"""Tier 2: what the program registers for a restricted stage: the basic auth credentials from
encrypted config become a kubernetes.io/basic-auth Secret (a Pulumi secret), and the Release's
values name it without holding the password."""

import json

import pulumi
import pytest

from tests.mocks.harness import RecordingMocks, run_program
from tests.mocks.test_program import SECRET_MARK, SECRET_SIG
from tests.scenarios import SCENARIOS

AUTH = {"username": "tester", "password": "hunter2-stage"}
RESTRICTED = {**SCENARIOS[1].config, "stageAccess": "restricted", "stageAllowFrom": ["127.0.0.1/32"],
              "stageAuth": AUTH}


def test_stage_basic_auth_becomes_a_basic_auth_secret_the_chart_names():
    run = run_program(RESTRICTED, secret_keys=("stageAuth",))
    (secret,) = [r.inputs for r in run.of_type("kubernetes:core/v1:Secret") if r.name == "web-stage-auth"]
    assert secret["type"] == "kubernetes.io/basic-auth" and secret["metadata"]["name"] == "web-stage-auth"
    assert secret["stringData"][SECRET_SIG] == SECRET_MARK
    assert secret["stringData"]["value"] == AUTH
    values = run.release.inputs["values"]
    assert values["stageAccess"] == {"mode": "restricted", "allowFrom": ["127.0.0.1/32"],
                                     "basicAuthSecret": "web-stage-auth"}
    assert "hunter2" not in json.dumps(values) and "hunter2" not in json.dumps(run.outputs)


def test_a_stage_password_in_plain_text_is_refused_before_any_resource():
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError, match=r"stageAuth.password is '\(hidden\)'; allowed: values set with --secret"):
        run_program(RESTRICTED, mocks=mocks)
    assert mocks.registered == []


def test_gateway_routing_reaches_the_release():
    run = run_program({**SCENARIOS[0].config, "routing": "gateway",
                       "gateway": {"name": "traefik", "namespace": "kube-system"}, "stageAccess": "internal"})
    values = run.release.inputs["values"]
    assert values["routing"] == "gateway" and values["gateway"] == {"name": "traefik", "namespace": "kube-system"}
    assert run.outputs["stageUrl"] == ""


def test_a_direct_switch_from_the_last_updates_routing_is_refused_before_any_resource():
    first = run_program(SCENARIOS[0].config)
    assert first.outputs["routing"] == "ingress"
    mocks = RecordingMocks(last_outputs=first.outputs)
    with pytest.raises(pulumi.RunError, match="routing is 'gateway'; allowed: ingress or both"):
        run_program({**SCENARIOS[0].config, "routing": "gateway",
                     "gateway": {"name": "traefik", "namespace": "kube-system"}}, mocks=mocks)
    assert mocks.registered == []
