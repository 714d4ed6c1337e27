"""The release tool's failures are messages with the documented exit code and valid --json output,
never a traceback: the cases that used to end in one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bluegreen.release import cli
from tests.conftest import REPO_ROOT


def test_no_pulumi_on_path_is_a_refusal_with_json(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bluegreen", "status", "--json", "--project-dir", str(REPO_ROOT)],
                          capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is False and result["refused"] is True
    assert result["error"].startswith("pulumi is not installed or not on PATH")


@pytest.mark.parametrize("error", [RuntimeError("boom"), subprocess.TimeoutExpired("check", 300), OSError(5, "I/O")])
def test_an_unexpected_error_is_a_failure_with_json(monkeypatch, capsys, error):
    class Exploding:
        def __init__(self, args, read_only=False):
            raise error

    monkeypatch.setattr(cli, "Session", Exploding)
    assert cli.main(["status", "--json"]) == 1
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["ok"] is False and type(error).__name__ in result["error"]
    assert "FAILED" in err and "Traceback" not in err


def test_a_missing_stack_is_a_refusal_with_json(tmp_path, capsys):
    """Used to be a SystemExit with text, and no JSON."""
    (tmp_path / "Pulumi.yaml").write_text("name: bluegreen\nruntime: python\n")
    env = {"PULUMI_BACKEND_URL": f"file://{tmp_path}", "PULUMI_CONFIG_PASSPHRASE": "x",
           "PULUMI_SKIP_UPDATE_CHECK": "true"}
    tool_path = subprocess.run([str(REPO_ROOT / "scripts" / "toolchain.sh"), "--print-path"], capture_output=True,
                               text=True, check=True).stdout.strip()
    done = subprocess.run([sys.executable, "-m", "bluegreen", "status", "--stack", "nope", "--json", "--project-dir",
                           str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, **env, "PATH": f"{tool_path}:{os.environ['PATH']}"})
    if "pulumi is not installed" in done.stdout:
        pytest.skip("no pulumi CLI on PATH: scripts/toolchain.sh pulumi builds it")
    assert done.returncode == 2, done.stderr
    result = json.loads(done.stdout)
    assert result["refused"] is True and "stack 'nope' does not exist" in result["error"]
    assert "Traceback" not in done.stderr
