"""Who holds a stack: Pulumi's lock error read back, and the lock of a command on this machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from pulumi import automation as auto

from bluegreen.release import locks
from bluegreen.release.stacks import StackSession


def lock_error(host: str, pid: int) -> str:
    return ("error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or "
            "delete the lock file with `pulumi cancel`.\n"
            f"  file:///state/.pulumi/locks/organization/shop/dev/ab12.json: created by alice@{host} (pid {pid}) "
            "at 2026-11-27T10:00:00Z")


def test_a_lock_held_by_a_release_command_on_this_machine_names_that_command():
    # A bluegreen command whose `pulumi up` holds the lock: the child is what Pulumi records.
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; "
                               "subprocess.run(['sleep', '30'])", "-m", "bluegreen", "deploy", "shop/web:2"])
    try:
        for _ in range(100):
            children = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()
            if children:
                break
            subprocess.run(["sleep", "0.05"])
        error = locks.pulumi_lock_error(lock_error(socket.gethostname(), int(children[0])), "dev")
    finally:
        parent.kill()
        parent.wait()
    assert error is not None
    assert "-m bluegreen deploy shop/web:2" in str(error) and f"(pid {children[0]})" in str(error)


def test_a_lock_whose_process_is_gone_is_called_stale():
    dead = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 100000
    error = locks.pulumi_lock_error(lock_error(socket.gethostname(), dead), "dev")
    assert f"pid {dead}, no longer running (a stale lock)" in str(error)
    assert "`bluegreen recover` clears the lock" in str(error)


def test_other_errors_are_not_locks():
    assert locks.pulumi_lock_error("error: update failed: context deadline exceeded", "dev") is None


def test_the_stack_session_turns_pulumis_lock_error_into_stack_locked():
    session = StackSession.__new__(StackSession)
    session.name = "dev"

    def locked_up(**_):
        raise auto.CommandError(auto.CommandResult(stdout="", stderr=lock_error("elsewhere", 7), code=255))

    with pytest.raises(locks.StackLocked, match="pid 7 on elsewhere"):
        session._run("up", locked_up)

