"""The release tool's world in memory (fake_world.py) as fixtures: `world` is the stack, `tool` runs
a command over it and returns its --json result, checking the exit code and that no traceback came."""

from __future__ import annotations

import json

import pytest

from bluegreen.release import cli
from tests.unit.fake_world import FakeCluster, FakeStack, install


@pytest.fixture
def world(monkeypatch, tmp_path):
    stack = FakeStack(FakeCluster())
    stack.up()
    return install(monkeypatch, stack, tmp_path)  # this test's own journal and locks


def cli_runner(capsys):
    """`bluegreen ARGS --stack dev --json` in this process: its JSON, its exit code as expected,
    and no traceback (the `tool` fixtures of the fake worlds)."""
    def run(*args: str, expect: int = 0) -> dict:
        code = cli.main([*args, "--stack", "dev", "--json"])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        assert code == expect, f"exit {code}, expected {expect}:\n{err}"
        return json.loads(out)

    return run


@pytest.fixture
def tool(world, capsys):
    return cli_runner(capsys)


def prod_slot(stack) -> str:
    return stack.cluster.services["web-prod"]["spec"]["selector"]["slot"]
