"""The launch (bluegreen/release/launch.py): what it starts before the tool's imports, and that the
command takes it instead of starting it again. Over a fake `pulumi` that logs every call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bluegreen.release import launch
from tests.conftest import REPO_ROOT

FAKE = """#!/bin/sh
echo "$*" >> "{log}"
case "$*" in
  version) echo v3.260.0 ;;
  "stack export --stack dev") echo '{{"version": 3, "deployment": {{"resources": []}}}}' ;;
  *"stack history"*) echo '[]' ;;
  *) echo "fake pulumi: $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def fake_pulumi(tmp_path, monkeypatch):
    """A `pulumi` first on PATH that logs its arguments, one line per call, to the returned file."""
    log = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(FAKE.format(log=log))
    (bin_dir / "pulumi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(launch, "VERSION_CACHE", str(tmp_path / "cache" / "pulumi-version.json"))
    monkeypatch.setattr(launch, "_read", None)
    monkeypatch.setattr(launch, "_version", None)
    monkeypatch.setattr(launch, "_export", None)
    log.touch()
    return log


def calls(log) -> list[str]:
    return log.read_text().splitlines()


def test_a_command_takes_the_state_read_and_the_version_started_at_launch_and_starts_neither_again(tmp_path,
                                                                                                    fake_pulumi):
    """Run as users run it (`python -m bluegreen`), twice: the first run reads `pulumi version`
    once, the second none (kept for this binary); each reads the state once, the read from launch."""
    (tmp_path / "Pulumi.yaml").write_text("name: bluegreen\nruntime: python\n")
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  bluegreen:productionSlot: blue\n")
    env = {**os.environ, "BLUEGREEN_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO_ROOT)}
    for expected in (["version", "stack export --stack dev"], ["stack export --stack dev"]):
        fake_pulumi.write_text("")
        done = subprocess.run([sys.executable, "-m", "bluegreen", "status", "--stack", "dev", "--json",
                               "--project-dir", str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert "Traceback" not in done.stderr and json.loads(done.stdout)["command"] == "status"
        made = [call for call in calls(fake_pulumi) if "history" not in call]  # status also reads the last updates
        assert sorted(made) == sorted(expected), done.stderr
    kept = json.loads((tmp_path / "cache" / "pulumi-version.json").read_text())
    assert [entry["version"] for entry in kept.values()] == ["3.260.0"]


def test_the_kept_version_is_of_that_binary_only(tmp_path, fake_pulumi):
    binary = tmp_path / "bin" / "pulumi"
    launch._version = subprocess.Popen(["pulumi", "version"], stdout=subprocess.PIPE, text=True)
    assert launch.pulumi_version() == "3.260.0" and launch._kept_version() == "3.260.0"
    os.utime(binary, ns=(0, binary.stat().st_mtime_ns + 1))  # another build or install at the same path
    assert launch._kept_version() is None
    other = tmp_path / "other"
    other.mkdir()
    (other / "pulumi").write_text("#!/bin/sh\necho v3.200.0\n")
    (other / "pulumi").chmod(0o755)
    os.environ["PATH"] = f"{other}:{os.environ['PATH']}"
    launch._keep_version("3.200.0")
    assert launch._kept_version() == "3.200.0"
    os.environ["PATH"] = os.environ["PATH"].split(":", 1)[1]
    launch._keep_version("3.260.0")
    assert launch._kept_version() == "3.260.0"  # each binary keeps its own
    assert len(json.loads(Path(launch.VERSION_CACHE).read_text())) == 2
    (other / "pulumi").unlink()  # an install removed: its entry goes with the next one kept
    launch._keep_version("3.260.0")
    assert list(json.loads(Path(launch.VERSION_CACHE).read_text())) == [os.path.realpath(binary)]


def test_a_cache_that_cannot_be_read_or_written_only_costs_a_pulumi_version(tmp_path, fake_pulumi, monkeypatch):
    (tmp_path / "cache").write_text("not a directory")
    monkeypatch.setattr(launch, "VERSION_CACHE", str(tmp_path / "cache" / "pulumi-version.json"))
    launch._version = subprocess.Popen(["pulumi", "version"], stdout=subprocess.PIPE, text=True)
    assert launch.pulumi_version() == "3.260.0" and launch._kept_version() is None
    (tmp_path / "broken.json").write_text("{not json")
    monkeypatch.setattr(launch, "VERSION_CACHE", str(tmp_path / "broken.json"))
    assert launch._kept_version() is None


@pytest.mark.parametrize(("argv", "target"), [
    (["rollback", "--stack", "prod", "--project-dir", "x"], ("prod", os.path.abspath("x"))),
    (["promote", "--stack=prod", "--check-url", "http://127.0.0.1/"], ("prod", str(REPO_ROOT))),
    (["status"], ("staging", str(REPO_ROOT))),
    (["--json"], None),  # no command: a usage error to come
    (["status", "--stack"], None),  # no value: the command's own parser says so
])
def test_the_stack_read_at_launch_is_the_one_the_command_line_names(argv, target, monkeypatch):
    monkeypatch.delenv("BLUEGREEN_STACK", raising=False)
    monkeypatch.delenv("BLUEGREEN_PROJECT_DIR", raising=False)
    assert launch._target(argv) == target


def test_a_state_read_of_another_stack_is_not_taken_and_one_never_taken_is_stopped(tmp_path, fake_pulumi):
    reading = subprocess.Popen(["sleep", "30"])
    launch._export = ("dev", str(tmp_path), reading)
    assert launch.take_export("prod", str(tmp_path)) is None
    assert launch.take_export("dev", "/elsewhere") is None
    launch.drop_export()
    assert reading.wait(5) is not None and launch._export is None
    taken = subprocess.Popen(["true"])
    launch._export = ("dev", str(tmp_path), taken)
    assert launch.take_export("dev", str(tmp_path)) is taken
    assert launch.take_export("dev", str(tmp_path)) is None  # once: a later read is of a state that may have changed


def test_a_state_read_again_never_takes_the_one_from_launch(tmp_path, fake_pulumi, monkeypatch):
    """read_again (another command let go of the stack after this one began): the read started at
    launch may be older than that command's update, so it is stopped, and the state read anew."""
    import threading

    from bluegreen.release import stacks

    reading = subprocess.Popen(["sleep", "30"])
    launch._export = ("dev", str(tmp_path), reading)
    taken = []
    monkeypatch.setattr(stacks, "_export", lambda name, directory: taken.append(launch.take_export(name, directory))
                        or {"deployment": {"resources": []}})
    session = stacks.StackSession.__new__(stacks.StackSession)
    session.name, session.app, session.project_dir = "dev", None, str(tmp_path)
    session._state = session._exported = session._summaries = None
    session._reading = threading.Lock()
    session.read_again()
    assert session.apps() == [] and taken == [None]
    assert reading.wait(5) is not None


def test_the_stacks_first_state_read_is_the_one_started_at_launch(tmp_path, fake_pulumi):
    from bluegreen.release import stacks

    launch._export = ("dev", str(tmp_path), launch.start_export("dev", str(tmp_path)))
    assert stacks._export("dev", str(tmp_path)) == {"version": 3, "deployment": {"resources": []}}
    assert calls(fake_pulumi) == ["stack export --stack dev"]  # no read of its own
    stacks._export("dev", str(tmp_path))  # a later read is the stack's own: the state may have changed
    assert calls(fake_pulumi) == ["stack export --stack dev"] * 2
