"""Tier 4: several apps in one switch, on the real node. A program with two BlueGreenApps, api and
web (each configured in the stack config namespace named like it), released together with
`bluegreen promote --app api --app web`: one update flips both, with real requests to BOTH prod
hosts counted through the ingress (none may fail); then a promotion of both whose check against
web's prod fails sends both back in one update; one killed after its update is finished for both by
`recover`; `rollback --all` flips both back together.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil

import pytest
from pulumi import automation as auto

from bluegreen.release.journal import Journal
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import (
    INGRESS_CLASS,
    REPORT,
    V1,
    V2,
    ReleaseTool,
    counted,
    fetch,
    fresh_namespace,
    version_of,
    wait_until,
)
from tests.e2e.test_kill_phases import kill_at

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("vegeta")]  # prod traffic is counted

NS, STACK = "bg-e2e-multi", "e2e-multi"
HOSTS = {"api": "api.multi.example.com", "web": "multi.example.com"}
APPS = tuple(HOSTS)

# This checkout's package, two apps, each from its own stack config namespace (api:productionSlot, ...).
PROGRAM = '''
import pulumi
from bluegreen.component import BlueGreenApp, BlueGreenAppArgs
from bluegreen.config import stack_config

apps = []
for name in ("api", "web"):  # api creates the namespace, web goes into it
    app = BlueGreenApp(name, BlueGreenAppArgs.from_config(stack_config(name)),
                       pulumi.ResourceOptions(depends_on=apps[:1]))
    apps.append(app)
'''


@pytest.fixture(scope="module")
def shop(tmp_path_factory, pulumi_env, kube, ingress):
    """A project of two apps, with this checkout's package and venv (the program runs inline), deployed
    on blue (V1)."""
    project = tmp_path_factory.mktemp("multi") / "shop"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: shop\nruntime:\n  name: python\n  options:\n    toolchain: pip\n"
                                         "    virtualenv: .venv\n")
    (project / "__main__.py").write_text(PROGRAM)
    shutil.copytree(REPO_ROOT / "bluegreen", project / "bluegreen",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (project / ".venv").symlink_to(REPO_ROOT / ".venv")
    fresh_namespace(kube, NS)
    stack = auto.create_or_select_stack(STACK, work_dir=str(project))
    for app, host in HOSTS.items():
        for key, value in {"namespace": NS, "createNamespace": str(app == "api").lower(), "prodHost": host,
                           "stageHost": "stage." + host, "ingressClass": INGRESS_CLASS, "helmTimeoutSeconds": "60",
                           "blue.image": V1}.items():
            stack.set_config(f"{app}:{key}", auto.ConfigValue(value), path=True)
    stack.up(on_output=print, color="never")
    stack.ingress = ingress
    stack.tool = ReleaseTool(STACK, project, {**pulumi_env, "BLUEGREEN_INGRESS": ingress})
    yield stack
    stack.destroy(on_output=print, color="never")
    stack.workspace.remove_stack(STACK)


def updates(stack) -> list:
    """The stack's updates, newest first."""
    return [entry for entry in stack.history() if entry.kind == "update"]


def config(stack) -> dict:
    return {key: value.value for key, value in stack.get_all_config().items()}


def serve(stack, slot: str, image: str) -> bool:
    return all(fetch(stack.ingress, host) == (200, slot, version_of(image)) for host in HOSTS.values())


def both_counted(stack, name: str, image: str | None = None):
    """Requests to BOTH prod hosts counted through the step; with `image`, each prod must end up
    serving only it."""
    return _Both([counted(f"{name}: {app}'s prod host", stack.ingress, HOSTS[app], image and version_of(image))
                  for app in APPS])


class _Both:
    """Several `counted` blocks as one: each one's figures are taken even when another's fails."""

    def __init__(self, contexts):
        self.contexts = contexts

    def __enter__(self):
        for context in self.contexts:
            context.__enter__()
        return self

    def __exit__(self, *exc):
        """Each block ends at once, side by side: each one's figures end when the step did."""

        def end(context):
            try:
                context.__exit__(*exc)
            except Exception as error:  # the step's own error, or a host's failed requests
                return error
            return None

        with concurrent.futures.ThreadPoolExecutor(len(self.contexts)) as pool:
            failures = [failure for failure in pool.map(end, self.contexts) if failure]
        if failures and not exc[0]:
            raise failures[0]
        return False  # the step's own error goes on as it is


def test_one_app_commands_refuse_several_apps(shop):
    before = (config(shop), len(updates(shop)))
    refused = shop.tool("deploy", V2, "--all", expect=2)
    assert "deploy acts on one app: --all names several" in refused["error"]
    unknown = shop.tool("promote", "--app", "api", "--app", "shop", expect=2)
    assert "no config for app 'shop'" in unknown["error"] and "its apps: api, web" in unknown["error"]
    assert (config(shop), len(updates(shop))) == before


def test_both_apps_are_promoted_in_one_update_under_counted_load_on_both(shop):
    for app in APPS:
        assert shop.tool("deploy", V2, "--app", app)["slot"] == "green"
    before = len(updates(shop))
    with both_counted(shop, "bluegreen promote --app api --app web", V2):
        promoted = shop.tool("promote", "--app", "api", "--app", "web")
    history = updates(shop)
    assert len(history) == before + 1, [entry.message for entry in history]  # one update flipped both
    assert history[0].message.startswith("bluegreen promote of api, web: api: green (")
    assert "; web: green (" in history[0].message
    settings = config(shop)
    assert settings["api:productionSlot"] == settings["web:productionSlot"] == "green"
    for app in APPS:
        part = promoted["apps"][app]
        assert part["state"]["productionSlot"] == "green" and part["prodWatch"]["empty"] == 0, part
    assert serve(shop, "green", V2)
    print(json.dumps({"promote both": {"seconds": promoted["seconds"], "upSeconds": promoted["upSeconds"]}}))


def test_a_failed_check_against_one_apps_prod_sends_both_back(shop):
    before = len(updates(shop))
    check = f'test "$BLUEGREEN_TARGET $BLUEGREEN_NAMESPACE $BLUEGREEN_SERVICE" != "prod {NS} web-prod"'
    with both_counted(shop, "bluegreen promote --all, web's prod check fails", V2):
        code, failed = shop.tool.run("promote", "--all", "--check-cmd", check)
    assert code == 1, failed
    assert "app web: " in failed["error"] and "rolled back all of them in one update" in failed["error"], failed
    history = updates(shop)
    assert len(history) == before + 2  # the flip of both, then both back
    assert history[0].message.startswith("bluegreen promote of api, web: automatic rollback to api: green, "
                                         "web: green")
    settings = config(shop)
    assert settings["api:productionSlot"] == settings["web:productionSlot"] == "green"
    assert serve(shop, "green", V2)
    print(json.dumps({"promote both, sent back": {"seconds": failed["seconds"], "upSeconds": failed["upSeconds"]}}))


def test_a_promotion_of_both_killed_after_its_update_is_finished_by_recover_for_both(shop):
    """SIGKILL during the checks against prod (after the one update flipped both): each app's
    status names the promotion of both, and a recover through either app records both flips."""
    journal = Journal(shop.tool.project_dir, STACK, *APPS)
    with both_counted(shop, "kill `bluegreen promote --all` in its verify phase, then recover --app web"):
        kill_at(shop.tool, ["promote", "--all", "--check-cmd", "sleep 3"], "verify", 1.0, journal)
        wait_until("both prod hosts serve blue", lambda: serve(shop, "blue", V1), timeout=30)  # the config: green
        code, status = shop.tool.run("status", "--app", "web")
        assert code == 3 and "`bluegreen promote` (apps api, web, in one update)" in status["error"], status
        assert "api:productionSlot=blue, web:productionSlot=blue" in status["error"]
        refused = shop.tool("deploy", V2, "--replace", "--app", "api", expect=2)
        assert "bluegreen recover" in refused["error"]
        recovered = shop.tool("recover", "--app", "web")
    assert any(action.startswith("finished the interrupted promote: prod serves web blue, api blue")
               for action in recovered["actions"]), recovered["actions"]
    settings = config(shop)
    assert settings["api:productionSlot"] == settings["web:productionSlot"] == "blue"
    REPORT["kill `bluegreen promote --all` in its verify phase, then recover --app web: web's prod host"].update(
        status_exit=code, recover_did=recovered["actions"])


def test_status_and_rollback_of_every_app(shop):
    status = shop.tool("status", "--all")
    assert status["ok"] is True
    assert {app: part["state"]["productionSlot"] for app, part in status["apps"].items()} == {"api": "blue",
                                                                                            "web": "blue"}
    before = len(updates(shop))
    with both_counted(shop, "bluegreen rollback --all", V2):
        back = shop.tool("rollback", "--all")
    assert len(updates(shop)) == before + 1 and set(back["apps"]) == set(APPS)
    assert serve(shop, "green", V2)
