"""The object diff of two manifests (bluegreen/release/manifests.py): added, removed, changed
objects, field paths, lists matched by their keys, Secrets never printed."""

from __future__ import annotations

import base64
import copy
import json

import pytest
import yaml

from bluegreen.release.manifests import (
    ABSENT,
    ADDED,
    CHANGED,
    REMOVED,
    FieldChange,
    ManifestError,
    as_json,
    diff,
    parse,
    render_text,
)

APP = {"name": "app", "image": "shop/web:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
       "ports": [{"name": "http", "containerPort": 8080}],
       "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "tmp", "mountPath": "/cache", "subPath": "c"}]}


def deployment(name="web-blue", **spec):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/version": "1", "slot": "blue"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [copy.deepcopy(APP)]}}, **spec}}


def service(name, slot):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app.kubernetes.io/name": "web", "slot": slot},
                     "ports": [{"name": "http", "port": 80}]}}


def stream(*objects) -> str:
    """A manifest as Helm writes one: `# Source:` comments, `---` between documents."""
    return "".join(f"---\n# Source: chart/templates/x.yaml\n{yaml.safe_dump(o, sort_keys=False)}" for o in objects)


def fields(changes, index=0):
    return [(f.path, f.old, f.new) for f in changes[index].fields]


def test_the_same_objects_in_another_order_with_comments_and_empty_documents_are_no_change():
    old = stream(service("web-prod", "blue"), deployment())
    new = "---\n# a comment\n---\n" + stream(deployment(), service("web-prod", "blue")) + "---\n"
    assert diff(old, new, "shop") == []
    assert render_text([]) == "No object changes.\n"
    assert as_json([]) == {"changes": [], "summary": {"changed": 0, "added": 0, "removed": 0}}


def test_added_removed_and_changed_objects_in_the_new_manifests_order_then_the_removed():
    old = stream(service("web-prod", "blue"), service("web-stage", "green"), deployment("web-blue"))
    new = stream(service("web-prod", "green"), deployment("web-green"), service("web-stage", "blue"))
    changes = diff(old, new, "shop")
    assert [(c.action, c.kind, c.namespace, c.name) for c in changes] == [
        (CHANGED, "Service", "shop", "web-prod"), (ADDED, "Deployment", "shop", "web-green"),
        (CHANGED, "Service", "shop", "web-stage"), (REMOVED, "Deployment", "shop", "web-blue")]
    assert fields(changes) == [("spec.selector.slot", "blue", "green")]
    assert changes[1].object["metadata"]["name"] == "web-green"
    text = render_text(changes)
    assert text.splitlines()[:2] == ["~ Service shop/web-prod (changed)", '    ~ spec.selector.slot: "blue" -> "green"']
    assert "+ Deployment shop/web-green (added)\n    metadata:\n      name: web-green\n" in text
    assert "    ~ spec.selector.slot: \"green\" -> \"blue\"\n- Deployment shop/web-blue (removed)\n" in text
    assert text.endswith("2 changed, 1 added, 1 removed.\n")
    assert "image: shop/web:1" not in text.split("- Deployment shop/web-blue")[1]  # a removed object: its name only
    assert "image: shop/web:1" in render_text(changes)  # the added one's content
    assert "image:" not in render_text(changes, added_bodies=False)
    data = as_json(changes)
    assert data["summary"] == {"changed": 2, "added": 1, "removed": 1}
    assert data["changes"][0] == {"action": "changed", "apiVersion": "v1", "kind": "Service", "namespace": "shop",
                                  "name": "web-prod", "fields": [{"path": "spec.selector.slot", "action": "changed",
                                                                  "old": "blue", "new": "green"}]}
    assert data["changes"][1]["object"]["spec"]["replicas"] == 2
    assert "object" not in data["changes"][3]
    assert json.loads(json.dumps(data)) == data


def test_field_paths_added_and_removed_fields_and_keys_that_are_not_plain_words():
    old, new = deployment(), deployment()
    new["metadata"]["labels"]["app.kubernetes.io/version"] = "2"
    new["metadata"]["annotations"] = {"kube-score/ignore": "x"}
    del new["metadata"]["labels"]["slot"]
    new["spec"]["replicas"] = 3
    changes = diff(stream(old), stream(new))
    assert fields(changes) == [
        ('metadata.labels["app.kubernetes.io/version"]', "1", "2"),
        ("metadata.labels.slot", "blue", ABSENT),
        ("metadata.annotations", ABSENT, {"kube-score/ignore": "x"}),
        ("spec.replicas", 2, 3)]
    assert [f.action for f in changes[0].fields] == [CHANGED, REMOVED, ADDED, CHANGED]
    assert render_text(changes).splitlines()[1:5] == [
        '    ~ metadata.labels["app.kubernetes.io/version"]: "1" -> "2"',
        '    - metadata.labels.slot: "blue"',
        '    + metadata.annotations: {"kube-score/ignore": "x"}',
        "    ~ spec.replicas: 2 -> 3"]
    assert as_json(changes)["changes"][0]["fields"][1] == {"path": "metadata.labels.slot", "action": "removed",
                                                            "old": "blue"}


def test_containers_env_and_ports_are_matched_by_name_not_position():
    old, new = deployment(), deployment()
    containers = new["spec"]["template"]["spec"]["containers"]
    containers.insert(0, {"name": "proxy", "image": "proxy:1"})  # before app: no shift of app's fields
    app = containers[1]
    app["image"] = "shop/web:2"
    app["env"] = [{"name": "A", "value": "1"}, {"name": "NEW", "value": "x"}, {"name": "B", "value": "3"}]
    app["ports"].append({"name": "metrics", "containerPort": 9090})
    changes = diff(stream(old), stream(new))
    base = "spec.template.spec.containers"
    assert fields(changes) == [
        (f"{base}[name=proxy]", ABSENT, {"name": "proxy", "image": "proxy:1"}),
        (f"{base}[name=app].image", "shop/web:1", "shop/web:2"),
        (f"{base}[name=app].env[name=NEW]", ABSENT, {"name": "NEW", "value": "x"}),
        (f"{base}[name=app].env[name=B].value", "2", "3"),
        (f"{base}[name=app].ports[name=metrics]", ABSENT, {"name": "metrics", "containerPort": 9090})]


def test_a_reordered_list_says_so_once():
    old, new = deployment(), deployment()
    new["spec"]["template"]["spec"]["containers"][0]["env"].reverse()
    assert fields(diff(stream(old), stream(new))) == [
        ("spec.template.spec.containers[name=app].env[*].name", ["A", "B"], ["B", "A"])]


def test_volume_mounts_by_mount_path_and_unnamed_ports_by_number():
    old, new = deployment(), deployment()
    app = new["spec"]["template"]["spec"]["containers"][0]
    app["volumeMounts"][1]["readOnly"] = True  # the same volume mounted twice: `name` is no key
    old["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 8080}, {"containerPort": 9090}]
    app["ports"] = [{"containerPort": 9090, "protocol": "UDP"}, {"containerPort": 8080}]
    base = "spec.template.spec.containers[name=app]"
    assert fields(diff(stream(old), stream(new))) == [
        (f"{base}.ports[*].containerPort", [8080, 9090], [9090, 8080]),
        (f"{base}.ports[containerPort=9090].protocol", ABSENT, "UDP"),
        (f'{base}.volumeMounts[mountPath="/cache"].readOnly', ABSENT, True)]


def test_lists_of_plain_values_change_as_a_whole_and_keyless_objects_by_position():
    old, new = deployment(), deployment()
    old["spec"]["template"]["spec"]["containers"][0]["command"] = ["/app", "serve"]
    new["spec"]["template"]["spec"]["containers"][0]["command"] = ["/app", "serve", "--debug"]
    old["spec"]["template"]["spec"]["tolerations"] = [{"key": "a", "effect": "NoSchedule"}]
    new["spec"]["template"]["spec"]["tolerations"] = [{"key": "a", "effect": "NoExecute"}, {"key": "b"}]
    assert fields(diff(stream(old), stream(new))) == [
        ("spec.template.spec.containers[name=app].command", ["/app", "serve"], ["/app", "serve", "--debug"]),
        ("spec.template.spec.tolerations[0].effect", "NoSchedule", "NoExecute"),
        ("spec.template.spec.tolerations[1]", ABSENT, {"key": "b"})]


def test_an_unquoted_date_is_text():
    old = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, annotations: {since: 2026-11-27}}\n"
    changes = diff(old, old.replace("2026-11-27", "2026-11-28"))
    assert fields(changes) == [('metadata.annotations.since', "2026-11-27", "2026-11-28")]
    assert '"2026-11-27" -> "2026-11-28"' in render_text(changes)


def test_null_fields_are_absent_fields():
    old, new = deployment(), deployment()
    new["metadata"]["annotations"] = None
    new["spec"]["paused"] = None
    assert diff(stream(old), stream(new)) == []


def test_a_long_value_is_printed_as_a_yaml_block():
    old, new = deployment(), deployment()
    new["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "x" * 90})
    lines = render_text(diff(stream(old), stream(new))).splitlines()
    assert lines[1:4] == ["    + spec.template.spec.containers[name=sidecar]:", "        name: sidecar",
                          f"        image: {'x' * 90}"]
    old["spec"]["template"]["spec"]["containers"][0]["args"] = ["a" * 80, "b"]
    new["spec"]["template"]["spec"]["containers"][0]["args"] = ["a" * 80, "c"]
    lines = render_text(diff(stream(old), stream(new))).splitlines()
    assert lines[lines.index("    ~ spec.template.spec.containers[name=app].args:"):][:7] == [
        "    ~ spec.template.spec.containers[name=app].args:", "        was:", f"          - {'a' * 80}",
        "          - b", "        now:", f"          - {'a' * 80}", "          - c"]


def test_identity_is_group_kind_namespace_name():
    ingress = {"apiVersion": "networking.k8s.io/v1beta1", "kind": "Ingress", "metadata": {"name": "web"}}
    newer = {**ingress, "apiVersion": "networking.k8s.io/v1"}
    assert fields(diff(stream(ingress), stream(newer))) == [
        ("apiVersion", "networking.k8s.io/v1beta1", "networking.k8s.io/v1")]
    other_group = {**ingress, "apiVersion": "extensions/v1beta1"}
    assert [c.action for c in diff(stream(other_group), stream(newer))] == [ADDED, REMOVED]
    elsewhere = {**newer, "metadata": {"name": "web", "namespace": "other"}}
    changes = diff(stream(newer), stream(elsewhere), "shop")
    assert [(c.action, str(c)) for c in changes] == [(ADDED, "Ingress other/web"), (REMOVED, "Ingress shop/web")]
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "reader"}}
    [added] = diff("", stream(role), "shop")
    assert (added.namespace, str(added)) == ("", "ClusterRole reader")


def test_a_list_object_is_its_items():
    items = {"apiVersion": "v1", "kind": "List", "items": [service("web-prod", "blue"), service("web-stage", "green")]}
    assert list(parse(stream(items), "shop")) == [("", "Service", "shop", "web-prod"),
                                                  ("", "Service", "shop", "web-stage")]
    # a kind that only ends in "List" is an object of its own
    allow = {"apiVersion": "example.com/v1", "kind": "IPAllowList", "metadata": {"name": "a"}, "spec": {}}
    assert list(parse(stream(allow), "shop")) == [("example.com", "IPAllowList", "shop", "a")]


@pytest.mark.parametrize("manifest, message", [
    ("a: [1", "the manifest is not YAML"),
    ("--- just text\n", "document 1 is a str, not a Kubernetes object"),
    ("---\n---\napiVersion: v1\nkind: Service\n", "document 2 has no apiVersion, kind and metadata.name: "
                                                    "apiVersion='v1', kind='Service', name=None"),
    (stream(service("web-prod", "blue"), service("web-prod", "green")), "document 2: Service web-prod appears twice"),
])
def test_what_is_no_manifest_is_a_clear_error(manifest, message):
    with pytest.raises(ManifestError) as error:
        diff("", manifest)
    assert message in str(error.value)


# --- Secrets --------------------------------------------------------------------------------

MARKER = "s3cr3t-marker-do-not-print"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(data=None, string_data=None, annotations=None):
    obj = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": "web-secrets", **({"annotations": annotations} if annotations else {})}}
    if data is not None:
        obj["data"] = data
    if string_data is not None:
        obj["stringData"] = string_data
    return obj


def everything_printed(changes) -> str:
    return render_text(changes) + json.dumps(as_json(changes)) + repr(changes) + str(changes)


def assert_never_printed(changes):
    printed = everything_printed(changes)
    for form in (MARKER, b64(MARKER), b64(MARKER + "-2"), MARKER[:12], b64(MARKER)[:12]):
        assert form not in printed


def test_a_changed_secret_value_shows_only_digests():
    old = secret(data={"DB_PASSWORD": b64(MARKER), "KEPT": b64(MARKER + "k"), "GONE": b64(MARKER + "g")})
    new = secret(data={"DB_PASSWORD": b64(MARKER + "-2"), "KEPT": b64(MARKER + "k"), "NEW": b64(MARKER + "n")})
    changes = diff(stream(old), stream(new))
    assert_never_printed(changes)
    [changed, gone, added] = changes[0].fields
    assert (changed.path, gone.path, added.path) == ("data.DB_PASSWORD", "data.GONE", "data.NEW")
    assert (changed.action, gone.action, added.action) == (CHANGED, REMOVED, ADDED)
    assert changed.old != changed.new
    text = render_text(changes)
    assert f"    ~ data.DB_PASSWORD: {changed.old} -> {changed.new}\n" in text
    assert str(changed.old).startswith("(secret sha256:") and len(str(changed.old)) == len("(secret sha256:)") + 8
    assert as_json(changes)["changes"][0]["fields"][0] == {"path": "data.DB_PASSWORD", "action": "changed",
                                                           "old": str(changed.old), "new": str(changed.new)}


def test_the_same_value_has_the_same_digest_in_data_and_string_data():
    changes = diff(stream(secret(data={"K": b64(MARKER)})), stream(secret(string_data={"K": MARKER})))
    [removed, added] = changes[0].fields
    assert (removed.path, removed.action, added.path, added.action) == ("data", REMOVED, "stringData", ADDED)
    assert removed.old == added.new  # {"K": (secret sha256:...)} on both sides
    assert_never_printed(changes)


def test_added_and_removed_secrets_and_whole_data_fields_are_masked_too():
    last_applied = json.dumps({"data": {"A": MARKER}})
    whole = secret(data={"A": b64(MARKER)}, string_data={"B": MARKER},
                   annotations={"kubectl.kubernetes.io/last-applied-configuration": last_applied})
    changes = diff("", stream(whole))
    assert changes[0].action == ADDED
    assert_never_printed(changes)
    assert "(secret sha256:" in render_text(changes)
    assert_never_printed(diff(stream(whole), ""))
    assert_never_printed(diff(stream(secret()), stream(whole)))
    # data that is not base64, or not a map, is masked all the same
    odd = secret(data={"A": MARKER}, string_data=MARKER)  # type: ignore[arg-type]
    assert_never_printed(diff(stream(secret()), stream(odd)))


def test_only_secrets_are_masked():
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"K": "v1"}}
    changed = {**config_map, "data": {"K": "v2"}}
    assert fields(diff(stream(config_map), stream(changed))) == [("data.K", "v1", "v2")]


def test_field_change_actions():
    assert FieldChange("a", ABSENT, 1).action == ADDED
    assert FieldChange("a", 1, ABSENT).action == REMOVED
    assert FieldChange("a", 1, 2).action == CHANGED
