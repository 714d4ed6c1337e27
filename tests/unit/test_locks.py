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



def test_the_lock_in_a_file_backend_is_read_where_pulumi_writes_it(tmp_path):
    lock_dir = tmp_path / "state" / ".pulumi" / "locks" / "organization" / "bluegreen" / "dev"
    lock_dir.mkdir(parents=True)
    (lock_dir / "9f1c.json").write_text('{"pid": 4242, "username": "ci", "hostname": "build-7", '
                                        '"timestamp": "2026-11-27T10:00:00Z"}')
    (tmp_path / "state" / ".pulumi" / "locks" / "organization" / "bluegreen" / "prod").mkdir()
    found = locks.backend_locks(f"file://{tmp_path}/state", "bluegreen", "dev")
    assert [(lock["pid"], lock["hostname"]) for lock in found] == [(4242, "build-7")]
    assert locks.backend_locks(f"file://{tmp_path}/state", "bluegreen", "prod") == []
    assert locks.backend_locks("https://api.pulumi.com", "bluegreen", "dev") is None  # not readable here
    assert "pid 4242 on build-7 (another machine)" in str(locks.held_by(found, "dev"))
