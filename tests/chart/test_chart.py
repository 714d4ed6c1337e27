"""Tier 3: what Kubernetes would receive, rendered by the real helm CLI.

Asserts on the selectors, labels, images and hosts themselves, for every step of a release.
"""

import subprocess

import pytest
import yaml

from bluegreen.config import parse, project_keys
from bluegreen.values import chart_values
from tests.chart.render import CHART, HelmError, template
from tests.scenarios import SCENARIOS, V1, V2


def render(helm, scenario):
    return template(helm, chart_values(parse(scenario.config)))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_services_select_exactly_one_slot(helm, scenario):
    manifest = render(helm, scenario)
    assert manifest.deployments_selected_by("web-prod") == [f"web-{scenario.prod}"]
    expected_stage = [f"web-{scenario.stage}"] if scenario.images[scenario.stage] else []
    assert manifest.deployments_selected_by("web-stage") == expected_stage


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_one_deployment_per_enabled_slot(helm, scenario):
    manifest = render(helm, scenario)
    deployed = {d["metadata"]["name"]: d for d in manifest.all("Deployment")}
    assert sorted(deployed) == sorted(f"web-{s}" for s, image in scenario.images.items() if image)
    for slot, image in scenario.images.items():
        if not image:
            continue
        spec = deployed[f"web-{slot}"]["spec"]
        assert spec["selector"]["matchLabels"]["slot"] == slot
        assert spec["template"]["metadata"]["labels"]["slot"] == slot
        assert deployed[f"web-{slot}"]["metadata"]["labels"]["slot"] == slot
        assert spec["template"]["spec"]["containers"][0]["image"] == image
        assert spec["replicas"] == 2


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_ingress_routes_prod_host_to_prod_and_stage_host_to_stage(helm, scenario):
    # One Ingress per host: the stage's access rules (stageAccess) must not touch prod's route.
    manifest = render(helm, scenario)
    routes = {}
    for name in ("web", "web-stage"):
        ingress = manifest.get("Ingress", name)
        assert ingress["apiVersion"] == "networking.k8s.io/v1"
        assert ingress["spec"]["ingressClassName"] == "traefik"
        assert "tls" not in ingress["spec"]
        assert "annotations" not in ingress["metadata"]  # public stage: no Middlewares
        routes.update({rule["host"]: rule["http"]["paths"][0]["backend"]["service"]["name"]
                       for rule in ingress["spec"]["rules"]})
    assert routes == {"shop.example.com": "web-prod", "stage.shop.example.com": "web-stage"}
    assert len(manifest.all("Ingress")) == 2 and not manifest.all("HTTPRoute")


def test_tls_covers_each_host(helm):
    values = chart_values(parse({**SCENARIOS[0].config, "tlsSecret": "shop-tls"}))
    manifest = template(helm, values)
    assert manifest.get("Ingress", "web")["spec"]["tls"] == [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]
    assert manifest.get("Ingress", "web-stage")["spec"]["tls"] == [
        {"hosts": ["stage.shop.example.com"], "secretName": "shop-tls"}]


def test_pods_meet_pod_security_restricted(helm):
    manifest = render(helm, SCENARIOS[1])
    pods = [d["spec"]["template"]["spec"] for d in manifest.all("Deployment")]
    pods += [p["spec"] for p in manifest.all("Pod")]  # the helm test hook too
    assert len(pods) == 3
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 10000 and pod["securityContext"]["runAsGroup"] > 10000
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc["readOnlyRootFilesystem"] is True
            assert container["resources"]["requests"]


def test_probes_and_resources_follow_config(helm):
    config = {**SCENARIOS[0].config, "healthPath": "/ready", "containerPort": 9000,
              "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}
    deployment = template(helm, chart_values(parse(config))).get("Deployment", "web-blue")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    # Liveness only asks whether the port accepts connections: a failing health path (a database
    # down) takes pods out of the Services; restarting them all would not help.
    assert container["livenessProbe"]["tcpSocket"] == {"port": "http"} and "httpGet" not in container["livenessProbe"]
    assert container["ports"][0]["containerPort"] == 9000
    # Fields not given keep their defaults, in the config layer and in Helm's merge alike.
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "64Mi"},
                                      "limits": {"memory": "256Mi", "ephemeral-storage": "1Gi"}}


def test_helm_test_hook_checks_the_stage_service(helm):
    pod = render(helm, SCENARIOS[1]).get("Pod", "web-test-stage")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # The Service's address from the pod's environment (Kubernetes expands $(VAR)): no DNS needed.
    assert pod["spec"]["containers"][0]["command"] == [
        "wget", "-q", "-O-", "-T", "5", "http://$(WEB_STAGE_SERVICE_HOST):$(WEB_STAGE_SERVICE_PORT)/healthz"]


def test_helm_test_client_is_configurable(helm):
    values = {**chart_values(parse(SCENARIOS[1].config)), "tests": {"image": V1, "command": ["/app", "check"]}}
    container = template(helm, values).get("Pod", "web-test-stage")["spec"]["containers"][0]
    assert container["image"] == V1
    assert container["command"][:2] == ["/app", "check"] and container["command"][2].endswith("/healthz")


def test_pods_drain_before_they_stop(helm):
    for deployment in render(helm, SCENARIOS[1]).all("Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        # Out of the Services first, then SIGTERM: requests routed by a stale Endpoint list still land.
        assert spec["containers"][0]["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
        assert spec["terminationGracePeriodSeconds"] == 30


def test_drain_can_be_turned_off(helm):
    values = {**chart_values(parse(SCENARIOS[1].config)), "drainSeconds": 0}
    for deployment in template(helm, values).all("Deployment"):
        assert "lifecycle" not in deployment["spec"]["template"]["spec"]["containers"][0]


def test_drain_must_end_before_the_grace_period(helm):
    values = {**chart_values(parse(SCENARIOS[1].config)), "drainSeconds": 30, "terminationGracePeriodSeconds": 30}
    with pytest.raises(HelmError, match="drainSeconds is 30; allowed: less than terminationGracePeriodSeconds"):
        template(helm, values)


def test_standard_labels_everywhere(helm):
    for obj in render(helm, SCENARIOS[1]).objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "web"
        assert labels["app.kubernetes.io/instance"] == "web"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "bluegreen-1.0.0"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_lint_strict_passes(helm, scenario, tmp_path):
    values = tmp_path / "values.json"
    values.write_text(__import__("json").dumps(chart_values(parse(scenario.config))))
    done = subprocess.run([helm, "lint", "--strict", str(CHART), "--values", str(values)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("sets,message", [
    (["productionSlot=purple"], "at '/productionSlot': value must be one of 'blue', 'green'"),
    (["blue.replicas=-1"], "at '/blue/replicas': minimum"),
    (["blue.replicas=two"], "at '/blue/replicas'"),
    (["green.enabled=yes"], "at '/green/enabled'"),
    (["green.enabeld=true"], "additional properties 'enabeld' not allowed"),
    (["green.image=shop web:1"], "at '/green/image'"),
    (["ingress.prodHost=Shop_Example"], "at '/ingress/prodHost'"),
    (["green.image=shop/web"], "at '/green/image'"),  # no tag, no digest: config.py's rule, in Helm
    (["blue.replicas=101"], "at '/blue/replicas': maximum"),
    (["productonSlot=green"], "additional properties 'productonSlot' not allowed"),  # a typo at the top
])
def test_schema_rejects_bad_values(helm, sets, message):
    with pytest.raises(HelmError, match="values don't meet the specifications of the schema") as error:
        template(helm, sets=[f"blue.image={V1}", *sets])
    assert message in str(error.value)


@pytest.mark.parametrize("sets,message", [
    (["productionSlot=green"], "productionSlot is green but green.enabled is false: prod would have no pods"),
    (["green.enabled=true"], "green.image is required when green.enabled is true"),
    ([], "blue.image is required when blue.enabled is true"),
])
def test_chart_refuses_to_render_an_outage(helm, sets, message):
    with pytest.raises(HelmError, match=message):
        template(helm, sets=sets if not sets or sets[0] != "green.enabled=true" else [f"blue.image={V1}", *sets])


def test_prod_and_stage_hosts_must_differ(helm):
    with pytest.raises(HelmError, match="stage needs its own host"):
        template(helm, sets=[f"blue.image={V1}", "ingress.prodHost=a.example.com", "ingress.stageHost=a.example.com"])


def test_articles_plain_helm_flow_renders(helm):
    """The article's commands, as plain `--set` flags on the chart's own defaults."""
    sets = [f"blue.image={V1}"]
    manifest = template(helm, sets=sets, release="shop")
    # Without nameOverride, helm create's naming: <release>-<chart>.
    assert manifest.deployments_selected_by("shop-bluegreen-prod") == ["shop-bluegreen-blue"]
    assert manifest.deployments_selected_by("shop-bluegreen-stage") == []

    sets += ["green.enabled=true", f"green.image={V2}"]  # deploy into the other slot
    manifest = template(helm, sets=sets, release="shop")
    assert manifest.deployments_selected_by("shop-bluegreen-prod") == ["shop-bluegreen-blue"]
    assert manifest.deployments_selected_by("shop-bluegreen-stage") == ["shop-bluegreen-green"]

    sets += ["productionSlot=green"]  # promote
    manifest = template(helm, sets=sets, release="shop")
    assert manifest.deployments_selected_by("shop-bluegreen-prod") == ["shop-bluegreen-green"]
    assert manifest.deployments_selected_by("shop-bluegreen-stage") == ["shop-bluegreen-blue"]

    sets += ["blue.enabled=false"]  # optionally delete the old slot
    manifest = template(helm, sets=sets, release="shop")
    assert [d["metadata"]["name"] for d in manifest.all("Deployment")] == ["shop-bluegreen-green"]
    assert manifest.deployments_selected_by("shop-bluegreen-prod") == ["shop-bluegreen-green"]


def test_each_slot_runs_its_own_variables_and_version(helm):
    config = {**SCENARIOS[1].config, "env": {"LOG_LEVEL": "info"},
              "green": {**SCENARIOS[1].config["green"], "env": {"LOG_LEVEL": "debug", "FEATURE_X": "on"}}}
    manifest = template(helm, chart_values(parse(config)))
    for slot, env, version in (("blue", {"LOG_LEVEL": "info"}, "1.4.0"),
                               ("green", {"LOG_LEVEL": "debug", "FEATURE_X": "on"}, "1.5.0")):
        deployment = manifest.get("Deployment", f"web-{slot}")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert {e["name"]: e["value"] for e in container["env"]} == {"BLUEGREEN_SLOT": slot, **env}
        assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == version
        assert deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == version


def test_every_deployed_slot_has_a_disruption_budget_that_allows_a_drain(helm):
    manifest = render(helm, SCENARIOS[1])  # both slots deployed
    budgets = {b["metadata"]["name"]: b["spec"] for b in manifest.all("PodDisruptionBudget")}
    assert set(budgets) == {"web-blue", "web-green"}
    for slot, spec in budgets.items():
        assert spec["maxUnavailable"] == 1 and spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        assert spec["selector"]["matchLabels"]["slot"] == slot.split("-")[1]
    assert [b["metadata"]["name"] for b in render(helm, SCENARIOS[0]).all("PodDisruptionBudget")] == ["web-blue"]


def test_a_budget_that_forbids_every_eviction_is_refused(helm):
    with pytest.raises(HelmError, match="maxUnavailable"):
        template(helm, chart_values(parse(SCENARIOS[1].config)), sets=["podDisruptionBudget.maxUnavailable=0"])


def test_a_slots_pods_spread_over_nodes(helm):
    spec = render(helm, SCENARIOS[0]).get("Deployment", "web-blue")["spec"]["template"]["spec"]
    (constraint,) = spec["topologySpreadConstraints"]
    assert constraint["topologyKey"] == "kubernetes.io/hostname"
    assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"  # a one-node cluster still schedules
    assert constraint["labelSelector"]["matchLabels"]["slot"] == "blue"


def test_ingress_annotations_are_configurable(helm):
    config = {**SCENARIOS[0].config, "ingressAnnotations": {"cert-manager.io/cluster-issuer": "letsencrypt"}}
    ingress = template(helm, chart_values(parse(config))).get("Ingress", "web")
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    assert "annotations" not in render(helm, SCENARIOS[0]).get("Ingress", "web")["metadata"]


@pytest.mark.parametrize("mode", ["file", "env"])
def test_a_slots_secret_reaches_its_pods_as_files_or_env(helm, mode):
    config = {**SCENARIOS[1].config, "secretsAs": mode, "imagePullSecrets": ["regcred"]}
    values = chart_values(parse(config), {"green": "web-green-secrets-abc123"})
    manifest = template(helm, values)
    green = manifest.get("Deployment", "web-green")["spec"]["template"]["spec"]
    blue = manifest.get("Deployment", "web-blue")["spec"]["template"]["spec"]
    container = green["containers"][0]
    if mode == "file":
        (volume,) = [v for v in green["volumes"] if v["name"] == "secrets"]
        assert volume["secret"]["secretName"] == "web-green-secrets-abc123"
        assert {"name": "secrets", "mountPath": "/etc/secrets", "readOnly": True} in container["volumeMounts"]
        assert "envFrom" not in container
    else:
        assert container["envFrom"] == [{"secretRef": {"name": "web-green-secrets-abc123"}}]
        assert all(v["name"] != "secrets" for v in green["volumes"])
    assert all(v["name"] != "secrets" for v in blue["volumes"])  # blue has no secrets
    assert green["imagePullSecrets"] == blue["imagePullSecrets"] == [{"name": "regcred"}]


def test_app_pods_run_as_a_high_group_that_can_read_the_secret_files(helm):
    values = chart_values(parse({**SCENARIOS[1].config, "secretsAs": "file"}), {"green": "web-green-secrets-abc123"})
    pod = template(helm, values).get("Deployment", "web-green")["spec"]["template"]["spec"]
    # The secret files are mode 0440: their group (fsGroup) must be the app's.
    assert pod["securityContext"]["runAsGroup"] == pod["securityContext"]["fsGroup"] == 10001
    (volume,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    assert volume["secret"]["defaultMode"] == 0o440


@pytest.mark.parametrize("policy", ["IfNotPresent", "Always"])
def test_image_pull_policy_follows_config(helm, policy):
    manifest = template(helm, chart_values(parse({**SCENARIOS[1].config, "imagePullPolicy": policy})))
    containers = [d["spec"]["template"]["spec"]["containers"][0] for d in manifest.all("Deployment")]
    containers += [manifest.get("Pod", "web-test-stage")["spec"]["containers"][0]]
    assert [c["imagePullPolicy"] for c in containers] == [policy] * 3


def network_policy(helm, config):
    return template(helm, chart_values(parse({**SCENARIOS[1].config, **config}))).get("NetworkPolicy", "web")


def test_network_policy_lets_in_only_the_ingress_controller_and_the_test_pod_by_default(helm):
    manifest = render(helm, SCENARIOS[1])
    spec = manifest.get("NetworkPolicy", "web")["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    # It selects both slots' pods (and the test pod, which takes no traffic).
    pods = [d["spec"]["template"]["metadata"] for d in manifest.all("Deployment")]
    pods += [p["metadata"] for p in manifest.all("Pod")]
    assert len(pods) == 3
    for pod in pods:
        assert spec["podSelector"]["matchLabels"].items() <= pod["labels"].items(), pod
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    traefik, test_pod = rule["from"]
    assert traefik == {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}}}
    assert test_pod["podSelector"]["matchLabels"].items() <= manifest.get("Pod", "web-test-stage")["metadata"][
        "labels"].items()
    assert "namespaceSelector" not in test_pod  # this namespace's only
    # Other pods of the release (or of another release) are not the test pod.
    assert test_pod["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "web"
    for deployment in manifest.all("Deployment"):
        assert "bluegreen.dev/role" not in deployment["spec"]["template"]["metadata"]["labels"]


def test_network_policy_peers_and_port_follow_config(helm):
    controller = [{"ipBlock": {"cidr": "10.244.0.1/32"}}]
    extra = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
              "podSelector": {"matchLabels": {"app": "prometheus"}}}]
    spec = network_policy(helm, {"containerPort": 9000, "networkPolicy": {"ingressController": controller,
                                                                          "from": extra}})["spec"]
    (rule,) = spec["ingress"]
    assert rule["from"][:2] == controller + extra and len(rule["from"]) == 3
    assert rule["ports"] == [{"protocol": "TCP", "port": 9000}]


def test_network_policy_can_be_turned_off(helm):
    manifest = template(helm, chart_values(parse({**SCENARIOS[1].config, "networkPolicy": {"enabled": False}})))
    assert manifest.all("NetworkPolicy") == []


def test_the_staging_stacks_policy_lets_in_the_local_traefik_on_the_host(helm, repo_root):
    """The local cluster's Traefik runs on the host and connects from bg0's address. (The local
    CNI bridge plugin does not enforce NetworkPolicy: this is as far as it can be checked here.)"""
    staging = yaml.safe_load((repo_root / "Pulumi.staging.yaml").read_text())["config"]
    spec = template(helm, chart_values(parse(project_keys(staging)))).get("NetworkPolicy", "web")["spec"]
    assert spec["ingress"][0]["from"][0] == {"ipBlock": {"cidr": "10.244.0.1/32"}}
    assert spec["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]


@pytest.mark.parametrize("peer,message", [
    ({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}, "ingressController/0"),
    ({}, "ingressController/0"),
    ({"ipBlock": {}}, "missing property 'cidr'"),
])
def test_schema_rejects_bad_peers(helm, peer, message):
    values = {**chart_values(parse(SCENARIOS[1].config))}
    values["networkPolicy"] = {**values["networkPolicy"], "ingressController": [peer]}
    with pytest.raises(HelmError, match="values don't meet the specifications of the schema") as error:
        template(helm, values)
    assert message in str(error.value)
