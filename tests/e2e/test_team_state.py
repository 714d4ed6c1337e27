"""Tier 4: a team's setup. The stack state lives in an S3-compatible server (versitygw, started
here on 127.0.0.1 over a temporary directory), and two checkouts of the project ("machines" A and
B, with the same committed stack config) release from it, on the real node.

- The whole release cycle runs from A with the state in S3, requests to prod counted.
- Two release commands at the same time: while A's `deploy` updates the stack, B's is refused by
  Pulumi's lock in the bucket, and a second command in A's checkout by A's own command lock. Each
  refusal names the lock and the command that holds it; neither changes a thing, and A's deploy
  completes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.e2e.conftest import (
    INGRESS_CLASS,
    V1,
    V2,
    V3,
    ReleaseTool,
    counted,
    fetch,
    fresh_namespace,
    version_of,
    wait_until,
)
from tests.e2e.s3 import BUCKET, S3Server

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("vegeta")]  # prod traffic is counted

NS, STACK = "bg-e2e-team", "e2e-team"
PROD_HOST, STAGE_HOST = "shop.team.example.com", "stage.shop.team.example.com"


@pytest.fixture(scope="module")
def s3(tmp_path_factory, pulumi_env):
    """versitygw on 127.0.0.1, its buckets the directories of a temporary directory."""
    data = tmp_path_factory.mktemp("s3")
    with S3Server(data, pulumi_env, data.parent / "versitygw.log") as server:
        yield data, server.backend_env()


class Machine:
    """One checkout of the project, releasing with the shared S3 state."""

    def __init__(self, directory: Path, env: dict, ingress: str):
        self.dir, self.env, self.ingress = directory, env, ingress
        self.stack = auto.create_or_select_stack(
            STACK, work_dir=str(directory), opts=auto.LocalWorkspaceOptions(env_vars=env))

        self.tool = ReleaseTool(STACK, directory, env)
        self.command = self.tool.command

    def config_file(self) -> str:
        return (self.dir / f"Pulumi.{STACK}.yaml").read_text()


def pulumi_up_under(pid: int) -> int | None:
    """The `pulumi ... up` process among the descendants of `pid`."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for child in map(int, children):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:  # exited meanwhile
            continue
        if args[0].endswith(b"pulumi") and b"up" in args:
            return child
        found = pulumi_up_under(child)
        if found:
            return found
    return None


def checkout(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("Pulumi.*.yaml", "__pycache__"))
    return target


@pytest.fixture(scope="module")
def team(s3, project_dir, pulumi_env, kube, ingress, tmp_path_factory):
    data, backend = s3
    env = {**pulumi_env, **backend, "BLUEGREEN_INGRESS": ingress}
    root = tmp_path_factory.mktemp("team")
    a = Machine(checkout(project_dir, root / "a" / "shop"), env, ingress)
    fresh_namespace(kube, NS)
    for key, value in {"namespace": NS, "prodHost": PROD_HOST, "stageHost": STAGE_HOST,
                       "ingressClass": INGRESS_CLASS, "blue.enabled": "true", "blue.image": V1,
                       "blue.replicas": "2", "green.enabled": "false", "helmTimeoutSeconds": "60"}.items():
        a.stack.set_config(key, auto.ConfigValue(value), path=True)
    a.stack.up(on_output=print, color="never")
    a.data = data
    yield a
    a.stack.destroy(on_output=print, color="never")
    a.stack.workspace.remove_stack(STACK)


def test_the_state_is_in_the_bucket(team):
    stacks = list((team.data / BUCKET / ".pulumi" / "stacks").rglob(f"{STACK}.json*"))
    assert stacks, sorted(p.name for p in (team.data / BUCKET).rglob("*"))
    assert fetch(team.ingress, PROD_HOST) == (200, "blue", version_of(V1))


def test_the_release_cycle_with_state_in_s3(team):
    with counted("S3 state: deploy, promote, rollback, promote, retire", team.ingress, PROD_HOST, version_of(V2)):
        assert team.tool("deploy", V2)["slot"] == "green"
        assert team.tool("promote")["state"]["productionSlot"] == "green"
        assert team.tool("rollback")["state"]["productionSlot"] == "blue"
        assert team.tool("promote")["state"]["productionSlot"] == "green"
        assert team.tool("retire")["slot"] == "blue"
    status = team.tool("status")["state"]
    assert status["drift"] == [] and status["history"][0]["productionSlot"] == "green"


def test_a_second_command_is_refused_while_the_first_runs(team, tmp_path, capsys):
    # Machine B: another checkout with the same committed stack config.
    b = Machine(checkout(team.dir, tmp_path / "b" / "shop"), team.env, team.ingress)
    (b.dir / f"Pulumi.{STACK}.yaml").write_text(team.config_file())
    b_config, a_config = b.config_file(), team.config_file()
    locks = team.data / BUCKET / ".pulumi" / "locks"

    first = subprocess.Popen(team.command("deploy", V3), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=team.env)
    try:
        wait_until("A's update holds Pulumi's lock in the bucket",
                   lambda: any(p.suffix == ".json" for p in locks.rglob("*")), timeout=60, interval=0.1)
        # A's update takes seconds; hold its CLI still while the others try, so that they meet it.
        cli = wait_until("A's pulumi up", lambda: pulumi_up_under(first.pid))
        os.kill(cli, signal.SIGSTOP)
        try:
            same_checkout = team.tool("rollback", expect=2)
            capsys.readouterr()
            other_machine = b.tool("deploy", V3, expect=2)
            b_said = capsys.readouterr().err  # what B's command printed
        finally:
            os.kill(cli, signal.SIGCONT)
        assert first.poll() is None, "the first command ended before the second one was tried"
    finally:
        out, err = first.communicate(timeout=300)
    sys.stderr.write(err)

    # On A's checkout: A's own lock, naming the command that holds it.
    assert same_checkout["refused"] is True
    assert f"stack {STACK} is busy: bluegreen deploy {V3} --stack {STACK}" in same_checkout["error"]
    # From B: Pulumi's lock in the bucket, read there (boto3) before anything changed, not left to
    # Pulumi's check at `up`; its holder, and the command behind it.
    assert "could not read the stack's lock" not in b_said and f"==> pulumi up --stack {STACK}" not in b_said, b_said
    assert other_machine["refused"] is True
    error = other_machine["error"]
    assert f"stack {STACK} is locked by another update" in error
    assert f"s3://{BUCKET}" in error and "/.pulumi/locks/" in error
    assert f"-m bluegreen deploy {V3} --stack {STACK}" in error, error
    # Nothing lost: B's config is as it was, A's deploy completed and is what the state holds.
    assert b.config_file() == b_config
    assert first.returncode == 0, err[-3000:]
    assert json.loads(out)["slot"] == "blue"
    assert team.config_file() != a_config  # A's deploy set blue's image
    status = team.tool("status")["state"]
    assert status["slots"]["blue"]["image"] == V3 and status["drift"] == []
    assert not any(p.suffix == ".json" for p in locks.rglob("*"))  # and the lock is gone with it
    wait_until("stage answers from the new blue",
               lambda: fetch(team.ingress, STAGE_HOST) == (200, "blue", version_of(V3)))
