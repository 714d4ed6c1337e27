"""`bluegreen deploy --from-stack SOURCE` over two stacks in memory (staging and production, each in
its own namespace of one cluster): the image chosen is the digest SOURCE's prod pods run, and every
refusal comes before anything changes, naming the reason and the fix."""

from __future__ import annotations

import argparse
import copy
import datetime
import json

import pytest

from bluegreen.release import carry, cli
from bluegreen.release.steps import Refused
from tests.unit.fake_world import CONFIG, V1, V2, FakeCluster, FakeStack, image_id, install_stacks

REPOSITORY = V2.rsplit(":", 1)[0]


@pytest.fixture
def stacks(monkeypatch, tmp_path):
    production = copy.deepcopy(CONFIG)
    production.update(namespace="shop-production", prodHost="shop.prod.example.com",
                      stageHost="stage.shop.prod.example.com")
    found = {"staging": FakeStack(FakeCluster(), name="staging"),
             "production": FakeStack(FakeCluster(), production, name="production")}
    for stack in found.values():
        stack.up()
    return install_stacks(monkeypatch, found, tmp_path)


@pytest.fixture
def tool(stacks, capsys):
    def run(*args: str, stack: str = "production", expect: int = 0) -> dict:
        code = cli.main([*args, "--stack", stack, "--json"])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        assert code == expect, f"exit {code}, expected {expect}:\n{err}"
        return json.loads(out)

    return run


@pytest.fixture
def promoted(tool, stacks):
    """V2 deployed to staging and promoted there: staging's prod is green, running V2."""
    tool("deploy", V2, stack="staging")
    tool("promote", stack="staging")
    return stacks


def unchanged(stack: FakeStack):
    return json.dumps(stack.config, sort_keys=True), len(stack.updates)


def test_carries_the_digest_stagings_prod_runs_into_the_idle_slot(tool, promoted):
    production = promoted["production"]
    result = tool("deploy", "--from-stack", "staging")
    digest = image_id(V2).split("@")[1]
    carried = f"{REPOSITORY}:2.0.0@{digest}"
    assert production.config["green"] == {"enabled": True, "image": carried, "replicas": 2}
    assert production.config["productionSlot"] == "blue"  # prod untouched
    source = result["source"]
    assert (source["stack"], source["slot"], source["imageID"], source["tag"], source["image"]) == \
        ("staging", "green", image_id(V2), "2.0.0", carried)
    promotion = promoted["staging"].times[-1].isoformat(timespec="seconds")
    assert source["promoted"] == promotion and source["promotedExact"] is True
    assert production.messages[-1] == (f"bluegreen deploy: green <- staging's prod ({image_id(V2)}, tag 2.0.0, "
                                       f"promoted {promotion}); prod stays blue ({V1})")


def test_the_image_is_what_the_node_reports_for_the_pods_not_the_configs_tag(tool, promoted):
    """A tag that was moved after staging's pods started: the pods still run the old digest."""
    moved = f"{REPOSITORY}@sha256:{'ab' * 32}"
    for pod in ("web-green-0", "web-green-1"):
        promoted["staging"].cluster.image_ids[pod] = moved
    tool("deploy", "--from-stack", "staging")
    assert promoted["production"].config["green"]["image"] == f"{REPOSITORY}:2.0.0@sha256:{'ab' * 32}"


def test_replicas_and_replace_work_with_from_stack(tool, promoted):
    production = promoted["production"]
    tool("deploy", "--from-stack", "staging", "--replicas", "1")
    assert production.config["green"]["replicas"] == 1
    result = tool("deploy", "--from-stack", "staging", expect=2)
    assert "a release is already staged" in result["error"] and "--from-stack SOURCE --replace" in result["error"]
    tool("deploy", "--from-stack", "staging", "--replace")
    assert production.config["green"]["replicas"] == 2


def test_refuses_pods_that_run_different_images(tool, promoted):
    promoted["staging"].cluster.image_ids["web-green-1"] = f"{REPOSITORY}@sha256:{'cd' * 32}"
    before = unchanged(promoted["production"])
    result = tool("deploy", "--from-stack", "staging", expect=2)
    assert "stack staging's prod (green)'s ready pods do not all run the same image" in result["error"]
    assert "web-green-1" in result["error"] and "Fix: wait until its rollout has finished" in result["error"]
    assert unchanged(promoted["production"]) == before


def test_refuses_an_image_the_node_knows_by_its_local_id_only(tool, promoted):
    for pod in ("web-green-0", "web-green-1"):
        promoted["staging"].cluster.image_ids[pod] = "sha256:" + "ef" * 32
    result = tool("deploy", "--from-stack", "staging", expect=2)
    assert "not a registry digest (name@sha256:...)" in result["error"]


def test_refuses_a_source_whose_prod_drifted(tool, promoted):
    staging = promoted["staging"]
    staging.cluster.deployments["web-green"]["spec"]["replicas"] = 3  # scaled by hand
    before = unchanged(promoted["production"])
    result = tool("deploy", "--from-stack", "staging", expect=2)
    assert "stack staging's prod (green) is not what its stack deployed" in result["error"]
    assert "is scaled to 3 replicas, the stack deployed 2" in result["error"]
    assert "Fix: bluegreen repair --stack staging" in result["error"]
    assert unchanged(promoted["production"]) == before


def test_refuses_a_source_with_a_replica_not_ready(tool, promoted):
    promoted["staging"].cluster.unready_pods.add("web-green-1")
    before = unchanged(promoted["production"])
    result = tool("deploy", "--from-stack", "staging", expect=2)
    assert "stack staging's prod (green) has 1/2 replicas ready (not ready: web-green-1)" in result["error"]
    assert "Fix: wait until every replica is ready" in result["error"]
    assert unchanged(promoted["production"]) == before


def test_min_age_refuses_a_recent_promotion_and_lets_an_older_one_through(tool, promoted):
    staging, production = promoted["staging"], promoted["production"]
    before = unchanged(production)
    result = tool("deploy", "--from-stack", "staging", "--min-age", "30m", expect=2)
    assert "stack staging's prod (green) was promoted 0s ago" in result["error"] or \
        "stack staging's prod (green) was promoted 1s ago" in result["error"]
    assert "from its pulumi stack history); --min-age is 30m" in result["error"]
    assert "Fix: let it serve 29m" in result["error"] or "Fix: let it serve 30m" in result["error"]
    assert unchanged(production) == before
    # The promotion is the update that flipped productionSlot, not the deploy before it or the
    # updates after it that kept green.
    staging.times[-1] -= datetime.timedelta(minutes=31)
    tool("deploy", "--from-stack", "staging", "--min-age", "30m")
    assert production.config["green"]["enabled"] is True


def test_min_age_counts_from_the_flip_not_from_later_updates(tool, promoted):
    staging = promoted["staging"]
    flip = staging.times[-1] - datetime.timedelta(hours=3)
    staging.times[-1] = flip
    tool("retire", "--keep-replicas", "1", stack="staging")  # a later update, prod stays green
    result = tool("deploy", "--from-stack", "staging", "--min-age", "2h")
    assert result["source"]["promoted"] == flip.isoformat(timespec="seconds")


@pytest.mark.parametrize("value", ["soon", "30", "-5m", "1.5h", "30 minutes", "2w", ""])
def test_a_bad_min_age_is_refused_naming_the_flag_the_value_and_what_is_allowed(tool, promoted, value):
    before = unchanged(promoted["production"])
    result = tool("deploy", "--from-stack", "staging", f"--min-age={value}", expect=2)
    assert f"argument --min-age: is {value!r}; allowed: 0, or a whole number with a unit s, m, h or d" \
        in result["error"]
    assert unchanged(promoted["production"]) == before


@pytest.mark.parametrize("value,seconds", [("0", 0), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400)])
def test_min_age_values(value, seconds):
    assert carry.duration(value).seconds == seconds


def test_refuses_the_image_this_stacks_prod_already_runs(tool, promoted):
    tool("deploy", "--from-stack", "staging")
    tool("promote")  # production's prod is now staging's digest
    before = unchanged(promoted["production"])
    result = tool("deploy", "--from-stack", "staging", expect=2)
    assert f"stack production's prod (green) already runs {image_id(V2)}, what staging's prod runs" \
        in result["error"]
    assert unchanged(promoted["production"]) == before


def test_refuses_a_source_that_is_the_target(tool, promoted):
    result = tool("deploy", "--from-stack", "production", expect=2)
    assert "--from-stack is 'production', the stack this command deploys to" in result["error"]


def test_refuses_a_source_that_does_not_exist_naming_the_stacks(tool, promoted):
    result = tool("deploy", "--from-stack", "qa", expect=2)
    assert "--from-stack 'qa': stack 'qa' does not exist" in result["error"]
    assert "The stacks of this project: production, staging" in result["error"]


@pytest.mark.parametrize("argv,expected", [
    (["deploy", V2, "--from-stack", "staging"], "deploy takes IMAGE or --from-stack SOURCE, not both"),
    (["deploy"], "deploy needs the image: bluegreen deploy IMAGE, or bluegreen deploy --from-stack SOURCE"),
    (["deploy", V2, "--min-age", "1h"], "--min-age is '1h', but it applies only with --from-stack SOURCE"),
    (["deploy", V2, "--from-kubeconfig", "/k"], "--from-kubeconfig is '/k', but it applies only with --from-stack"),
])
def test_a_combination_of_arguments_that_does_not_go_together_is_refused(tool, stacks, argv, expected):
    before = unchanged(stacks["production"])
    result = tool(*argv, expect=2)
    assert expected in result["error"] and result["refused"] is True
    assert unchanged(stacks["production"]) == before


def test_refuses_a_source_that_never_deployed(tool, stacks):
    stacks["staging"].deployed = None
    for kept in (stacks["staging"].updates, stacks["staging"].messages, stacks["staging"].times):
        kept.clear()
    result = tool("deploy", "--from-stack", "staging", expect=2)
    assert "stack staging has nothing deployed to carry" in result["error"]


# --- the pure decisions ----------------------------------------------------------------------------

def entry(slot, minute, result="succeeded", kind="update"):
    return {"kind": kind, "result": result, "productionSlot": slot, "message": f"m{minute}",
            "started": f"2026-12-01 10:{minute:02d}:00"}


def test_promotion_is_the_oldest_of_the_newest_run_on_the_slot():
    history = [entry("green", 50), entry("green", 40, result="failed"), entry("blue", 35, result="failed"),
               entry("green", 30), entry("blue", 20), entry("green", 10)]
    found = carry.promotion(history, "green", complete=False)
    assert (found.started.minute, found.message, found.exact) == (30, "m30", True)


def test_promotion_of_a_slot_prod_has_served_since_the_first_update():
    history = [entry("blue", 20), entry(None, 10)]  # no productionSlot in the config: its default, blue
    assert carry.promotion(history, "blue", complete=True).started.minute == 10
    assert carry.promotion(history, "blue", complete=False).exact is False  # the history read is cut off
    assert carry.promotion(history, "green", complete=True) is None


def test_running_image_reads_the_app_container_of_ready_pods():
    pods = [{"metadata": {"name": f"p{i}"}, "status": {"containerStatuses": [
        {"name": "sidecar", "image": "proxy:1", "imageID": f"proxy@sha256:{'0' * 64}"},
        {"name": "app", "image": "r.io/web:2.0.0", "imageID": f"docker-pullable://r.io/web@sha256:{'1' * 64}"}]}}
        for i in range(2)]
    image = carry.running_image(pods, "prod")
    assert (image.repository, image.digest, image.tag, image.pods) == ("r.io/web", f"sha256:{'1' * 64}", "2.0.0", 2)
    assert image.reference == f"r.io/web:2.0.0@sha256:{'1' * 64}"
    pods[0]["status"]["containerStatuses"][1]["image"] = pods[1]["status"]["containerStatuses"][1]["image"] = \
        "other.io/web:2.0.0"  # a tag of another repository says nothing about this one
    assert carry.running_image(pods, "prod").reference == f"r.io/web@sha256:{'1' * 64}"


def test_running_image_refuses_no_pods():
    with pytest.raises(Refused, match="prod has no ready pods"):
        carry.running_image([], "prod")


def test_check_arguments_takes_image_or_source():
    args = argparse.Namespace(image=V2, from_stack=None, min_age=None, from_kubeconfig=None)
    carry.check_arguments(args)
    carry.check_arguments(argparse.Namespace(image=None, from_stack="staging", min_age=carry.duration("0"),
                                             from_kubeconfig="/k"))


def test_the_source_is_read_with_from_kubeconfig_and_the_target_with_its_own(tool, promoted, monkeypatch):
    from bluegreen.release import session

    cluster, opened = session.KubeClient(), []
    monkeypatch.setattr(session, "KubeClient", lambda kubeconfig=None: opened.append(kubeconfig) or cluster)
    tool("deploy", "--from-stack", "staging", "--kubeconfig", "/target", "--from-kubeconfig", "/source")
    assert opened == ["/target", "/source"]
    tool("deploy", "--from-stack", "staging", "--replace", "--kubeconfig", "/target")
    assert opened[2:] == ["/target", "/target"]  # by default, SOURCE's cluster is read like the target's
