"""A release command killed at each phase (its process gone, its journal entry left): `status` shows
the slot that serves, names the command and what it left, and `recover` finishes it or puts it back.
Over the in-memory stack and cluster of fake_world.py; the e2e tier kills the real command."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict

import pytest

from bluegreen.release.journal import Entry, Journal
from tests.unit.conftest import prod_slot
from tests.unit.fake_world import V2, V3


def killed(world, command: str, phase: str, changes: dict) -> None:
    """Leave the journal entry a command killed in `phase` leaves: its process is gone."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    journal = Journal(world.project_dir, world.name, "web")
    entry = Entry(command, world.name, "web", changes, phase=phase, pid=gone.pid, process_start="1")
    os.makedirs(os.path.dirname(journal.path), exist_ok=True)
    with open(journal.path, "w") as f:
        json.dump(asdict(entry), f)


def test_a_promote_killed_after_its_update_shows_the_slot_that_serves_and_recover_records_it(tool, world):
    tool("deploy", V2)
    world.up({"productionSlot": "green"}, record=False)  # the flip went through; then the process died
    killed(world, "promote", "verify", {"productionSlot": "green"})
    status = tool("status", expect=3)
    state = status["state"]
    assert (state["productionSlot"], state["configProductionSlot"]) == ("green", "blue")
    assert state["slots"]["green"]["role"] == "prod"
    assert "`bluegreen promote`" in status["error"] and "interrupted during its verify phase" in status["error"]
    assert "Fix: bluegreen recover" in status["error"]
    refused = tool("rollback", expect=2)  # nothing builds on a half-done command
    assert "bluegreen recover" in refused["error"]
    result = tool("recover")
    assert any(a.startswith("finished the interrupted promote") for a in result["actions"])
    assert world.config["productionSlot"] == "green" and prod_slot(world) == "green"
    assert tool("status")["ok"] is True


@pytest.mark.parametrize("phase", ["checks", "preview"])
def test_a_command_killed_before_its_update_changed_nothing(tool, world, phase):
    tool("deploy", V2)
    before = (json.dumps(world.config), len(world.updates))
    killed(world, "promote", phase, {"productionSlot": "green"})
    status = tool("status", expect=3)
    assert status["state"]["productionSlot"] == "blue" and "it had changed nothing" in status["error"]
    assert (json.dumps(world.config), len(world.updates)) == before
    tool("recover")
    assert (json.dumps(world.config), len(world.updates)) == before
    assert tool("status")["ok"] is True


def test_a_deploy_killed_during_an_update_that_did_not_get_through_is_put_back(tool, world):
    killed(world, "deploy", "update", {"green.enabled": True, "green.image": V2, "green.replicas": 2})
    status = tool("status", expect=3)
    assert "may have been cut off" in status["error"]
    result = tool("recover")
    assert any(a == "put back the interrupted deploy" for a in result["actions"])
    assert world.config["green"]["enabled"] is False and "web-green" not in world.cluster.deployments


def test_a_promote_killed_during_its_automatic_rollback_is_put_back(tool, world):
    tool("deploy", V2)
    world.up({"productionSlot": "green"}, record=False)
    killed(world, "promote", "rollback", {"productionSlot": "green"})
    tool("recover")
    assert world.config["productionSlot"] == "blue" and prod_slot(world) == "blue"


def test_every_update_carries_the_commands_message_into_the_history(tool, world):
    tool("deploy", V2)
    tool("promote")
    history = tool("status")["state"]["history"]
    assert history[0]["message"].startswith("bluegreen promote: green (registry.example.com/shop/web:2.0.0) to prod; "
                                            "was blue")
    assert history[1]["message"].startswith("bluegreen deploy: registry.example.com/shop/web:2.0.0 into green")


def test_a_rollback_killed_while_helm_applied_it_shows_prod_serving_the_slot_it_moved_to(tool, world):
    """Killed after Helm patched the prod Service, before the state recorded the update: prod
    serves the slot it selects, so status says what is half-done (exit 3), not that prod is down."""
    tool("deploy", V2)
    tool("promote")
    world.cluster.services["web-prod"]["spec"]["selector"]["slot"] = "blue"  # Helm's patch, then the kill
    killed(world, "rollback", "update", {"productionSlot": "blue"})
    status = tool("status", expect=3)
    assert status["state"]["productionSlot"] == "blue" and status["state"]["serving"] is True
    assert "interrupted during its update phase" in status["error"]
    tool("recover")
    assert tool("status")["ok"] is True and prod_slot(world) == world.config["productionSlot"]


def test_a_promote_whose_flip_the_api_server_outage_cut_off_rolls_back_by_itself(tool, world):
    """The flip's Helm upgrade applied its objects, then lost the API server: its record stays
    pending-upgrade, and Helm refuses any upgrade until it is gone. The automatic rollback waits for
    the API server, removes the pending record and rolls Helm back (as recover does), then updates."""
    tool("deploy", V2)
    world.up_cut_off = 2  # the API server answers /readyz after two refusals
    result = tool("promote", expect=1)
    assert "rolled back, prod serves blue" in result["error"], result["error"]
    assert prod_slot(world) == "blue" and world.config["productionSlot"] == "blue"
    assert world.cluster.readyz_asked == 3
    actions = result["actions"]
    assert any(a.startswith("waited") and "for the API server" in a for a in actions), actions
    assert "removed pending v3" in actions and "rolled back to v2" in actions, actions
    assert actions[-1] == "pulumi up: prod back to blue", actions
    assert world.cluster.records[-1]["status"] == "deployed"
    assert tool("status")["ok"] is True  # nothing left for a recover or a pulumi up


def test_a_promote_whose_rollback_finds_no_api_server_says_so_and_recover_finishes_it(tool, world, monkeypatch):
    from bluegreen.release.commands import recover

    monkeypatch.setattr(recover, "API_READY_SECONDS", 1)
    tool("deploy", V2)
    world.up_cut_off = 10**6  # down for as long as the promote waits
    result = tool("promote", expect=1)
    assert "ROLLBACK NOT RUN: the API server is not ready after" in result["error"], result["error"]
    assert "bluegreen recover (puts prod back to blue" in result["error"]
    assert any("for the API server: not ready" in a for a in result["actions"]), result["actions"]
    world.cluster.unready = 0  # the API server is back
    status = tool("status", expect=1)  # prod selects green, the stack deployed blue, v3 pending
    fixes = {d["fix"] for d in status["state"]["drift"]}
    assert fixes and all(f.startswith("bluegreen recover") for f in fixes), fixes
    recovered = tool("recover")
    assert "removed pending v3" in recovered["actions"], recovered["actions"]
    assert prod_slot(world) == "blue" and tool("status")["ok"] is True


def state_behind(world) -> None:
    """A `pulumi up` of productionSlot=green whose Helm upgrade got into the cluster, but whose state
    was never saved (the state backend failed): config green, cluster green, state blue."""
    from bluegreen.config import parse
    from bluegreen.values import chart_values

    world.config["productionSlot"] = "green"
    values = chart_values(parse(world.config), {s: world.deployed[s].get("secretName", "") for s in ("blue", "green")})
    world.cluster.apply("shop", "web", values)


def test_recover_deploys_the_stack_config_when_the_cluster_holds_it_and_the_state_does_not(tool, world):
    tool("deploy", V2)
    state_behind(world)
    status = tool("status", expect=1)
    assert status["state"]["pending"] == ["productionSlot"]
    fixes = [d["fix"] for d in status["state"]["drift"]]
    assert fixes and all(f.startswith("bluegreen recover") and "pulumi up" in f for f in fixes), fixes
    result = tool("recover")
    assert "pulumi up: deployed the stack config (productionSlot)" in result["actions"], result["actions"]
    assert world.deployed["productionSlot"] == "green" and prod_slot(world) == "green"
    after = tool("status")
    assert after["ok"] is True and after["state"]["pending"] == []


def test_recover_does_not_deploy_config_edits_the_cluster_never_had(tool, world):
    tool("deploy", V2)
    world.config["green"]["image"] = V3  # set, never deployed
    updates = len(world.updates)
    result = tool("recover", expect=1)
    assert "changes the cluster never had, for: green" in result["error"], result["error"]
    assert "pulumi up" in result["error"]
    assert len(world.updates) == updates and world.deployed["green"]["image"] == V2


def test_recover_deploys_config_edits_that_change_no_object(tool, world):
    """A retired slot's image edited in the config: the update changes no object, only the state."""
    world.config["green"]["image"] = V3  # green is retired: nothing of it is rendered
    result = tool("recover")
    assert "pulumi up: deployed the stack config (green)" in result["actions"], result["actions"]
    assert world.deployed["green"]["image"] == V3 and "web-green" not in world.cluster.deployments


def test_a_pulumi_failure_in_recover_is_named_with_what_was_done(tool, world, monkeypatch):
    from pulumi import automation as auto

    def broken():
        raise auto.CommandError(auto.CommandResult("", "error: the state backend is gone", 255))

    world.clear_pending_operations = broken
    result = tool("recover", expect=1)
    assert result["error"].startswith("clearing the state's pending operations failed"), result["error"]
    assert "the state backend is gone" in result["error"]
    assert result["actions"][0] == "cancelled any stale update lock"


def test_recover_says_what_it_did_in_text_too(world, capsys):
    from bluegreen.release import cli

    tool_code = cli.main(["deploy", V2, "--stack", "dev"])
    world.cluster.apply("shop", "web", world.deployed, "pending-upgrade")
    capsys.readouterr()
    assert tool_code == 0 and cli.main(["recover", "--stack", "dev"]) == 0
    out = capsys.readouterr().out
    assert "removed pending v3" in out and "rolled back to v2" in out, out


def test_a_rollback_killed_before_the_components_outputs_gets_them_written_by_recover(tool, world):
    """Killed after the Release's step was saved, before the component's outputs: recover records
    the slot and runs the update that brings the outputs up to date (the cluster is unchanged)."""
    tool("deploy", V2)
    tool("promote")
    world.up({"productionSlot": "blue"}, record=False)
    world.stale_output = "green"  # the state's outputs still name the old slot
    killed(world, "rollback", "update", {"productionSlot": "blue"})
    result = tool("recover")
    assert "pulumi up: the stack's outputs brought up to date" in result["actions"]
    state = tool("status")["state"]
    assert state["configProductionSlot"] == state["deployedProductionSlot"] == state["productionSlot"] == "blue"
