"""What the generated-input tests (test_generated_config.py, test_generated_cli.py,
tests/chart/test_generated_render.py) found, each kept as a fixed example: these passed the old code
and would have failed only later, in the cluster or in the middle of a release."""

from __future__ import annotations

import json

import pytest

from bluegreen.config import ConfigError, parse
from bluegreen.release import cli
from bluegreen.values import version_label
from tests.unit.fake_world import V2

IMAGE = "registry.example.com/shop/web:1.4.0"
BASE = {"blue": {"enabled": True, "image": IMAGE}}


def refused(raw: dict) -> str:
    with pytest.raises(ConfigError) as error:
        parse(raw)
    return str(error.value)


@pytest.mark.parametrize("key,value", [
    ("appName", "web\n"), ("namespace", "shop\n"), ("prodHost", "shop.example.com\n"),
    ("stageHost", "stage.example.com\n"), ("ingressClass", "traefik\n"), ("tlsSecret", "shop-tls\n"),
])
def test_a_trailing_newline_is_refused(key, value):
    """Python's `$` also matches before a trailing newline: "web\\n" passed as an app name, and
    Kubernetes (or Helm) refused the object later."""
    assert f"- {key} is {value!r}" in refused({**BASE, key: value})


@pytest.mark.parametrize("raw,named", [
    ({"blue": {"enabled": True, "image": IMAGE + "\n"}}, "blue.image"),
    ({**BASE, "env": {"LOG_LEVEL\n": "info"}}, "env.LOG_LEVEL\n"),
    ({**BASE, "imagePullSecrets": ["regcred\n"]}, "imagePullSecrets"),
    ({**BASE, "resources": {"limits": {"memory": "1Gi\n"}}}, "resources.limits.memory"),
    ({**BASE, "ingressAnnotations": {"example.com/owner\n": "shop"}}, "ingressAnnotations.example.com/owner\n"),
])
def test_a_trailing_newline_inside_an_object_is_refused(raw, named):
    assert f"- {named} is " in refused(raw)


LONG_NAME = ".".join(["l" * 63] * 4)  # 255 characters of good DNS labels; Kubernetes stops at 253


@pytest.mark.parametrize("raw,named", [
    ({**BASE, "prodHost": LONG_NAME}, "prodHost"),
    ({**BASE, "stageHost": LONG_NAME}, "stageHost"),
    ({**BASE, "ingressClass": LONG_NAME}, "ingressClass"),
    ({**BASE, "tlsSecret": LONG_NAME}, "tlsSecret"),
    ({**BASE, "imagePullSecrets": [LONG_NAME]}, "imagePullSecrets"),
    ({**BASE, "routing": "gateway", "gateway": {"name": LONG_NAME, "namespace": "edge"}}, "gateway.name"),
])
def test_a_dns_name_longer_than_kubernetes_takes_is_refused(raw, named):
    assert f"- {named} is " in refused(raw)


def test_a_dns_name_of_253_characters_passes():
    name = ".".join(["l" * 63] * 3 + ["l" * 61])
    assert len(name) == 253 and parse({**BASE, "prodHost": name}).prod_host == name


def test_an_image_whose_name_is_longer_than_docker_takes_is_refused():
    """The pattern has no length; Docker's references stop at 255 characters for the name, so the
    pods could never pull it (the update waited for them, then Helm rolled it back)."""
    name = "registry.example.com/" + "/".join(["p" * 60] * 4)  # 264 characters
    assert f"- blue.image is '{name}:1'; allowed: an image whose name" in refused(
        {"blue": {"enabled": True, "image": f"{name}:1"}})
    short = name[:255]
    assert parse({"blue": {"enabled": True, "image": f"{short}:1" + "@sha256:" + "a" * 64}}).slot("blue").image


@pytest.mark.parametrize("resources,message", [
    ({"requests": {"memory": "512Mi"}},  # the default limit is 256Mi
     "- resources.requests.memory is '512Mi'; allowed: at most resources.limits.memory (256Mi)"),
    ({"limits": {"cpu": "10m"}},  # the default request is 50m
     "- resources.limits.cpu is '10m'; allowed: at least resources.requests.cpu (50m)"),
    ({"requests": {"ephemeral-storage": "2Gi"}, "limits": {"ephemeral-storage": "1.5Gi"}},
     "- resources.requests.ephemeral-storage is '2Gi'; allowed: at most resources.limits.ephemeral-storage (1.5Gi)"),
])
def test_a_request_above_its_limit_is_refused(resources, message):
    """Kubernetes refuses such a Deployment: the update failed in the cluster, after it had begun."""
    assert message in refused({**BASE, "resources": resources})


def test_a_request_equal_to_its_limit_in_other_units_passes():
    settings = parse({**BASE, "resources": {"requests": {"cpu": "2", "memory": "1Gi"},
                                            "limits": {"cpu": "2000m", "memory": "1024Mi"}}})
    assert settings.resources["limits"]["cpu"] == "2000m"


@pytest.mark.parametrize("tag,label", [("_rc1", "rc1"), ("__1.0-", "1.0"), ("_", ""), ("1.0", "1.0")])
def test_a_tag_starting_with_an_underscore_makes_a_valid_version_label(tag, label):
    """Docker allows a tag to start with '_', a Kubernetes label value does not: the chart's schema
    (and the API server) refused the slot's version label."""
    assert version_label(f"shop/web:{tag}") == label


def test_an_ipv6_zone_is_not_a_source_range():
    """Python's ipaddress takes "fe80::1%eth0"; Traefik's ipAllowList (Go's net package) does not,
    so the stage's Middleware was broken and its route refused."""
    raw = {**BASE, "stageAccess": "restricted", "stageAllowFrom": ["10.0.0.0/8", "fe80::1%eth0"]}
    assert "- stageAllowFrom[1] is 'fe80::1%eth0'; allowed: an IP address or a CIDR" in refused(raw)


@pytest.mark.parametrize("block,named", [
    ({"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}, "except[0]"),  # outside
    ({"cidr": "10.0.0.0/16", "except": ["10.0.0.0/24", "10.0.0.0/16"]}, "except[1]"),  # not smaller
    ({"cidr": "10.0.0.0/16", "except": ["2001:db8::/64"]}, "except[0]"),  # another family
])
def test_an_ip_block_except_must_lie_inside_its_cidr(block, named):
    """Kubernetes refuses a NetworkPolicy whose except is not a strict subset of its cidr."""
    raw = {**BASE, "networkPolicy": {"from": [{"ipBlock": block}]}}
    assert f"- networkPolicy.from[0].ipBlock.{named} is " in refused(raw)


def test_an_ip_block_except_inside_its_cidr_passes():
    block = {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24", "10.0.255.255/32"]}
    assert parse({**BASE, "networkPolicy": {"from": [{"ipBlock": block}]}}).network_policy["from"] == [
        {"ipBlock": block}]


@pytest.mark.parametrize("expression", [
    {"key": "app", "operator": "In"}, {"key": "app", "operator": "NotIn", "values": []},
    {"key": "app", "operator": "Exists", "values": ["web"]}, {"key": "app", "operator": "DoesNotExist", "values": [""]},
    {"key": "app", "operator": "In", "values": ["not a label value"]},
])
def test_a_selector_expression_kubernetes_refuses_is_refused(expression):
    raw = {**BASE, "networkPolicy": {"from": [{"podSelector": {"matchExpressions": [expression]}}]}}
    assert "- networkPolicy.from[0].podSelector is " in refused(raw)


def test_selector_expressions_kubernetes_takes_pass():
    expressions = [{"key": "app", "operator": "In", "values": ["web", ""]}, {"key": "team", "operator": "Exists"},
                   {"key": "tier", "operator": "DoesNotExist", "values": []}]
    raw = {**BASE, "networkPolicy": {"from": [{"podSelector": {"matchExpressions": expressions}}]}}
    assert parse(raw).network_policy["from"][0]["podSelector"]["matchExpressions"] == expressions


@pytest.mark.parametrize("argv", [
    ["deploy", V2, "--replicas", "0"], ["deploy", V2, "--replicas", "101"], ["retire", "--keep-replicas", "101"]])
def test_a_replica_count_out_of_range_is_refused_naming_the_flag(world, capsys, argv):
    """`deploy --replicas 0` used to deploy a slot without pods, wait 60 s for it to become
    Available and 30 s for stage's endpoints, then fail with the update already made."""
    assert cli.main([*argv, "--json"]) == 2
    result = json.loads(capsys.readouterr().out)
    flag = argv[-2]
    assert result["refused"] is True and result["error"].startswith(f"{flag} is {argv[-1]}; allowed: "), result
    assert len(world.updates) == 1 and world.config["green"]["enabled"] is False


@pytest.mark.parametrize("argv,command", [
    (["deploy", "--min-age", "soon", "--json"], "deploy"), (["retire", "--slot", "purple", "--json"], "retire"),
    (["promte", "--json"], None), (["--json", "status"], None), (["deploy", V2, "--replicas", "x", "--json"], "deploy"),
])
def test_a_bad_command_line_is_a_refusal_with_json(world, capsys, argv, command):
    """argparse printed its usage and exited 2 without the JSON --json asks for."""
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result == {"command": command, "ok": False, "refused": True, "error": result["error"]}
    assert "usage: bluegreen" in result["error"] and "refused, nothing was changed" in err


@pytest.mark.parametrize("stack", ["../escape", "a b"])
def test_a_stack_name_pulumi_does_not_take_is_a_refusal_naming_it(tmp_path, stack):
    """The fake world takes any --stack; the real one ended with exit 1 and a CommandError dump."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    (tmp_path / "Pulumi.yaml").write_text("name: bluegreen\nruntime: python\n")
    tools = subprocess.run([str(REPO_ROOT / "scripts" / "toolchain.sh"), "--print-path"], capture_output=True,
                           text=True, check=True).stdout.strip()
    env = {**os.environ, "PULUMI_BACKEND_URL": f"file://{tmp_path}", "PULUMI_CONFIG_PASSPHRASE": "x",
           "PULUMI_SKIP_UPDATE_CHECK": "true", "PATH": f"{tools}:{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-m", "bluegreen", "rollback", "--stack", stack, "--json", "--project-dir",
                           str(tmp_path)], capture_output=True, text=True, env=env)
    if "pulumi is not installed" in done.stdout:
        pytest.skip("no pulumi CLI on PATH: scripts/toolchain.sh pulumi builds it")
    result = json.loads(done.stdout)
    assert done.returncode == 2 and result["refused"] is True, done.stderr
    assert result["error"].startswith(f"--stack {stack!r} cannot be read in ") and "CommandError" not in done.stderr
