"""The release tool's orchestration and failure paths over a stack and a cluster in memory
(tests/unit/fake_world.py): what each command changes, what it refuses, what it puts back, and its
exit code and JSON. The e2e tier runs the same commands for real; these keep the logic checked
when it cannot run."""

from __future__ import annotations

import json
import os
import time

from bluegreen.release import helm, launch, locks
from bluegreen.release.commands import promote
from bluegreen.release.stacks import Change
from tests.unit.conftest import prod_slot
from tests.unit.fake_world import V2, V3, fake_manifest

LOCK_TEXT = ("error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or "
             "delete the lock file with `pulumi cancel`.\n"
             "  s3://state/.pulumi/locks/organization/bluegreen/dev/1f2e.json: created by ci@build-7 (pid 4242) "
             "at 2026-11-27T10:00:00Z")


def test_deploy_puts_the_image_into_the_idle_slot_and_leaves_prod(tool, world):
    result = tool("deploy", V2)
    assert result["slot"] == "green" and result["ok"] is True
    assert world.config["green"] == {"enabled": True, "image": V2, "replicas": 2}
    assert prod_slot(world) == "blue" and "web-green" in world.cluster.deployments
    assert result["prodWatch"]["slots_seen"] == ["blue"] and result["prodWatch"]["empty"] == 0


def test_deploy_refuses_a_second_staged_release_and_changes_nothing(tool, world):
    tool("deploy", V2)
    before = (json.dumps(world.config), len(world.updates))
    result = tool("deploy", V3, expect=2)
    assert result["refused"] is True and "a release is already staged: green runs" in result["error"]
    assert (json.dumps(world.config), len(world.updates)) == before


def test_a_failed_deploy_puts_the_config_back(tool, world):
    world.up_fails = "Helm release failed, and has been rolled back due to atomic being set"
    result = tool("deploy", V2, expect=1)
    assert "green was not deployed and prod stays on blue" in result["error"]
    assert world.config["green"]["enabled"] is False and world.config["green"]["image"] == ""


def test_promote_flips_prod_and_verifies_it(tool, world):
    tool("deploy", V2)
    result = tool("promote")
    assert world.config["productionSlot"] == "green" and prod_slot(world) == "green"
    assert result["state"]["productionSlot"] == "green"


def test_promote_refuses_when_the_preview_shows_more_than_the_flip(tool, world):
    tool("deploy", V2)
    world.extra_preview_change = Change("urn:ns", "kubernetes:core/v1:Namespace", "replace", ["metadata"])
    result = tool("promote", expect=2)
    assert "the preview shows more than the flip: kubernetes:core/v1:Namespace replace" in result["error"]
    assert world.config["productionSlot"] == "blue" and prod_slot(world) == "blue"
    # The flip's update had started while the preview ran; the refusal ended it before its program.
    assert len(world.refused_ahead) == 1 and world.refused_ahead[0].startswith("bluegreen promote: green")
    assert len(world.updates) == 2  # the fixture's up and the deploy: no flip


def test_a_failed_stage_check_ends_the_update_started_ahead_and_nothing_changes(tool, world):
    tool("deploy", V2)
    updates = len(world.updates)
    result = tool("promote", "--check-cmd", "exit 3", expect=2)
    assert "smoke checks against stage failed" in result["error"]
    assert len(world.refused_ahead) == 1 and world.refused_ahead[0].startswith("bluegreen promote: green")
    assert len(world.updates) == updates and world.config["productionSlot"] == "blue" and prod_slot(world) == "blue"


def test_a_promotion_that_fails_verification_is_rolled_back(tool, world, monkeypatch):
    tool("deploy", V2)

    def green_pods_vanish(stack):
        if stack.deployed["productionSlot"] == "green":
            stack.cluster.pod_ips["web-green"] = []

    world.after_up = green_pods_vanish
    verify = promote.verify_serving  # waits up to 30 s for endpoints to settle; here they never will
    monkeypatch.setattr(promote, "verify_serving", lambda kube, names, role, slot: verify(kube, names, role, slot, 0.5))
    result = tool("promote", expect=1)
    assert "promotion of green failed" in result["error"] and "rolled back, prod serves blue" in result["error"]
    assert world.config["productionSlot"] == "blue" and prod_slot(world) == "blue"


def test_rollback_and_retire(tool, world):
    tool("deploy", V2)
    tool("promote")
    tool("rollback")
    assert prod_slot(world) == "blue"
    tool("promote")
    result = tool("retire")
    assert result["slot"] == "blue" and world.config["blue"]["enabled"] is False
    assert "web-blue" not in world.cluster.deployments
    refused = tool("rollback", expect=2)
    assert "the previous slot blue was retired" in refused["error"]


def test_a_lock_in_the_state_backend_is_a_refusal_before_anything_changes(tool, world):
    world.backend_locks = [{"url": "s3://state/.pulumi/locks/organization/bluegreen/dev/1f2e.json",
                            "username": "ci", "hostname": "build-7", "pid": 4242, "timestamp": "2026-11-27T10:00Z"}]
    result = tool("promote", expect=2)
    assert result["refused"] is True and "stack dev is locked by another update" in result["error"]
    assert "1f2e.json, taken by ci@build-7 at 2026-11-27T10:00Z: pid 4242 on build-7" in result["error"]
    assert world.recorded == [] and len(world.updates) == 1  # not even the config was touched


def test_a_lock_met_at_up_is_a_refusal_and_the_config_was_never_changed(tool, world):
    world.backend_locks = None  # a backend the tool cannot read: Pulumi's own check at `up` says it
    world.locked_by = LOCK_TEXT
    result = tool("deploy", V2, expect=2)
    assert result["refused"] is True
    assert "stack dev is locked by another update" in result["error"]
    assert "s3://state/.pulumi/locks/organization/bluegreen/dev/1f2e.json, taken by ci@build-7" in result["error"]
    assert "pid 4242 on build-7 (another machine)" in result["error"]
    assert world.config["green"] == {"enabled": False, "image": "", "replicas": 2}  # put back
    assert len(world.updates) == 1 and "web-green" not in world.cluster.deployments


def test_a_command_running_on_this_machine_holds_the_stack(tool, world):
    with locks.command_lock(world.project_dir, "dev", "bluegreen promote --stack dev"):
        result = tool("deploy", V2, expect=2)
    assert "stack dev is busy: bluegreen promote --stack dev (pid " in result["error"]
    assert f"(pid {os.getpid()}," in result["error"]
    assert world.config["green"]["enabled"] is False and len(world.updates) == 1
    assert tool("status")["ok"] is True  # reading is not blocked
    tool("deploy", V2)  # and once the holder is done, the stack is free


def test_a_command_reads_the_state_again_when_another_let_go_of_the_stack_after_it_began(tool, world,
                                                                                        monkeypatch):
    """A command reads the state from its start, before this machine's lock on the stack is free: a
    command that let go of it meanwhile may have changed the state with its last update."""
    tool("deploy", V2)
    tool("status")
    assert world.reads_again == 0  # the lock was let go of before these began
    monkeypatch.setattr(launch, "STARTED", time.time() - 60)  # as if this one began a minute ago, at launch
    tool("promote")
    assert world.reads_again == 1


def test_a_command_that_only_reads_reads_the_history_ahead_and_one_that_changes_does_not(tool, world):
    """Every command reports the last updates; one that changes the stack reads them after its update
    (stacks.StackSession._read_ahead), so only a read-only one reads them from the start."""
    tool("deploy", V2)
    tool("status")
    tool("diff")
    assert world.history_ahead == [False, True, True]


def test_status_says_when_prod_does_not_serve(tool, world):
    world.cluster.pod_ips["web-blue"] = []
    result = tool("status", expect=1)
    assert "prod does not serve blue" in result["error"]


def test_promote_first_brings_a_small_stage_to_prods_size(tool, world):
    tool("deploy", V2, "--replicas", "1")
    result = tool("promote")
    assert world.updates[-2]["green"]["replicas"] == 2 and world.updates[-2]["productionSlot"] == "blue"
    assert world.messages[-2].startswith("bluegreen promote: green (registry.example.com/shop/web:2.0.0) scaled "
                                         "from 1 to 2 replicas")
    assert world.updates[-1]["productionSlot"] == "green" and prod_slot(world) == "green"
    assert len(world.cluster.pod_ips["web-green"]) == 2 and result["state"]["slots"]["green"]["desired"] == 2


def test_promote_keep_stage_size_flips_to_the_stage_as_it_is(tool, world):
    tool("deploy", V2, "--replicas", "1")
    tool("promote", "--keep-stage-size")
    assert world.config["green"]["replicas"] == 1 and prod_slot(world) == "green"


def test_each_step_says_what_it_changes_object_by_object(tool, world):
    deployed = tool("deploy", V2)
    assert [(c["action"], c["kind"], c["name"]) for c in deployed["diff"]["changes"]] == [
        ("added", "Deployment", "web-green")]
    promoted = tool("promote")
    changed = {(c["kind"], c["name"]): [f["path"] for f in c["fields"]] for c in promoted["diff"]["changes"]}
    assert changed == {("Service", "web-prod"): ["spec.selector.slot"],
                       ("Service", "web-stage"): ["spec.selector.slot"]}
    assert tool("diff")["diff"]["summary"] == {"changed": 0, "added": 0, "removed": 0}


def test_promote_refuses_a_chart_edit_in_the_checkout_and_names_the_objects(tool, world, monkeypatch):
    tool("deploy", V2)
    monkeypatch.setattr(helm, "template", lambda chart, release, namespace, values, kube_version=None:
                        fake_manifest(values, probe_path="/ready"))
    result = tool("promote", expect=2)
    assert "more objects than the flip" in result["error"]
    assert "Deployment shop/web-blue changes spec.template.spec.containers[name=app].readinessProbe" \
           in result["error"], result["error"]
    assert prod_slot(world) == "blue" and world.config["productionSlot"] == "blue"
    shown = tool("diff")["diff"]["changes"]
    assert {(c["kind"], c["name"]) for c in shown} == {("Deployment", "web-blue"), ("Deployment", "web-green")}


def test_a_kubeconfig_that_cannot_be_used_is_a_refusal(world, monkeypatch, tmp_path, tool):
    """Found before anything changes: exit 2, the key named, the stack config untouched."""
    from bluegreen.release import session
    from bluegreen.release.kube import KubeClient

    monkeypatch.setattr(session, "KubeClient", KubeClient)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443", "proxy-url": "socks5://p:1080"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    before = json.dumps(world.config)
    result = tool("deploy", V2, "--kubeconfig", str(kubeconfig), expect=2)
    assert result["refused"] is True
    assert result["error"] == ("kubeconfig: cluster 'k': proxy-url is 'socks5://p:1080': SOCKS proxies are not "
                               "supported here; allowed: an http:// or https:// proxy (HTTP CONNECT)")
    assert json.dumps(world.config) == before and world.cluster.services["web-prod"]
