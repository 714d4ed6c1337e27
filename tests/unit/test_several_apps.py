"""Several apps of one stack in one switch (`promote --app api --app web`, `--all`), over the
in-memory stack and cluster of fake_world.py: every app's flip in one update whose message names
them all, all of them sent back together when one app's prod fails its check, the selection
refused where it is wrong, and an interrupted promote of several apps recovered for all of them."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict

import pytest

from bluegreen.release import cli
from bluegreen.release.journal import Entry, Journal
from tests.unit.conftest import cli_runner
from tests.unit.fake_world import V2, FakeApps, FakeCluster, install, two_apps

APPS = ("api", "web")


@pytest.fixture
def apps(monkeypatch, tmp_path):
    """Two apps, api and web, deployed on blue in one stack, each with V2 deployed into green."""
    stack = FakeApps(FakeCluster(), two_apps())
    stack.up()
    install(monkeypatch, stack, tmp_path)
    return stack


@pytest.fixture
def tool(apps, capsys):
    return cli_runner(capsys)


def prod(stack, app: str) -> str:
    return stack.cluster.services[f"{app}-prod"]["spec"]["selector"]["slot"]


@pytest.fixture
def staged(apps, tool):
    for app in APPS:
        tool("deploy", V2, "--app", app)
    return apps


def test_several_apps_are_flipped_in_one_update_named_after_all_of_them(staged, tool):
    updates = len(staged.updates)
    result = tool("promote", "--app", "api", "--app", "web")
    assert len(staged.updates) == updates + 1  # one update flipped both
    assert staged.messages[-1].startswith("bluegreen promote of api, web: api: green (")
    assert "; web: green (" in staged.messages[-1]
    assert staged.recorded[-1] == {"api:productionSlot": "green", "web:productionSlot": "green"}
    for app in APPS:
        assert prod(staged, app) == "green" and staged.configs[app]["productionSlot"] == "green"
        part = result["apps"][app]
        assert part["slot"] == "green" and part["state"]["productionSlot"] == "green"
        assert part["prodWatch"]["empty"] == 0
    assert "state" not in result and len(result["upSeconds"]) == 1


def test_one_apps_failed_check_against_prod_sends_every_app_back_in_one_update(staged, tool):
    updates = len(staged.updates)
    check = 'test "$BLUEGREEN_TARGET/$BLUEGREEN_SERVICE" != prod/web-prod'  # fails only against web's prod
    result = tool("promote", "--all", "--check-cmd", check, expect=1)
    assert "rolled back all of them in one update, prod serves api: blue, web: blue" in result["error"]
    assert "app web:" in result["error"] and "app api:" not in result["error"]
    assert len(staged.updates) == updates + 2  # the flip of both, then both back
    assert staged.messages[-1].startswith("bluegreen promote of api, web: automatic rollback to api: blue, web: blue")
    for app in APPS:
        assert prod(staged, app) == "blue" and staged.configs[app]["productionSlot"] == "blue"
        assert staged.updates[-2][app]["productionSlot"] == "green"  # both had been flipped
    assert all(":productionSlot" not in key for changes in staged.recorded for key in changes)


def test_a_failed_update_of_several_apps_sends_them_back(staged, tool):
    staged.up_fails = "error: the Release api failed"
    result = tool("promote", "--app", "api", "--app", "web", expect=1)
    assert "pulumi up failed" in result["error"] and "rolled back all of them in one update" in result["error"]
    assert [prod(staged, app) for app in APPS] == ["blue", "blue"]


def test_rollback_of_several_apps_is_one_update(staged, tool):
    tool("promote", "--all")
    updates = len(staged.updates)
    result = tool("rollback", "--app", "web", "--app", "api")
    assert len(staged.updates) == updates + 1 and staged.messages[-1].startswith("bluegreen rollback of web, api: ")
    assert [prod(staged, app) for app in APPS] == ["blue", "blue"]
    assert set(result["apps"]) == {"web", "api"}


def test_status_of_several_apps_is_a_result_per_app_and_of_one_app_as_before(staged, tool):
    tool("promote", "--app", "api")
    both = tool("status", "--all")
    assert {app: part["state"]["productionSlot"] for app, part in both["apps"].items()} == {"api": "green",
                                                                                          "web": "blue"}
    assert all(part["ok"] is True for part in both["apps"].values())
    one = tool("status", "--app", "web")
    assert "apps" not in one and one["state"]["productionSlot"] == "blue"


def test_a_promote_of_several_apps_refuses_before_anything_changes(staged, tool):
    staged.configs["web"]["green"]["enabled"] = False  # nothing staged for web
    before = (json.dumps(staged.configs), len(staged.updates))
    refused = tool("promote", "--all", expect=2)
    assert "nothing is staged: green is not deployed" in refused["error"]
    assert (json.dumps(staged.configs), len(staged.updates)) == before


@pytest.mark.parametrize(("args", "said"), [
    (("promote", "--app", "api", "--app", "shop"), "no config for app 'shop' (no shop:* keys); its apps: api, web"),
    (("deploy", V2, "--all"), "deploy acts on one app: --all names several; allowed: one --app NAME. "
                              "status, promote and rollback take several apps (--app repeated, or --all)"),
    (("retire", "--app", "api", "--app", "web"), "retire acts on one app: --app api --app web names several"),
    (("recover", "--all"), "recover acts on one app"),
    (("promote", "--all", "--app", "api"), "--all and --app api together; allowed: one of them"),
])
def test_a_bad_selection_of_apps_is_refused(apps, tool, args, said):
    before = (json.dumps(apps.configs), len(apps.updates))
    refused = tool(*args, expect=2)
    assert refused["refused"] is True and said in refused["error"], refused["error"]
    assert (json.dumps(apps.configs), len(apps.updates)) == before


def killed_promote_of_both(stack, phase: str) -> None:
    """What a `promote --app api --app web` killed in `phase` leaves: its entry under each app."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    journal = Journal(stack.project_dir, stack.name, *APPS)
    every = {app: {"productionSlot": "green"} for app in APPS}
    for app, path in journal.paths.items():
        entry = Entry("promote", stack.name, app, every[app], phase=phase, pid=gone.pid, process_start="1",
                      apps=every)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(asdict(entry), f)


def test_an_interrupted_promote_of_several_apps_is_finished_for_all_of_them(staged, tool):
    staged.up({"api:productionSlot": "green", "web:productionSlot": "green"}, record=False)  # then it died
    killed_promote_of_both(staged, "verify")
    status = tool("status", "--app", "web", expect=3)
    assert "`bluegreen promote` (apps api, web, in one update)" in status["error"]
    assert "api:productionSlot=green, web:productionSlot=green" in status["error"]
    refused = tool("deploy", V2, "--app", "api", "--replace", expect=2)  # nothing builds on it, from either app
    assert "bluegreen recover" in refused["error"]
    result = tool("recover", "--app", "web")
    assert "finished the interrupted promote: prod serves web green, api green; recorded web:productionSlot=green, " \
           "api:productionSlot=green" in result["actions"], result["actions"]
    assert staged.configs["api"]["productionSlot"] == staged.configs["web"]["productionSlot"] == "green"
    assert tool("status", "--all")["ok"] is True


def test_an_interrupted_promote_of_several_apps_cut_off_in_its_update_is_put_back_for_all(staged, tool):
    killed_promote_of_both(staged, "update")
    updates = len(staged.updates)
    tool("recover", "--app", "api")
    assert len(staged.updates) == updates + 1  # one update put both back
    assert [prod(staged, app) for app in APPS] == ["blue", "blue"]
    assert tool("status", "--all")["ok"] is True


def test_the_text_output_shows_each_app(staged, capsys):
    assert cli.main(["status", "--all", "--stack", "dev"]) == 0
    out = capsys.readouterr().out
    assert out.index("app api:") < out.index("app web:")
    assert out.count("release api revision") == 1 and out.count("release web revision") == 1
    assert out.rstrip().splitlines()[-1].startswith("status: ok in")
