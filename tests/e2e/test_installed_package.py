"""Tier 4: another team's Pulumi project, which installs the `bluegreen` wheel and deploys two
BlueGreenApps in one stack, on the real node; then the same stack previewed from a copy of that
project at another path shows no change (the chart path does not depend on where it lives).

The wheel is built from this checkout and installed into the project's own venv without its
dependencies (tests use no network): pulumi and pulumi-kubernetes come from this repo's venv
through a .pth file, at the versions the wheel declares (tests/unit/test_packaging.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.conftest import REPO_ROOT, build_wheel
from tests.e2e.conftest import INGRESS_CLASS, V1, V2, ReleaseTool, counted, fetch, fresh_namespace, version_of

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("vegeta")]  # prod traffic is counted

NS, STACK = "bg-e2e-package", "e2e-package"
HOSTS = {"api": "api.pkg.example.com", "web": "pkg.example.com"}

# Each app's settings are the stack config namespace named like it (api:productionSlot, ...).
PROGRAM = '''
import pulumi
from bluegreen.component import BlueGreenApp, BlueGreenAppArgs
from bluegreen.config import stack_config

apps = []
for name in ("api", "web"):  # api creates the namespace, web goes into it
    app = BlueGreenApp(name, BlueGreenAppArgs.from_config(stack_config(name)),
                       pulumi.ResourceOptions(depends_on=apps[:1]))
    apps.append(app)
    for key, value in app.outputs.items():
        pulumi.export(name + "." + key, value)
'''


def pulumi_yaml(venv: Path) -> str:
    return f"name: shop\nruntime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: {venv}\n"


@pytest.fixture(scope="module")
def other_project(tmp_path_factory, pulumi_env, kube, ingress):
    """A project outside this checkout, with a venv of its own outside the project (as poetry keeps
    them), which has the wheel installed."""
    root = tmp_path_factory.mktemp("other-team")
    wheels, project, venv = root / "wheels", root / "shop", root / "venvs" / "shop-1"
    wheel = build_wheel(wheels)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv)}))
    (site / "deps-from-the-repo-venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    project.mkdir()
    (project / "Pulumi.yaml").write_text(pulumi_yaml(venv))
    (project / "__main__.py").write_text(PROGRAM)
    fresh_namespace(kube, NS)
    stack = auto.create_or_select_stack(STACK, work_dir=str(project))
    for app, host in HOSTS.items():
        for key, value in {"namespace": NS, "createNamespace": str(app == "api").lower(), "prodHost": host,
                           "stageHost": "stage." + host, "ingressClass": INGRESS_CLASS, "helmTimeoutSeconds": "120",
                           "blue.image": V1}.items():
            stack.set_config(f"{app}:{key}", auto.ConfigValue(value), path=True)
    stack.ingress = ingress

    stack.tool = ReleaseTool(STACK, project, {**pulumi_env, "BLUEGREEN_INGRESS": ingress})
    stack.venv = venv
    yield stack
    stack.destroy(on_output=print, color="never")
    stack.workspace.remove_stack(STACK)


def test_the_installed_package_is_the_one_the_program_runs(other_project):
    project = Path(other_project.workspace.work_dir)
    python = str(other_project.venv / "bin" / "python")
    where = subprocess.run([python, "-c", "import bluegreen; print(bluegreen.__file__)"], capture_output=True,
                           text=True, check=True, cwd=project).stdout  # from the project's directory, as Pulumi runs it
    assert "site-packages" in where and str(REPO_ROOT) not in where, where


def test_two_apps_deploy_from_the_installed_package(other_project):
    result = other_project.up(on_output=print, color="never")
    outputs = {key: value.value for key, value in result.outputs.items()}
    assert outputs["api.releaseName"] == "api" and outputs["web.releaseName"] == "web"
    assert outputs["api.status"] == outputs["web.status"] == "deployed"
    for name, host in HOSTS.items():
        assert fetch(other_project.ingress, host) == (200, "blue", version_of(V1)), name
    chart_copies = list((Path(other_project.workspace.work_dir) / ".bluegreen").glob("chart-*"))
    assert len(chart_copies) == 1 and (chart_copies[0] / "Chart.yaml").exists()


def test_the_release_tool_asks_which_app(other_project):
    refused = other_project.tool("status", expect=2)
    assert "its apps: api, web. Choose one with --app NAME" in refused["error"], refused["error"]
    assert other_project.tool("status", "--app", "api")["state"]["slots"]["blue"]["image"] == V1


def test_one_app_is_released_with_the_tool_without_touching_the_other(other_project):
    with counted("installed package: bluegreen --app api deploy + promote, web untouched", other_project.ingress,
                 HOSTS["web"], version_of(V1)):
        deployed = other_project.tool("deploy", V2, "--app", "api")
        promoted = other_project.tool("promote", "--app", "api")
    assert deployed["slot"] == "green" and promoted["state"]["productionSlot"] == "green"
    assert fetch(other_project.ingress, HOSTS["api"]) == (200, "green", version_of(V2))
    config = {key: value.value for key, value in other_project.get_all_config().items()}
    assert config["api:productionSlot"] == "green" and "web:productionSlot" not in config
    assert other_project.tool("status", "--app", "web")["state"]["productionSlot"] == "blue"


def test_a_copy_of_the_project_elsewhere_previews_no_change(other_project, tmp_path):
    """Another checkout of the same project, at another path, with its venv at another path: no
    diff (a chart path relative to the project would differ: ../venvs/shop-1/... against
    ../../venvs/shop-2/...)."""
    source = Path(other_project.workspace.work_dir)
    copy, venv = tmp_path / "elsewhere" / "checkout" / "shop", tmp_path / "elsewhere" / "venvs" / "shop-2"
    shutil.copytree(source, copy, symlinks=True, ignore=shutil.ignore_patterns(".bluegreen", "__pycache__"))
    shutil.copytree(other_project.venv, venv, symlinks=True)
    (copy / "Pulumi.yaml").write_text(pulumi_yaml(venv))
    stack = auto.select_stack(STACK, work_dir=str(copy))
    preview = stack.preview(diff=True, on_output=print, color="never")
    assert set(preview.change_summary) == {"same"}, preview.change_summary
