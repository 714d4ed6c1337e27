"""StackSession's config edits (bluegreen/release/stacks.py) over a fake Pulumi CLI: one call for
all of a step's edits, secrets kept secret, and the stack's own config file untouched until the
update that deploys them succeeded."""

from __future__ import annotations

import os

from bluegreen.release.stacks import StackSession


def session_in(tmp_path, calls: list[list[str]]) -> StackSession:
    class Command:
        def run(self, args, cwd, env):
            calls.append(args)

    class Workspace:
        pulumi_command, work_dir, env_vars = Command(), str(tmp_path), {}

    class Stack:
        workspace = Workspace()

    session = StackSession.__new__(StackSession)
    session.stack, session.namespace, session.name = Stack(), "bluegreen", "dev"
    session.config_file, session._config = str(tmp_path / "Pulumi.dev.yaml"), None
    return session


def test_a_steps_edits_are_one_pulumi_call_and_secrets_go_in_as_secrets(tmp_path):
    calls: list[list[str]] = []
    session = session_in(tmp_path, calls)
    session.record({"green.image": "shop/web:2", "green.enabled": True, "green.secrets.DB_PASSWORD": "s3cr3t"})
    assert calls == [["config", "set-all", "--path", "--stack", "dev", "--config-file", session.config_file,
                      "--plaintext", "bluegreen:green.image=shop/web:2", "--plaintext", "bluegreen:green.enabled=true",
                      "--secret", "bluegreen:green.secrets.DB_PASSWORD=s3cr3t"]]


def test_a_previewed_or_deploying_change_lives_in_a_copy_of_the_config_file(tmp_path):
    calls: list[list[str]] = []
    session = session_in(tmp_path, calls)
    original = "config:\n  bluegreen:productionSlot: blue  # prod serves blue\n"
    (tmp_path / "Pulumi.dev.yaml").write_text(original)
    with session._config_with({"productionSlot": "green"}) as copy:
        assert copy and copy != session.config_file
        with open(copy) as f:
            assert f.read() == original  # the fake CLI edits nothing: this is the copy Pulumi would edit
        assert calls[-1][calls[-1].index("--config-file") + 1] == copy
        assert calls[-1][-1] == "bluegreen:productionSlot=green"
    assert not os.path.exists(copy)
    assert (tmp_path / "Pulumi.dev.yaml").read_text() == original


def test_without_changes_the_stack_config_file_itself_is_used(tmp_path):
    calls: list[list[str]] = []
    with session_in(tmp_path, calls)._config_with({}) as copy:
        assert copy is None
    assert calls == []
