"""Tier 2: BlueGreenApp as another program uses it: flat args of pulumi.Inputs (an image that is
an Output of another resource), two apps in one stack, Outputs as attributes, and a chart path
that does not depend on where the project or the package lives."""

from __future__ import annotations

import dataclasses
import os
import shutil

import pulumi
import pytest
from pulumi.runtime import settings as runtime_settings

from bluegreen import component
from bluegreen.component import BlueGreenApp, BlueGreenAppArgs, SlotArgs
from bluegreen.config import ConfigError
from bluegreen.keys import KEYS
from bluegreen.values import CHART_DIR
from tests.mocks.harness import RELEASE_TYPE, RecordingMocks

IMAGE_TYPE = "test:index:Image"
BUILT = "registry.example.com/shop/api@sha256:" + "ab" * 32


class ImageMocks(RecordingMocks):
    """A stand-in for an image-building resource: its `ref` output is known only after create."""

    def new_resource(self, args):
        if args.typ == IMAGE_TYPE:
            self.registered.append(args)
            return f"{args.name}-id", {"ref": BUILT}
        return super().new_resource(args)


class Image(pulumi.CustomResource):
    ref: pulumi.Output[str]

    def __init__(self, name: str):
        super().__init__(IMAGE_TYPE, name, {"ref": None})


def run(program, preview: bool = False) -> RecordingMocks:
    runtime_settings.ROOT.set(None)
    mocks = ImageMocks()
    pulumi.runtime.set_mocks(mocks, project="shop", stack="dev", preview=preview)
    pulumi.runtime.test(program)()
    return mocks


def releases(mocks) -> dict[str, dict]:
    return {r.inputs["name"]: r.inputs for r in mocks.registered if r.typ == RELEASE_TYPE}


@pytest.fixture(autouse=True)
def at_project_root(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)


def test_every_config_key_is_an_arg():
    """One list of settings: the key table. The args are its keys, in snake case, then the rest."""
    assert [f.name for f in dataclasses.fields(BlueGreenAppArgs)] == [
        *(key.field for key in KEYS), "deployed_slots", "encrypted", "config"]
    assert BlueGreenAppArgs(production_slot="green").production_slot == "green"
    with pytest.raises(TypeError, match="prodcution_slot"):
        BlueGreenAppArgs(prodcution_slot="green")


def test_stack_config_reaches_parse_as_it_is_and_a_set_field_wins():
    config = {"productionSlot": "green", "green": {"enabled": True}, "productoinSlot": "typo"}
    args = BlueGreenAppArgs.from_config(config)
    assert args.config_keys() == config  # no renaming on the way: parse reports the typo as it was set
    args = BlueGreenAppArgs(config=config, production_slot="blue", blue=SlotArgs(image="shop/web:1"))
    assert args.config_keys() == {**config, "productionSlot": "blue", "blue": {"image": "shop/web:1"}}


def test_an_image_from_another_resource_reaches_the_release():
    outputs = {}

    def program():
        image = Image("api-image")
        app = BlueGreenApp("api", BlueGreenAppArgs(namespace="shop", prod_host="api.shop.example.com",
                                                   stage_host="stage.api.shop.example.com",
                                                   blue=SlotArgs(image=image.ref, replicas=3)))
        return pulumi.Output.all(**app.outputs).apply(outputs.update)

    mocks = run(program)
    values = releases(mocks)["api"]["values"]
    assert values["blue"] == {"enabled": True, "image": BUILT, "replicas": 3, "env": [],
                              "version": "sha256-abababababab", "secretName": ""}  # no tag: the digest's start
    assert values["nameOverride"] == "api"  # app_name defaults to the component's name
    assert outputs["images"] == {"blue": BUILT, "green": None}
    assert outputs["prodSelector"] == {"app.kubernetes.io/instance": "api", "app.kubernetes.io/name": "api",
                                       "slot": "blue"}
    assert outputs["prodUrl"] == "http://api.shop.example.com/"
    assert outputs["releaseName"] == "api" and outputs["namespace"] == "shop"


def test_a_bad_value_from_an_output_is_reported_when_it_arrives():
    def program():
        image = Image("api-image")
        tag_less = image.ref.apply(lambda ref: ref.split("@")[0])  # no tag, no digest
        BlueGreenApp("api", BlueGreenAppArgs(namespace="shop", prod_host="api.shop.example.com",
                                             stage_host="stage.api.shop.example.com", blue=SlotArgs(image=tag_less)))

    # The SDK wraps it in the error of the first input that waited on it; the message is ours.
    with pytest.raises(ValueError, match=r"blue.image is 'registry.example.com/shop/api'; allowed: an image"):
        run(program)


def test_two_apps_in_one_stack():
    def program():
        for name, host in (("api", "api.shop.example.com"), ("web", "shop.example.com")):
            BlueGreenApp(name, BlueGreenAppArgs(namespace="shop", prod_host=host, stage_host=f"stage.{host}",
                                                create_namespace=name == "api",
                                                blue=SlotArgs(image=f"registry.example.com/shop/{name}:1.0.0")))

    mocks = run(program)
    assert set(releases(mocks)) == {"api", "web"}
    assert [r.inputs["metadata"]["name"] for r in mocks.registered if r.typ == "kubernetes:core/v1:Namespace"] == [
        "shop"]


def test_plain_bad_args_fail_before_any_resource():
    mocks = RecordingMocks()

    def program():
        BlueGreenApp("api", BlueGreenAppArgs(namespace="Shop", blue=SlotArgs(image="api:1"), production_slot="red"))

    runtime_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="shop", stack="dev")
    with pytest.raises(ConfigError) as error:
        pulumi.runtime.test(program)()
    assert "namespace is 'Shop'" in str(error.value) and "productionSlot is 'red'" in str(error.value)
    assert mocks.registered == []


def test_create_namespace_must_be_known_when_the_program_runs():
    def program():
        BlueGreenApp("api", BlueGreenAppArgs(blue=SlotArgs(image=Image("img").ref),
                                             create_namespace=pulumi.Output.from_input(True)))  # type: ignore[arg-type]

    with pytest.raises(ConfigError, match="createNamespace is .*; allowed: true or false, known when the program runs"):
        run(program)


def test_inside_this_project_the_chart_is_its_own_directory(repo_root):
    assert component.chart_path() == "./bluegreen/chart"


def test_installed_elsewhere_the_chart_path_is_the_same_in_every_project_copy(tmp_path, monkeypatch):
    """The package installed outside the project (a venv anywhere): the stored path names the
    chart's content, not where the venv or the project is, so two checkouts agree."""
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "bluegreen"
    shutil.copytree(CHART_DIR, site / "chart")
    monkeypatch.setattr(component, "CHART_DIR", str(site / "chart"))
    paths = []
    for checkout in ("alice/shop", "ci/build-7/shop"):
        project = tmp_path / checkout
        project.mkdir(parents=True)
        monkeypatch.chdir(project)
        paths.append(component.chart_path())
        copied = project / paths[-1]
        assert (copied / "Chart.yaml").read_text() == (site / "chart" / "Chart.yaml").read_text()
    assert paths[0] == paths[1] and paths[0].startswith("./.bluegreen/chart-")
    # a changed chart gets a new path: the preview shows it
    (site / "chart" / "values.yaml").write_text(
        (site / "chart" / "values.yaml").read_text() + "\n# changed\n")
    assert component.chart_path() != paths[0]
    assert sorted(os.listdir(tmp_path / "ci/build-7/shop/.bluegreen")) == sorted(
        [paths[0].split("/")[-1], component.chart_path().split("/")[-1]])
