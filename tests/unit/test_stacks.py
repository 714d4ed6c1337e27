"""StackSession's config edits (bluegreen/release/stacks.py) over a fake Automation API stack."""

from __future__ import annotations

from bluegreen.release.stacks import StackSession


def test_putting_config_back_keeps_secrets_encrypted():
    """restore_config rewrites an object leaf by leaf: the secret leaves must go back as secrets."""
    calls = []

    class FakeStack:
        def set_config(self, key, value, path):
            calls.append((key, value.value, value.secret, path))

        def remove_config(self, key):
            calls.append((key, "REMOVED", None, None))

    session = StackSession.__new__(StackSession)
    session.stack, session.namespace, session.touched = FakeStack(), "bluegreen", set()
    raw = {"green": {"enabled": False, "image": "", "secrets": {"DB_PASSWORD": "s3cr3t"}}}
    session.restore_config(raw, {"green"})
    assert ("bluegreen:green.secrets.DB_PASSWORD", "s3cr3t", True, True) in calls
    assert ("bluegreen:green.image", "", False, True) in calls


def test_putting_the_registry_back_keeps_its_password_encrypted():
    calls = []

    class FakeStack:
        def set_config(self, key, value, path):
            calls.append((key, value.secret))

        def remove_config(self, key):
            pass

    session = StackSession.__new__(StackSession)
    session.stack, session.namespace, session.touched = FakeStack(), "bluegreen", set()
    session.restore_config({"registry": {"server": "r.example.com", "username": "ci", "password": "p"}}, {"registry"})
    assert sorted(calls) == [("bluegreen:registry.password", True), ("bluegreen:registry.server", False),
                             ("bluegreen:registry.username", False)]
