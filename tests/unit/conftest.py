"""The release tool's world in memory (fake_world.py) as fixtures: `world` is the stack, `tool` runs
a command over it and returns its --json result, checking the exit code and that no traceback came."""

from __future__ import annotations

import json

import pytest

from bluegreen.release import cli, helm, session
from tests.unit.fake_world import FakeCluster, FakeStack, fake_manifest


@pytest.fixture
def world(monkeypatch, tmp_path):
    cluster = FakeCluster()
    stack = FakeStack(cluster)
    stack.up()
    monkeypatch.setattr(session, "StackSession", lambda name, project_dir=None, app=None: stack)
    monkeypatch.setattr(session, "KubeClient", lambda kubeconfig=None: cluster)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # this test's own journal and locks
    monkeypatch.setattr(helm, "template", lambda chart, release, namespace, values, kube_version=None:
                        fake_manifest(values))
    return stack


@pytest.fixture
def tool(world, capsys):
    def run(*args: str, expect: int = 0) -> dict:
        code = cli.main([*args, "--stack", "dev", "--json"])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        assert code == expect, f"exit {code}, expected {expect}:\n{err}"
        return json.loads(out)

    return run


def prod_slot(stack) -> str:
    return stack.cluster.services["web-prod"]["spec"]["selector"]["slot"]
