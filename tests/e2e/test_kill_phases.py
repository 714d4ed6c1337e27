"""Tier 4: a release command killed with SIGKILL at each phase, on the real node, under counted load.

Each case starts `bluegreen COMMAND` as a user would, waits until its journal says it reached the
phase, and kills its whole process group (the CLI, the engine, the provider: as a power cut would).
Then `bluegreen status` must show the slot that really serves and name the interrupted command,
`bluegreen recover` must bring everything back, and afterwards the stack config, the state and the
cluster agree. No request to the prod host may fail at any point. The figures and what status said
go into the e2e report (the README's "Faults and what happens" table).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time

import pytest
from pulumi import automation as auto

from bluegreen.release.journal import Journal
from tests.e2e import conftest as e2e
from tests.e2e.conftest import INGRESS_CLASS, REPORT, V1, V2, V3, counted, fresh_namespace, wait_until

pytestmark = pytest.mark.e2e

STACK, NS = "e2e-kill", "bg-e2e-kill"
PROD_HOST, STAGE_HOST = "shop.kill.example.com", "stage.shop.kill.example.com"
WEB_PODS = {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web"}


@pytest.fixture(scope="module")
def tool(project_dir, pulumi_env, kube, ingress):
    """Both slots deployed (blue V1 serves, green V2 staged): every case can flip one way or the other."""
    fresh_namespace(kube, NS)
    stack = auto.create_or_select_stack(STACK, work_dir=str(project_dir))
    for key, value in {"namespace": NS, "prodHost": PROD_HOST, "stageHost": STAGE_HOST, "ingressClass": INGRESS_CLASS,
                       "blue.enabled": "true", "blue.image": V1, "blue.replicas": "2", "green.enabled": "true",
                       "green.image": V2, "green.replicas": "2", "helmTimeoutSeconds": "60"}.items():
        stack.set_config(key, auto.ConfigValue(value), path=True)
    stack.up(on_output=print, color="never")
    run = e2e.ReleaseTool(STACK, project_dir, {**pulumi_env, "BLUEGREEN_INGRESS": ingress})
    run.ingress = ingress
    yield run
    stack.destroy(on_output=print, color="never")
    stack.workspace.remove_stack(STACK)


def phase_of(journal: Journal) -> str | None:
    try:
        with open(journal.path) as f:
            return json.load(f)["phase"]
    except (OSError, ValueError, KeyError):
        return None


def kill_at(tool, args: list[str], phase: str, after: float, journal: Journal | None = None) -> None:
    """Start `bluegreen ARGS`, and SIGKILL its process group `after` seconds into `phase` (as its
    `journal` says: by default, this module's app's)."""
    journal = journal or Journal(tool.project_dir, STACK, "web")
    command = subprocess.Popen(tool.command(*args), env=tool.env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(f"bluegreen {args[0]} reaches its {phase} phase",
                   lambda: phase_of(journal) == phase or command.poll() is not None, timeout=180, interval=0.02)
        assert command.poll() is None, f"bluegreen {args[0]} ended before its {phase} phase: {command.stderr.read()}"
        time.sleep(after)
        assert phase_of(journal) == phase, f"{phase} was over after {after} s: {phase_of(journal)}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(command.pid, signal.SIGKILL)
        command.wait()
        _kill_strays(command.pid)


def _kill_strays(session_id: int) -> None:
    """Plugins the engine started in process groups of their own, in the killed command's session."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{entry}/stat") as stat:
            if int(stat.read().rsplit(")", 1)[1].split()[3]) == session_id:
                os.kill(int(entry), signal.SIGKILL)


def prod_slot(kube) -> str:
    return kube.service(NS, "web-prod")["spec"]["selector"]["slot"]


# (command and arguments, the phase it is killed in, seconds into it). The order keeps the stack
# ready for the next case: both slots deployed. Checks against prod take 3 s (`sleep 3`), so the
# verify phase of a promote lasts long enough to be killed in; a rollback's or a deploy's lasts a
# tenth of a second (prod's Service and Endpoints read once), too short to aim a kill at.
SLOW_CHECK = ["--check-cmd", "sleep 3"]
CASES = [
    (["rollback"], "checks", 0.0),
    (["promote"], "preview", 0.3),
    (["promote"], "update", 0.8),
    (["promote", *SLOW_CHECK], "verify", 1.0),
    (["rollback"], "update", 0.8),
    (["deploy", V3, "--replace"], "update", 1.5),
    (["deploy", V3, "--replace"], "checks", 0.0),
    (["retire", "--keep-replicas", "1"], "update", 0.8),
]


@pytest.mark.parametrize("args,phase,after", CASES, ids=[f"{' '.join(c[0][:1])}-{c[1]}" for c in CASES])
def test_a_command_killed_at_a_phase_is_named_by_status_and_recover_brings_it_back(tool, kube, args, phase, after):
    name = f"kill `bluegreen {args[0]}` in its {phase} phase"
    with counted(name, tool.ingress, PROD_HOST):
        before = prod_slot(kube)
        kill_at(tool, args, phase, after)
        serving_now = prod_slot(kube)
        code, status = tool.run("status")
        assert code == 3, status  # prod serves; a command is half-done
        assert status["state"]["productionSlot"] == serving_now  # the slot that serves, whatever the config says
        assert f"`bluegreen {args[0]}`" in status["error"] and f"during its {phase} phase" in status["error"]
        assert "Fix: bluegreen recover" in status["error"]
        refused = tool("promote", expect=2)  # nothing builds on a half-done command
        assert "bluegreen recover" in refused["error"]
        recovered = tool("recover")
    after_recover = tool("status")["state"]
    slot = after_recover["productionSlot"]
    assert after_recover["configProductionSlot"] == after_recover["deployedProductionSlot"] == slot
    assert wait_until("prod serves the recorded slot", lambda: e2e.serving(kube, NS, "web-prod", WEB_PODS, slot),
                      timeout=60)
    REPORT[name].update(prod_before=before, prod_after_kill=serving_now, status_exit=code,
                        status_says=status["error"].splitlines()[1][:300], recover_did=recovered["actions"],
                        prod_after_recover=slot)
    _restore(tool, kube)


def _restore(tool, kube) -> None:
    """Both slots deployed at 2 replicas again, whatever the case left (a retire scaled one down)."""
    state = tool("status")["state"]
    stage = state["stageSlot"]
    if state["slots"][stage]["desired"] != 2:
        tool("deploy", state["slots"][stage]["image"] or V2, "--replace", "--replicas", "2")


def test_a_release_command_starts_no_language_host_and_no_second_python(tool, kube):
    """The program runs inside the command's own process: a flip starts one Python interpreter (the
    command itself) and no language host. Counted from every execve of the command's process tree."""
    from bench import counts
    from bench.flips import Commands

    if not counts.available():
        pytest.fail("strace is not installed (apt-get install strace): the process counts cannot be taken")
    with counted("bluegreen promote (traced: processes counted)", tool.ingress, PROD_HOST):
        started = counts.count(Commands([tool.command("promote")], tool.env, tool.project_dir))
    REPORT["bluegreen promote (traced: processes counted)"].update(started)
    assert started["python_processes"] == 1 and started["python_programs"] == ["python"], started
    assert started["language_host_processes"] == 0, started
    assert started["pulumi_processes"] >= 2, started  # the preview and the update, at least: the count is real


def test_pulumi_preview_finds_nothing_the_tool_deployed_differently(tool):
    """The tool runs the program in its own process; `pulumi preview`, with the language host,
    must find the stack exactly as the tool left it (the same chart path, the same values)."""
    stack = auto.select_stack(STACK, work_dir=tool.project_dir)
    result = stack.preview(expect_no_changes=True, on_output=print, color="never")
    assert set(result.change_summary) == {"same"}, result.change_summary
