"""Tier 2: what the Release receives and what the stack exports, for each step of a release."""

import json

import pulumi
import pytest

from tests.mocks.harness import RELEASE_TYPE, RecordingMocks, run_program
from tests.scenarios import BAD_CONFIGS, BASE, SCENARIOS, V1


@pytest.fixture(autouse=True)
def at_project_root(repo_root, monkeypatch):
    # Pulumi runs programs from the project root; the chart path is relative to it.
    monkeypatch.chdir(repo_root)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_release_inputs(scenario):
    release = run_program(scenario.config).release.inputs
    assert release["name"] == "web"
    assert release["namespace"] == "shop"
    assert release["chart"] == "./bluegreen/chart"
    assert release["maxHistory"] == 10
    assert release["atomic"] is True and release["cleanupOnFail"] is True
    assert release["disableOpenapiValidation"] is True
    assert release["skipAwait"] is False and release["timeout"] == 300
    values = release["values"]
    assert values["productionSlot"] == scenario.prod
    for slot, image in scenario.images.items():
        assert values[slot]["enabled"] == (image is not None)
        if image:
            assert values[slot]["image"] == image


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_stack_outputs(scenario):
    outputs = run_program(scenario.config).outputs
    assert outputs["productionSlot"] == scenario.prod
    assert outputs["stageSlot"] == scenario.stage
    assert outputs["prodSelector"]["slot"] == scenario.prod
    assert outputs["stageSelector"]["slot"] == scenario.stage
    assert outputs["images"] == scenario.images
    assert outputs["prodUrl"] == "http://shop.example.com/"
    assert outputs["stageUrl"] == "http://stage.shop.example.com/"
    assert outputs["releaseName"] == "web"
    assert outputs["namespace"] == "shop"
    assert outputs["revision"] == 1
    assert outputs["status"] == "deployed"


def test_promotion_changes_only_production_slot_and_what_follows():
    staged, promoted = (run_program(s.config) for s in SCENARIOS[1:3])
    before, after = staged.release.inputs["values"], promoted.release.inputs["values"]
    assert {k for k in before if before[k] != after[k]} == {"productionSlot"}
    changed = {k for k in staged.outputs if staged.outputs[k] != promoted.outputs[k]}
    assert changed == {"productionSlot", "stageSlot", "prodSelector", "stageSelector"}


def test_namespace_is_created_restricted_and_before_the_release():
    run = run_program(SCENARIOS[0].config)
    (namespace,) = run.of_type("kubernetes:core/v1:Namespace")
    assert namespace.inputs["metadata"]["name"] == "shop"
    assert namespace.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert [r.typ for r in run.registered] == [
        "bluegreen:index:BlueGreenApp", "kubernetes:core/v1:Namespace", RELEASE_TYPE]


def test_existing_namespace_is_not_created():
    run = run_program({**SCENARIOS[0].config, "createNamespace": False})
    assert run.of_type("kubernetes:core/v1:Namespace") == []
    assert run.release.inputs["namespace"] == "shop"


def test_tls_switches_urls_to_https():
    outputs = run_program({**SCENARIOS[0].config, "tlsSecret": "shop-tls"}).outputs
    assert outputs["prodUrl"] == "https://shop.example.com/"


def test_preview_registers_the_same_release():
    assert run_program(SCENARIOS[2].config, preview=True).release.inputs["values"]["productionSlot"] == "green"


@pytest.mark.parametrize("name,override,message", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_input_fails_before_any_resource(name, override, message):
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as error:
        run_program({**BASE, "blue": {"enabled": True, "image": V1, "replicas": 2}, **override}, mocks=mocks)
    assert message in str(error.value)
    assert "Fix: pulumi config" in str(error.value)
    assert mocks.registered == []


def test_the_program_reads_what_the_last_update_deployed_and_refuses_an_in_place_prod_change():
    staged = SCENARIOS[1]  # blue live (V1), green staged
    last = run_program(staged.config).outputs
    assert last["slots"]["blue"] == {"image": staged.images["blue"], "env": {}}
    changed = {**staged.config, "blue": {**staged.config["blue"], "image": staged.images["green"]}}
    mocks = RecordingMocks(last_outputs=last)
    with pytest.raises(pulumi.RunError) as error:
        run_program(changed, mocks=mocks)
    assert "blue.image is " in str(error.value) and "what prod (blue) runs" in str(error.value)
    assert mocks.registered == []  # refused before any resource
    assert [(r.token, r.args) for r in mocks.reads] == [  # its own stack's outputs, read only
        ("pulumi:pulumi:readStackOutputs", {"name": "organization/bluegreen/staging"})]
    promoted = run_program(SCENARIOS[2].config, mocks=RecordingMocks(last_outputs=last))  # the flip is fine
    assert promoted.outputs["productionSlot"] == "green"


# How the SDK marks a secret value on the wire (pulumi.runtime.rpc._special_sig_key / _special_secret_sig).
SECRET_SIG, SECRET_MARK = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"


def test_each_slot_gets_its_secrets_in_a_secret_of_its_own_and_the_release_only_its_name():
    config = {**SCENARIOS[1].config, "secrets": {"DB_PASSWORD": "s3cr3t-one"},
              "green": {**SCENARIOS[1].config["green"], "secrets": {"API_KEY": "s3cr3t-two"}}}
    run = run_program(config, secret_keys=("secrets", "green"))
    secrets = {r.name: r.inputs for r in run.of_type("kubernetes:core/v1:Secret")}
    assert set(secrets) == {"web-blue-secrets", "web-green-secrets"}
    data = secrets["web-green-secrets"]["stringData"]
    assert data[SECRET_SIG] == SECRET_MARK  # a Pulumi secret: encrypted in the state, masked in output
    assert data["value"] == {"DB_PASSWORD": "s3cr3t-one", "API_KEY": "s3cr3t-two"}
    assert secrets["web-green-secrets"]["immutable"] is True
    assert "name" not in secrets["web-green-secrets"]["metadata"]  # Pulumi names it: a new value, a new name
    values = run.release.inputs["values"]
    assert "s3cr3t" not in json.dumps(values) and "s3cr3t" not in json.dumps(run.outputs["slots"])
    assert set(run.outputs["secretDigests"]["green"]) == {"DB_PASSWORD", "API_KEY"}


def test_secrets_in_plain_text_config_are_refused_before_any_resource():
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError, match="secrets is '\\(hidden\\)'; allowed: values set with --secret"):
        run_program({**SCENARIOS[0].config, "secrets": {"DB_PASSWORD": "s3cr3t"}}, mocks=mocks)
    assert mocks.registered == []


def test_registry_credentials_become_a_dockerconfigjson_secret():
    registry = {"server": "registry.example.com", "username": "ci", "password": "hunter2-e2e"}
    run = run_program({**SCENARIOS[0].config, "registry": registry}, secret_keys=("registry",))
    (secret,) = [r.inputs for r in run.of_type("kubernetes:core/v1:Secret") if r.name == "web-registry"]
    assert secret["type"] == "kubernetes.io/dockerconfigjson" and secret["metadata"]["name"] == "web-registry"
    assert secret["stringData"][SECRET_SIG] == SECRET_MARK
    auths = json.loads(secret["stringData"]["value"][".dockerconfigjson"])["auths"]
    assert auths["registry.example.com"]["username"] == "ci"
    assert {"name": "web-registry"} in run.release.inputs["values"]["imagePullSecrets"]
    assert "hunter2" not in json.dumps(run.release.inputs["values"])
