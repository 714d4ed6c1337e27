"""StackSession's config edits (bluegreen/release/stacks.py) over a fake Pulumi CLI: one call for
all of a step's edits, secrets kept secret, and the stack's own config file untouched until the
update that deploys them succeeded."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import yaml

from bluegreen.release.stacks import StackSession


def session_in(tmp_path, calls: list[list[str]]) -> StackSession:
    class Command:
        def run(self, args, cwd, env):
            calls.append(args)

            class Result:
                stdout = ""
            return Result()

    class Workspace:
        pulumi_command, work_dir, env_vars = Command(), str(tmp_path), {}

    class Stack:
        workspace = Workspace()

    session = StackSession.__new__(StackSession)
    session.stack, session.namespace, session.name = Stack(), "bluegreen", "dev"
    session.config_file, session._config = str(tmp_path / "Pulumi.dev.yaml"), None
    session._read_ahead = lambda history: None  # the reads after an update: test_an_update_s_state_and_history_...
    return session


def test_an_update_s_state_and_history_are_read_once_side_by_side_and_shared(tmp_path, monkeypatch):
    """After an update, the state and the last updates are read at once, in the background, and every
    check and report after it shares that one read of each (each read is one `pulumi` start)."""
    from pulumi import automation as auto

    from bluegreen.release import stacks

    exports, histories = [], []
    monkeypatch.setattr(stacks, "_export", lambda name, project_dir: exports.append(name) or {"deployment": {}})

    class Stack:
        def history(self, page_size, page, show_secrets):
            histories.append(page_size)
            return [auto.UpdateSummary(kind="update", start_time=None, message="flip", environment={}, config={},
                                       result="succeeded", resource_changes={"update": 1, "same": 3})]

    session = StackSession.__new__(StackSession)
    session.stack, session.name, session.app, session.project_dir = Stack(), "dev", None, str(tmp_path)
    session._state = session._exported = session._summaries = None
    session._reading = threading.Lock()
    session._run("up", lambda **_: None)
    for _ in range(2):
        assert session.apps() == [] and session.deployed_values("web") is None
        assert session.history()[0]["changed"] == 1 and session.history(3)[0]["message"] == "flip"
    assert exports == ["dev"] and histories == [stacks.HISTORY_SHOWN]
    session.history(stacks.HISTORY_SHOWN + 1)  # more than was read ahead: read for itself
    assert histories == [stacks.HISTORY_SHOWN, stacks.HISTORY_SHOWN + 1]
    session._run("refresh", lambda **_: None)  # a change: read again
    session.history()
    assert exports == ["dev", "dev"] and histories[-1] == stacks.HISTORY_SHOWN


def test_checks_that_ask_for_the_state_while_it_is_being_read_share_that_one_read(tmp_path, monkeypatch):
    """Two checks on two threads (the cluster's truth, the object diff) ask for the state while the
    read started ahead still runs: both get that read, and no second `pulumi stack export` starts."""
    from bluegreen.release import stacks

    exports, release = [], threading.Event()

    def slow_export(name, project_dir):
        exports.append(name)
        release.wait(10)
        return {"deployment": {"resources": []}}

    monkeypatch.setattr(stacks, "_export", slow_export)
    session = StackSession.__new__(StackSession)
    session.name, session.app, session.project_dir = "dev", None, str(tmp_path)
    session._state = session._exported = session._summaries = None
    session._reading = threading.Lock()
    session._read_ahead(history=False)
    answers: list[list[str]] = []
    first = threading.Thread(target=lambda: answers.append(session.apps()))
    first.start()
    while session._exported is not None:  # the first check has taken the read ahead and waits for it
        threading.Event().wait(0.01)
    second = threading.Thread(target=lambda: answers.append(session.apps()))
    second.start()
    second.join(0.3)  # time for it to start a read of its own, if it would
    release.set()
    first.join(10)
    second.join(10)
    assert answers == [[], []] and exports == ["dev"]


def test_a_steps_edits_are_one_pulumi_call_and_secrets_go_in_as_secrets(tmp_path):
    calls: list[list[str]] = []
    session = session_in(tmp_path, calls)
    session.record({"green.image": "shop/web:2", "green.enabled": True, "green.secrets.DB_PASSWORD": "s3cr3t"})
    assert calls == [["config", "set-all", "--path", "--stack", "dev", "--config-file", session.config_file,
                      "--plaintext", "bluegreen:green.image=shop/web:2", "--plaintext", "bluegreen:green.enabled=true",
                      "--secret", "bluegreen:green.secrets.DB_PASSWORD=s3cr3t"]]


STACK_FILE = """encryptionsalt: v1:abc
config:
  bluegreen:productionSlot: blue  # prod serves blue
  bluegreen:green:
    enabled: false
    secrets:
      DB_PASSWORD:
        secure: v1:ciphertext
"""


def test_a_previewed_or_deploying_change_lives_in_a_copy_of_the_config_file(tmp_path):
    calls: list[list[str]] = []
    session = session_in(tmp_path, calls)
    (tmp_path / "Pulumi.dev.yaml").write_text(STACK_FILE)
    with session._config_with({"productionSlot": "green", "green.enabled": True, "green.image": "shop/web:2"}) as copy:
        assert copy and copy != session.config_file
        with open(copy) as f:
            document = yaml.safe_load(f)
        assert document["encryptionsalt"] == "v1:abc"
        assert document["config"] == {"bluegreen:productionSlot": "green", "bluegreen:green": {
            "enabled": True, "image": "shop/web:2", "secrets": {"DB_PASSWORD": {"secure": "v1:ciphertext"}}}}
    assert calls == []  # written here: no Pulumi process before the update
    assert not os.path.exists(copy)
    assert (tmp_path / "Pulumi.dev.yaml").read_text() == STACK_FILE


def test_a_change_under_a_secret_is_made_by_pulumi_as_a_secret(tmp_path):
    calls: list[list[str]] = []
    session = session_in(tmp_path, calls)
    (tmp_path / "Pulumi.dev.yaml").write_text(STACK_FILE)
    with session._config_with({"green.secrets.DB_PASSWORD": "new"}) as copy:
        assert calls == [["config", "set-all", "--path", "--stack", "dev", "--config-file", copy,
                          "--secret", "bluegreen:green.secrets.DB_PASSWORD=new"]]


def test_the_config_is_read_from_the_stack_file_with_secrets_hidden(tmp_path):
    session = session_in(tmp_path, [])
    session.app = None
    (tmp_path / "Pulumi.dev.yaml").write_text(STACK_FILE)
    assert session.raw_config() == {"productionSlot": "blue",
                                    "green": {"enabled": False, "secrets": {"DB_PASSWORD": "[secret]"}}}


def test_without_changes_the_stack_config_file_itself_is_used(tmp_path):
    calls: list[list[str]] = []
    with session_in(tmp_path, calls)._config_with({}) as copy:
        assert copy is None
    assert calls == []


def test_one_update_can_change_several_apps_namespaces(tmp_path):
    calls: list[list[str]] = []
    session = session_in(tmp_path, calls)
    session.namespace = "api"
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  api:productionSlot: blue\n  web:productionSlot: blue\n")
    with session._config_with({"productionSlot": "green", "web:productionSlot": "green"}) as copy, open(copy) as f:
        assert yaml.safe_load(f)["config"] == {"api:productionSlot": "green", "web:productionSlot": "green"}
    session.record({"api:productionSlot": "green", "web:green.secrets.TOKEN": "t"})
    assert calls[-1][-4:] == ["--plaintext", "api:productionSlot=green", "--secret", "web:green.secrets.TOKEN=t"]


class EngineStack:
    """The Automation API's stack as an update started ahead meets it: `up` starts at once and calls
    the program (as the engine does once it holds the lock and read the state) in its own thread."""

    def __init__(self, workspace):
        self.workspace, self.ran, self.config_files = workspace, [], []

    def up(self, program, on_output, on_event, config_file=None, **kwargs):
        import pulumi
        from pulumi import automation as auto

        self.config_files.append(Path(config_file).read_text() if config_file else None)
        on_output("Updating (dev)")
        try:
            program()
        except pulumi.RunError as error:  # the engine fails the update; nothing was registered
            raise auto.CommandError(auto.CommandResult("", str(error), 255)) from None
        self.ran.append(True)


def ahead_session(tmp_path, calls):
    session = session_in(tmp_path, calls)
    session.stack = EngineStack(session.stack.workspace)
    session._program = lambda: None
    (tmp_path / "Pulumi.dev.yaml").write_text(STACK_FILE)
    return session


def test_an_update_started_ahead_runs_its_program_only_once_let_go(tmp_path):
    calls: list[list[str]] = []
    session = ahead_session(tmp_path, calls)
    with session.update_ahead({"productionSlot": "green"}, "flip") as ahead:
        assert session.stack.ran == []  # the program waits at the gate while the checks run
        run = ahead.go()
    assert run.ok and session.stack.ran == [True]
    assert "bluegreen:productionSlot: green" in session.stack.config_files[0]  # the update's copy
    assert calls[-1][-1] == "bluegreen:productionSlot=green"  # recorded once it succeeded


def test_a_refusal_during_the_checks_ends_the_update_before_its_program_ran(tmp_path, capsys):
    calls: list[list[str]] = []
    session = ahead_session(tmp_path, calls)

    class Refused(Exception):
        pass

    try:
        with session.update_ahead({"productionSlot": "green"}, "flip"):
            raise Refused("stage check failed")
    except Refused:
        pass
    assert session.stack.ran == [] and calls == []  # no program run, nothing recorded
    assert "blue" in Path(session.config_file).read_text()
    err = capsys.readouterr().err
    assert "Updating (dev)" not in err and "ended before its program ran (refused; nothing changed)" in err


def _launched(tmp_path, monkeypatch, prints: str):
    """launch.main's `pulumi version`, with a `pulumi` on PATH that prints `prints`."""
    import subprocess

    from bluegreen.release import launch, stacks

    fake = tmp_path / "pulumi"
    fake.write_text(f"#!/bin/sh\necho '{prints}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(launch, "VERSION_CACHE", str(tmp_path / "pulumi-version.json"))  # not the user's
    monkeypatch.setattr(launch, "_read", None)
    monkeypatch.setattr(launch, "_version", subprocess.Popen(["pulumi", "version"], stdout=subprocess.PIPE, text=True))
    return stacks._pulumi_command()


def test_the_version_read_at_launch_is_the_automation_apis_and_no_second_pulumi_version_runs(tmp_path, monkeypatch):
    command = _launched(tmp_path, monkeypatch, "v3.260.0")
    assert command is not None and str(command.version) == "3.260.0" and command.command == "pulumi"


def test_a_version_the_automation_api_would_refuse_is_left_to_its_own_check(tmp_path, monkeypatch):
    assert _launched(tmp_path, monkeypatch, "v2.25.0") is None  # too old: its own error names it
    assert _launched(tmp_path, monkeypatch, "not a version") is None


def test_every_stack_a_command_opens_gets_the_version_read_at_launch(tmp_path, monkeypatch):
    from bluegreen.release import launch, stacks

    monkeypatch.setattr(launch, "_read", None)
    first = _launched(tmp_path, monkeypatch, "v3.260.0")
    second = stacks._pulumi_command()  # a second stack (deploy --from-stack reads its source's)
    assert first is not None and second is not None and str(second.version) == "3.260.0"
