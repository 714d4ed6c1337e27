"""What the generated-input tests (test_generated_config.py, test_generated_cli.py,
tests/chart/test_generated_render.py) found, each kept as a fixed example: these passed the old code
and would have failed only later, in the cluster or in the middle of a release."""

from __future__ import annotations

import pytest

from bluegreen.config import ConfigError, parse

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
