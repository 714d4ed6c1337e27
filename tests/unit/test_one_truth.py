"""One truth for validation: the key table (keys.py) and the rules (config.py), Pulumi.yaml (what
`pulumi config` shows), the README's configuration table, the chart's values.yaml (its defaults)
and values.schema.json (what plain helm users are held to) agree on every key, type, default and
limit the program and the chart share."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import yaml

from bluegreen.config import Settings, parse, project_keys
from bluegreen.keys import (
    CONTAINER_PORT,
    DEFAULTS,
    DNS_NAME_PATTERN,
    GATEWAY_KEYS,
    IMAGE_PATTERN,
    IMAGE_PULL_POLICIES,
    KEYS,
    MAX_DNS_NAME,
    REPLICAS,
    ROUTINGS,
    STAGE_ACCESS,
    declared_config,
)
from bluegreen.values import chart_values
from tests.conftest import REPO_ROOT

SCHEMA = json.loads((REPO_ROOT / "bluegreen" / "chart" / "values.schema.json").read_text())
VALUES = yaml.safe_load((REPO_ROOT / "bluegreen" / "chart" / "values.yaml").read_text())
SLOT = SCHEMA["definitions"]["slot"]["properties"]


def test_settings_has_one_field_per_key_in_the_tables_order():
    """Settings stays a declared dataclass (its fields typed for mypy); this is its link to the table."""
    assert [f.name for f in dataclasses.fields(Settings)] == [key.field for key in KEYS]


def test_pulumi_yaml_declares_every_key_as_the_table_does():
    text = (REPO_ROOT / "Pulumi.yaml").read_text()
    assert text[text.index("\nconfig:\n") + 1:] == declared_config(), \
        "Pulumi.yaml's config block is written from bluegreen/keys.py: run `make pulumi-yaml`"
    declared = yaml.safe_load(text)["config"]
    assert {key: spec["default"] for key, spec in declared.items()} == DEFAULTS


def _readme_configuration_table() -> dict[str, str]:
    """Key -> the Default column of the README's configuration table, for the top-level keys."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Configuration\n"):]
    section = section[:section.index("\n#", 1)]
    rows = {}
    for line in section.splitlines():
        cells = re.match(r"^\| `([A-Za-z]+)` \| ([^|]*) \|", line)
        if cells:
            rows[cells[1]] = cells[2]
    return rows


def test_the_readmes_configuration_table_has_every_key_with_its_default():
    rows = _readme_configuration_table()
    assert set(rows) == set(DEFAULTS), set(rows) ^ set(DEFAULTS)
    for key, default in rows.items():
        shown = re.match(r"`([^`]*)`", default)
        assert shown and yaml.safe_load(shown[1]) == DEFAULTS[key], (key, default)


def test_the_schema_holds_config_pys_patterns_and_bounds_verbatim():
    assert SLOT["image"]["pattern"] == "^$|" + IMAGE_PATTERN
    assert SCHEMA["definitions"]["hostname"]["pattern"] == DNS_NAME_PATTERN
    assert SCHEMA["definitions"]["hostname"]["maxLength"] == MAX_DNS_NAME
    assert (SLOT["replicas"]["minimum"], SLOT["replicas"]["maximum"]) == REPLICAS
    port = SCHEMA["properties"]["containerPort"]
    assert (port["minimum"], port["maximum"]) == CONTAINER_PORT


def test_the_schema_holds_config_pys_routing_and_stage_access_choices():
    assert tuple(SCHEMA["properties"]["routing"]["enum"]) == ROUTINGS
    assert tuple(SCHEMA["properties"]["stageAccess"]["properties"]["mode"]["enum"]) == STAGE_ACCESS
    gateway = SCHEMA["properties"]["gateway"]["properties"]
    assert tuple(gateway) == GATEWAY_KEYS
    assert gateway["name"]["pattern"] == gateway["sectionName"]["pattern"] == "^$|" + DNS_NAME_PATTERN


@pytest.mark.parametrize("image", [
    "registry.example.com/shop/web:1.4.0", "localhost:5000/web:dev", "web@sha256:" + "a" * 64, "nginx:1.27",
    "shop/web", "web:", "UPPER/web:1", "registry.example.com/web:1.0@sha256:" + "b" * 64, "web:-bad", "a__b:1",
])
def test_an_image_is_accepted_by_both_or_by_neither(image):
    """Same verdict from config.parse and from the schema's pattern (the chart tier runs it in Helm)."""
    assert bool(re.match(SLOT["image"]["pattern"], image)) == _valid(image)


def _valid(image: str) -> bool:
    try:
        parse({"blue": {"enabled": True, "image": image}})
        return True
    except ValueError:
        return False


def test_the_schema_knows_every_value_the_program_sets_and_nothing_else_gets_through():
    assert SCHEMA["additionalProperties"] is False
    values = chart_values(parse({"blue": {"enabled": True, "image": "shop/web:1"}}))
    assert set(values) <= set(SCHEMA["properties"]), set(values) - set(SCHEMA["properties"])
    for slot in ("blue", "green"):
        assert set(values[slot]) <= set(SLOT), set(values[slot]) - set(SLOT)
    assert set(values["ingress"]) <= set(SCHEMA["properties"]["ingress"]["properties"])
    assert set(values["stageAccess"]) <= set(SCHEMA["properties"]["stageAccess"]["properties"])
    assert set(VALUES["gateway"]) == set(GATEWAY_KEYS)
    assert set(VALUES) <= set(SCHEMA["properties"])


def test_the_charts_defaults_are_config_pys():
    """What plain helm users get without values is what a stack gets without config."""
    values = chart_values(parse({"blue": {"enabled": True, "image": "shop/web:1"}}))
    for key in ("productionSlot", "containerPort", "healthPath", "resources", "readOnlyRootFilesystem",
                "imagePullSecrets", "imagePullPolicy", "networkPolicy"):
        assert VALUES[key] == values[key], key
    for key in ("className", "prodHost", "stageHost", "tlsSecretName", "annotations"):
        assert VALUES["ingress"][key] == values["ingress"][key], key
    assert VALUES["secrets"]["as"] == values["secrets"]["as"]
    assert VALUES["routing"] == values["routing"]
    assert VALUES["stageAccess"] == values["stageAccess"]
    for slot in ("blue", "green"):
        assert {k: VALUES[slot][k] for k in ("enabled", "replicas", "env")} == {
            k: values[slot][k] for k in ("enabled", "replicas", "env")}, slot


def test_the_schema_allows_what_config_py_allows():
    properties = SCHEMA["properties"]
    assert tuple(properties["imagePullPolicy"]["enum"]) == IMAGE_PULL_POLICIES
    assert set(properties["networkPolicy"]["properties"]) == set(DEFAULTS["networkPolicy"])


def test_the_staging_stack_lets_in_the_local_ingress_controllers_real_address():
    """The local Traefik is a host process: it reaches the pods from the bridge's gateway address,
    scripts/node.sh's NODE_IP."""
    node_ip = re.search(r"^NODE_IP=(\S+)", (REPO_ROOT / "scripts" / "node.sh").read_text(), re.MULTILINE)[1]
    staging = yaml.safe_load((REPO_ROOT / "Pulumi.staging.yaml").read_text())["config"]
    policy = parse({**project_keys(staging)}).network_policy
    assert policy["enabled"] and policy["ingressController"] == [{"ipBlock": {"cidr": f"{node_ip}/32"}}]
