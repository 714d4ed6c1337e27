"""Tier 3: what tests/chart/test_generated_render.py found in the chart, each kept as a fixed
example: user values that the templates wrote unquoted into YAML, and values Helm could not read
back from a JSON file."""

from __future__ import annotations

import pytest

from bluegreen.config import parse
from bluegreen.values import chart_values
from tests import kube_rules
from tests.chart.render import template
from tests.scenarios import GATEWAY

BASE = {"blue": {"enabled": True, "image": "registry.example.com/shop/web:1.4.0"}}


def render(helm, raw: dict):
    settings = parse({**BASE, **raw})
    return settings, template(helm, chart_values(settings), release=settings.app_name, namespace=settings.namespace)


# Good names that YAML reads as a number, a boolean or null when written bare.
@pytest.mark.parametrize("word", ["0", "1.5", "1e3", "0x1f", "true", "null", "y", "no", "on"])
def test_a_name_yaml_would_read_as_something_else_stays_text(helm, word):
    _, manifest = render(helm, {"prodHost": word, "ingressClass": word, "tlsSecret": word,
                                "env": {word.upper() if word[0].isalpha() else "V": "x"}})
    for ingress in manifest.all("Ingress"):
        assert ingress["spec"]["ingressClassName"] == word
        assert ingress["spec"]["tls"][0]["secretName"] == word
    assert manifest.get("Ingress", "web")["spec"]["rules"][0]["host"] == word
    assert not [p for obj in manifest.objects for p in kube_rules.object_problems(obj)]


@pytest.mark.parametrize("word", ["y", "no", "on", "true", "null"])
def test_an_app_name_yaml_would_read_as_something_else_stays_text_in_names_and_selectors(helm, word):
    settings, manifest = render(helm, {"appName": word, **GATEWAY, "gateway": {"name": word, "namespace": word}})
    assert manifest.get("Service", f"{word}-prod")["spec"]["selector"] == {
        "app.kubernetes.io/name": word, "app.kubernetes.io/instance": word, "slot": "blue"}
    assert manifest.get("NetworkPolicy", word)["metadata"]["labels"]["app.kubernetes.io/instance"] == word
    ref = manifest.get("HTTPRoute", f"{word}-prod")["spec"]["parentRefs"][0]
    assert (ref["name"], ref["namespace"]) == (word, word)
    assert not [p for obj in manifest.objects for p in kube_rules.object_problems(obj)]


@pytest.mark.parametrize("path", ["/:", '/a"b', "/back\\slash", "/x:#frag"])
def test_a_health_path_with_yaml_characters_renders_as_given(helm, path):
    _, manifest = render(helm, {"healthPath": path})
    container = manifest.get("Deployment", "web-blue")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == path
    check = manifest.get("Pod", "web-test-stage")["spec"]["containers"][0]["command"][-1]
    assert check.endswith(f"_SERVICE_PORT){path}")


@pytest.mark.parametrize("value", ["\U0001F600 emoji", "C1 \x85 \x9f", "line\u2028separator", "\ufeffbom", "日本"])
def test_a_variable_helm_reads_from_the_values_file_as_set(helm, value):
    """json.dump's \\u escapes of a surrogate pair made Helm's YAML parser fail (and `bluegreen
    repair`'s helm upgrade with it); raw C1 controls and NEL were folded or refused."""
    _, manifest = render(helm, {"env": {"GREETING": value}})
    env = manifest.get("Deployment", "web-blue")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "GREETING", "value": value} in env
