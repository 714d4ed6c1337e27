"""StackSession's config edits (bluegreen/release/stacks.py) over a fake Pulumi CLI: one call for
all of a step's edits, secrets kept secret, and the stack's own config file untouched until the
update that deploys them succeeded."""

from __future__ import annotations

import os

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
    return session


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
