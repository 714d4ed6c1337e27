"""Tier 1: stack config -> Settings, and every validation rule, as plain functions."""

import json

import pytest
import yaml

from bluegreen.config import DEFAULTS, ConfigError, parse
from tests.scenarios import BAD_CONFIGS, BASE, SCENARIOS, V1, V2

VALID = {**BASE, "blue": {"enabled": True, "image": V1, "replicas": 2}}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_release_step_is_valid(scenario):
    settings = parse(scenario.config)
    assert settings.production_slot == scenario.prod
    assert settings.stage_slot == scenario.stage


@pytest.mark.parametrize("name,override,message", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_input_names_key_value_allowed_and_fix(name, override, message):
    with pytest.raises(ConfigError) as error:
        parse({**VALID, **override})
    text = str(error.value)
    assert message in text
    assert "Fix: pulumi config " in text
    assert "nothing was changed" in text


def test_error_shows_the_fixing_command():
    with pytest.raises(ConfigError) as error:
        parse({**VALID, "productionSlot": "purple"})
    assert str(error.value.problems[0]) == (
        "productionSlot is 'purple'; allowed: blue, green.\n  Fix: pulumi config set productionSlot blue"
    )


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as error:
        parse({**VALID, "productionSlot": "purple", "stageHost": BASE["prodHost"], "green": {"enabeld": True}})
    keys = [p.subject for p in error.value.problems]
    assert keys == ["productionSlot", "green.enabeld", "stageHost"]


def test_pulumi_string_forms_are_accepted():
    # `pulumi config set --path green.enabled true` and `... replicas 3` may arrive as strings.
    settings = parse({**VALID, "green": {"enabled": "true", "image": V2, "replicas": "3"}})
    assert settings.slot("green").enabled is True
    assert settings.slot("green").replicas == 3


@pytest.mark.parametrize("value", ["yes", "1", 1, None])
def test_boolean_is_strict(value):
    with pytest.raises(ConfigError, match="green.enabled is .*; allowed: true or false"):
        parse({**VALID, "green": {"enabled": value, "image": V2}})


def test_boolean_is_not_an_integer():
    with pytest.raises(ConfigError, match="blue.replicas is true"):
        parse({**VALID, "blue": {"enabled": True, "image": V1, "replicas": True}})


def test_slot_fields_default_one_by_one():
    # Setting only green.image with --path must not lose the other fields' defaults.
    settings = parse({**VALID, "green": {"image": V2}})
    assert settings.slot("green").enabled is False
    assert settings.slot("green").replicas == 2


def test_zero_replicas_allowed_on_stage_not_on_prod():
    assert parse({**VALID, "green": {"enabled": True, "image": V2, "replicas": 0}}).slot("green").replicas == 0
    with pytest.raises(ConfigError, match="blue.replicas is 0; allowed: at least 1 while productionSlot is blue"):
        parse({**VALID, "blue": {"enabled": True, "image": V1, "replicas": 0}})


def test_object_given_as_plain_text():
    with pytest.raises(ConfigError, match="green is 'on'; allowed: an object with keys enabled, image, replicas"):
        parse({**VALID, "green": "on"})


@pytest.mark.parametrize("image", [
    "nginx:1.27", "registry.example.com/shop/web:1.5.0", "localhost:5000/web:dev",
    "ghcr.io/acme/web@sha256:" + "a" * 64, "web:1.0@sha256:" + "b" * 64,
])
def test_image_references_accepted(image):
    assert parse({**VALID, "green": {"enabled": True, "image": image}}).slot("green").image == image


@pytest.mark.parametrize("image", ["nginx", "web:", "UPPER/web:1", "web:1 ", "-web:1", "web@sha256:abc"])
def test_image_references_rejected(image):
    with pytest.raises(ConfigError, match="green.image"):
        parse({**VALID, "green": {"enabled": True, "image": image}})


@pytest.mark.parametrize("key,value", [
    ("appName", "Web"), ("appName", "a" * 41), ("namespace", "my_ns"), ("containerPort", 0),
    ("containerPort", "http"), ("healthPath", "healthz"), ("ingressClass", ""), ("tlsSecret", "Bad Secret"),
    ("helmTimeoutSeconds", 5), ("createNamespace", "maybe"), ("readOnlyRootFilesystem", "no"),
    ("resources", {"requests": {"cpu": "lots"}}), ("resources", {"request": {"cpu": "1"}}),
    ("resources", {"limits": {"gpu": "1"}}), ("imagePullPolicy", "Never"), ("networkPolicy", "on"),
])
def test_other_keys_are_validated(key, value):
    with pytest.raises(ConfigError) as error:
        parse({**VALID, key: value})
    assert error.value.problems[0].subject.startswith(key)


def test_defaults_make_a_safe_first_deploy_once_an_image_is_given():
    settings = parse({"blue": {"image": V1}})
    assert settings.production_slot == "blue"
    assert settings.slot("green").enabled is False
    assert settings.resources == {"requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "64Mi"},
                                  "limits": {"memory": "256Mi", "ephemeral-storage": "1Gi"}}
    assert settings.image_pull_policy == "IfNotPresent"
    assert settings.network_policy["enabled"] is True


def test_ephemeral_storage_is_configurable_and_other_defaults_stay():
    resources = parse({**VALID, "resources": {"limits": {"ephemeral-storage": "2Gi", "cpu": "1"}}}).resources
    assert resources["limits"] == {"memory": "256Mi", "ephemeral-storage": "2Gi", "cpu": "1"}
    assert resources["requests"]["ephemeral-storage"] == "64Mi"


def test_network_policy_fields_not_given_keep_their_defaults():
    # `pulumi config set --path networkPolicy.from[0]...` replaces the declared default object.
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    policy = parse({**VALID, "networkPolicy": {"from": [peer]}}).network_policy
    assert policy == {**DEFAULTS["networkPolicy"], "from": [peer]}
    assert parse({**VALID, "networkPolicy": {"enabled": "false"}}).network_policy["enabled"] is False


@pytest.mark.parametrize("policy,key,fragment", [
    ({"enabled": "sometimes"}, "networkPolicy.enabled", "true or false"),
    ({"egress": []}, "networkPolicy.egress", "keys enabled, ingressController, from"),
    ({"from": {"ipBlock": {"cidr": "10.0.0.0/8"}}}, "networkPolicy.from", "a list of NetworkPolicy peers"),
    ({"ingressController": []}, "networkPolicy.ingressController", "at least one peer"),
    ({"ingressController": [{"ipBlock": {"cidr": "10.244.0.1/24"}}]}, "networkPolicy.ingressController[0].ipBlock",
     "host bits zero"),
    ({"ingressController": [{"ipBlock": {"cidr": "10.244.0.1"}}]}, "networkPolicy.ingressController[0].ipBlock",
     "CIDRs"),
    ({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": "10.1.0.0/16"}}]}, "networkPolicy.from[0].ipBlock",
     "CIDRs"),
    ({"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}, "networkPolicy.from[0]", "an ipBlock alone"),
    ({"from": [{}]}, "networkPolicy.from[0]", "an ipBlock alone"),
    ({"from": [{"podSelector": {"matchLabels": {"app": "a b"}}}]}, "networkPolicy.from[0].podSelector",
     "label keys and values"),
    ({"from": [{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Is"}]}}]},
     "networkPolicy.from[0].namespaceSelector", "In/NotIn/Exists/DoesNotExist"),
    ({"from": [{"podSelector": {"labels": {"app": "web"}}}]}, "networkPolicy.from[0].podSelector", "matchLabels"),
])
def test_network_policy_peers_are_validated(policy, key, fragment):
    with pytest.raises(ConfigError) as error:
        parse({**VALID, "networkPolicy": policy})
    (problem,) = error.value.problems
    assert problem.subject == key and fragment in problem.problem, problem


def test_no_image_at_all_is_refused_not_guessed():
    with pytest.raises(ConfigError, match=r"blue.image is ''"):
        parse({})


def test_project_file_declares_every_key_with_the_same_default(repo_root):
    project = yaml.safe_load((repo_root / "Pulumi.yaml").read_text())
    declared = project["config"]
    assert set(declared) == set(DEFAULTS)
    for key, spec in declared.items():
        assert spec["default"] == DEFAULTS[key], key
        assert spec["description"], key
        assert spec["type"] in ("string", "integer", "boolean", "object", "array"), key


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_environment_stack_files_are_valid(repo_root, stack):
    config = yaml.safe_load((repo_root / f"Pulumi.{stack}.yaml").read_text())["config"]
    raw = {key.split(":", 1)[1]: value for key, value in config.items()}
    settings = parse(raw)
    assert settings.namespace == f"bluegreen-{stack}"


def test_environments_do_not_share_namespace_or_hosts(repo_root):
    envs = [yaml.safe_load((repo_root / f"Pulumi.{s}.yaml").read_text())["config"] for s in ("staging", "production")]
    for key in ("bluegreen:namespace", "bluegreen:prodHost", "bluegreen:stageHost"):
        assert envs[0][key] != envs[1][key]


def test_error_values_are_shown_as_given():
    with pytest.raises(ConfigError) as error:
        parse({**VALID, "green": {"enabled": True, "image": V2, "replicas": [1]}})
    assert json.dumps([1]) in str(error.value)


def test_project_keys_decodes_objects_and_keeps_bad_text_for_the_error():
    from bluegreen.config import project_keys

    raw = project_keys({"bluegreen:blue": '{"image": "shop/web:1"}', "bluegreen:green": "on",
                        "bluegreen:productionSlot": "blue", "kubernetes:context": "x"})
    assert raw == {"blue": {"image": "shop/web:1"}, "green": "on", "productionSlot": "blue"}
