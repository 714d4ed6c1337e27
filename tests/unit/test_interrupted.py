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
from tests.unit.fake_world import V2


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
