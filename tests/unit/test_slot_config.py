"""Tier 1: what a real app needs from its stack config: shared and per-slot environment
variables, Ingress annotations, and the rule that prod only ever gets what a slot already ran."""

import pytest

from bluegreen.config import ConfigError, parse
from bluegreen.values import chart_values, version_label
from tests.scenarios import BASE, V1, V2

BLUE_LIVE = {**BASE, "productionSlot": "blue", "env": {"LOG_LEVEL": "info", "REGION": "eu"},
             "blue": {"enabled": True, "image": V1, "replicas": 2, "env": {"FEATURE_X": "off"}},
             "green": {"enabled": False, "image": "", "replicas": 2}}


def with_slot(config, slot, **fields):
    return {**config, slot: {**config.get(slot, {}), **fields}}


def problems(config, before=None, encrypted=None) -> str:
    with pytest.raises(ConfigError) as error:
        parse(config, before, encrypted)
    return str(error.value)


def test_a_slots_own_variables_win_over_the_shared_ones():
    settings = parse(with_slot(BLUE_LIVE, "blue", env={"REGION": "us", "PORT": 8080, "DEBUG": False}))
    assert settings.slot_env("blue") == {"LOG_LEVEL": "info", "REGION": "us", "PORT": "8080", "DEBUG": "false"}
    values = chart_values(settings)
    assert values["blue"]["env"] == [{"name": "DEBUG", "value": "false"}, {"name": "LOG_LEVEL", "value": "info"},
                                     {"name": "PORT", "value": "8080"}, {"name": "REGION", "value": "us"}]
    assert values["green"]["env"] == [{"name": "LOG_LEVEL", "value": "info"}, {"name": "REGION", "value": "eu"}]


@pytest.mark.parametrize("config,message", [
    ({"env": {"2FAST": "x"}}, "env.2FAST is 'x'; allowed: a variable name of letters, digits and '_'"),
    ({"env": {"BLUEGREEN_SLOT": "red"}}, "env.BLUEGREEN_SLOT is 'red'; allowed: a variable name"),
    ({"env": {"LIST": [1, 2]}}, "env.LIST is [1, 2]; allowed: text"),
    ({"env": "LOG_LEVEL=info"}, "env is 'LOG_LEVEL=info'; allowed: an object of variables"),
    ({"blue": {"enabled": True, "image": V1, "env": {"A-B": "1"}}}, "blue.env.A-B is '1'; allowed: a variable name"),
    ({"ingressAnnotations": {"bad key!": "x"}}, "ingressAnnotations.bad key! is 'x'; allowed: an annotation key"),
])
def test_bad_variables_and_annotations_are_named(config, message):
    assert message in problems({**BLUE_LIVE, **config})


def test_annotations_reach_the_ingress_values():
    annotations = {"cert-manager.io/cluster-issuer": "letsencrypt", "traefik.ingress.kubernetes.io/router.tls": True}
    values = chart_values(parse({**BLUE_LIVE, "ingressAnnotations": annotations}))
    assert values["ingress"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt",
                                                "traefik.ingress.kubernetes.io/router.tls": "true"}


@pytest.mark.parametrize("image,label", [
    ("registry.example.com/shop/web:1.4.0", "1.4.0"),
    ("localhost:5000/web:dev_2", "dev_2"),
    ("registry.example.com/shop/web@sha256:" + "ab" * 32, "sha256-abababababab"),
    ("web:1.0.0@sha256:" + "cd" * 32, "1.0.0"),
    ("", ""),
])
def test_each_slot_is_labelled_with_its_version(image, label):
    assert version_label(image) == label


# --- prod only ever gets what a slot already ran -------------------------------------------------

BEFORE = {"blue": {"image": V1, "env": {"LOG_LEVEL": "info", "REGION": "eu", "FEATURE_X": "off"}}, "green": None}


def test_the_same_prod_is_no_change():
    parse(BLUE_LIVE, BEFORE)


def test_changing_prods_image_in_place_is_refused_with_the_fix():
    text = problems(with_slot(BLUE_LIVE, "blue", image=V2), BEFORE)
    assert f"blue.image is '{V2}'; allowed: {V1}, what prod (blue) runs" in text
    assert f"Fix: pulumi config set --path blue.image {V1}; deploy it into the idle slot green instead" in text
    assert "pulumi config set allowProdChange true" in text


def test_changing_a_shared_variable_prod_runs_is_refused():
    text = problems({**BLUE_LIVE, "env": {"LOG_LEVEL": "debug", "REGION": "eu"}}, BEFORE)
    assert "env.LOG_LEVEL is 'debug'; allowed: 'info', what prod (blue) runs" in text
    assert "set it as green.env.LOG_LEVEL in the idle slot green, deploy and promote it" in text


def test_changing_prods_own_variable_is_refused_under_its_own_key():
    text = problems(with_slot(BLUE_LIVE, "blue", env={}), BEFORE)
    assert "blue.env.FEATURE_X is '(unset)'; allowed: 'off', what prod (blue) runs" in text


def test_deploying_a_slot_and_sending_prod_to_it_at_once_is_refused():
    both = {**BLUE_LIVE, "productionSlot": "green", "green": {"enabled": True, "image": V2, "replicas": 2}}
    text = problems(both, BEFORE)
    assert "productionSlot is 'green'; allowed: a slot that already runs" in text


def test_the_flip_to_a_slot_that_runs_is_allowed_and_so_is_anything_in_stage():
    staged = {**BLUE_LIVE, "green": {"enabled": True, "image": V2, "replicas": 2, "env": {"FEATURE_X": "on"}}}
    green = {"image": V2, "env": {"LOG_LEVEL": "info", "REGION": "eu", "FEATURE_X": "on"}}
    parse(staged, BEFORE)  # deploy into stage
    parse({**staged, "productionSlot": "green"}, {**BEFORE, "green": green})  # promote
    parse({**staged, "env": {"LOG_LEVEL": "debug"}, "productionSlot": "green",
           "green": {**staged["green"], "env": {**green["env"], "LOG_LEVEL": "info"}}},
          {**BEFORE, "green": green})  # a shared change that prod (green) does not see


def test_a_hotfix_is_allowed_when_asked_for():
    parse({**with_slot(BLUE_LIVE, "blue", image=V2), "allowProdChange": True}, BEFORE)


def test_the_first_update_and_a_stack_without_env_records_are_not_held_back():
    parse(with_slot(BLUE_LIVE, "blue", image=V2), None)
    parse({**BLUE_LIVE, "env": {"LOG_LEVEL": "debug"}}, {"blue": {"image": V1}, "green": None})


# --- secrets --------------------------------------------------------------------------------------

WITH_SECRETS = {**BLUE_LIVE, "secrets": {"DB_PASSWORD": "s3cr3t-one"},
                "green": {"enabled": True, "image": V2, "replicas": 2, "secrets": {"DB_PASSWORD": "s3cr3t-two"}}}
ENCRYPTED = {"secrets", "green"}


def test_secrets_merge_per_slot_and_never_reach_the_chart_values():
    settings = parse(WITH_SECRETS, encrypted=ENCRYPTED)
    assert settings.slot_secrets("blue") == {"DB_PASSWORD": "s3cr3t-one"}
    assert settings.slot_secrets("green") == {"DB_PASSWORD": "s3cr3t-two"}
    values = chart_values(settings, {"blue": "web-blue-secrets-1a2b3c", "green": "web-green-secrets-4d5e6f"})
    assert values["blue"]["secretName"] == "web-blue-secrets-1a2b3c" and values["secrets"]["as"] == "file"
    assert "s3cr3t" not in repr(values) and "s3cr3t" not in repr(settings)


def test_a_secret_kept_in_plain_text_is_refused():
    text = problems(WITH_SECRETS, encrypted={"green"})
    assert "secrets is '(hidden)'; allowed: values set with --secret" in text
    assert "s3cr3t" not in text


@pytest.mark.parametrize("config,message", [
    ({"secrets": {"db-password": "x"}}, "secrets.db-password is '(hidden)'; allowed: a name of letters"),
    ({"secrets": {"EMPTY": ""}}, "secrets.EMPTY is '(hidden)'; allowed: non-empty text"),
    ({"secretsAs": "volume"}, "secretsAs is 'volume'; allowed: file, env"),
    ({"imagePullSecrets": "regcred"}, "imagePullSecrets is 'regcred'; allowed: a list of Secret names"),
])
def test_bad_secret_settings_are_named_without_their_values(config, message):
    assert message in problems({**BLUE_LIVE, **config})


def test_a_secret_rotation_goes_through_stage_like_code():
    settings = parse(WITH_SECRETS, encrypted=ENCRYPTED)
    before = {slot: settings.deployed(slot) for slot in ("blue", "green")}
    before["secretDigests"] = {slot: settings.secret_digests(slot) for slot in ("blue", "green")}
    # rotating the shared secret would change what prod (blue) runs
    text = problems({**WITH_SECRETS, "secrets": {"DB_PASSWORD": "rotated"}}, before)
    assert "secrets.DB_PASSWORD is '(hidden)'; allowed: the value of what prod (blue) runs" in text
    assert "set it with --secret as green.secrets.DB_PASSWORD in the idle slot green" in text
    assert "rotated" not in text
    # rotating it in the idle slot is fine, and so is promoting it
    rotated = {**WITH_SECRETS, "green": {**WITH_SECRETS["green"], "secrets": {"DB_PASSWORD": "rotated"}}}
    parse(rotated, before)
    after = {**before, "green": parse(rotated).deployed("green"),
             "secretDigests": {**before["secretDigests"], "green": parse(rotated).secret_digests("green")}}
    parse({**rotated, "productionSlot": "green"}, after)
    assert parse(rotated).secret_digests("green")["DB_PASSWORD"] != before["secretDigests"]["green"]["DB_PASSWORD"]


# --- a private registry's credentials ---------------------------------------------------------------

REGISTRY = {"server": "registry.example.com:5000", "username": "ci", "password": "hunter2-e2e"}


def test_registry_credentials_become_a_pull_secret_the_pods_name():
    settings = parse({**BLUE_LIVE, "registry": REGISTRY, "imagePullSecrets": ["team-regcred"]}, encrypted={"registry"})
    assert settings.registry_secret == "web-registry"
    values = chart_values(settings)
    assert values["imagePullSecrets"] == [{"name": "team-regcred"}, {"name": "web-registry"}]
    assert "hunter2" not in repr(values) and "hunter2" not in repr(settings)


@pytest.mark.parametrize("registry,message", [
    ({"server": "registry.example.com"}, 'registry is ["server"]; allowed: an object with exactly server, username'),
    ({**REGISTRY, "server": "https://registry.example.com"}, "registry.server is 'https://registry.example.com'"),
    ({**REGISTRY, "password": ""}, "registry.password is '(hidden)'; allowed: non-empty text"),
])
def test_bad_registry_credentials_are_named_without_the_password(registry, message):
    text = problems({**BLUE_LIVE, "registry": registry}, encrypted={"registry"})
    assert message in text and "hunter2" not in text


def test_a_registry_password_in_plain_text_is_refused():
    text = problems({**BLUE_LIVE, "registry": REGISTRY}, encrypted=set())
    assert "registry.password is '(hidden)'; allowed: values set with --secret" in text
    assert "pulumi config set --secret --path registry.password VALUE" in text
