"""Tier 1: the release tool's decisions: which slot, which preconditions, what each step changes."""

import pytest

from bluegreen.config import parse
from bluegreen.release import steps
from tests.scenarios import SCENARIOS, V1, V2

BLUE_LIVE, GREEN_STAGED, PROMOTED, BLUE_RETIRED, _ = (s.config for s in SCENARIOS)
V3 = "registry.example.com/shop/web:1.6.0"


def test_deploy_goes_into_the_idle_slot_and_leaves_prod_alone():
    step = steps.deploy(parse(BLUE_LIVE), V2)
    assert step.slot == "green"
    assert step.changes == {"green.enabled": True, "green.image": V2, "green.replicas": 2}
    after = steps.checked(BLUE_LIVE, step)
    assert after.production_slot == "blue" and after.slot("blue").image == V1


def test_next_release_goes_into_the_freed_slot():
    step = steps.deploy(parse(BLUE_RETIRED), V3)
    assert step.slot == "blue"
    assert steps.checked(BLUE_RETIRED, step).slot("blue").image == V3


def test_deploy_refuses_to_overwrite_a_staged_release_unless_replace():
    with pytest.raises(steps.Refused, match=r"a release is already staged: green runs .*1.5.0.*--replace"):
        steps.deploy(parse(GREEN_STAGED), V3)
    assert steps.deploy(parse(GREEN_STAGED), V3, replace=True).changes["green.image"] == V3


def test_deploy_of_a_bad_image_is_refused_before_anything_changes():
    step = steps.deploy(parse(BLUE_LIVE), "not an image")
    with pytest.raises(steps.Refused, match="green.image is 'not an image'"):
        steps.checked(BLUE_LIVE, step)


def test_deploy_gives_the_new_release_prods_size():
    config = {**BLUE_LIVE, "blue": {"enabled": True, "image": V1, "replicas": 5},
              "green": {"enabled": False, "image": V1, "replicas": 1}}  # scaled down by an earlier retire
    assert steps.deploy(parse(config), V2).changes["green.replicas"] == 5
    assert steps.deploy(parse(config), V2, replicas=3).changes["green.replicas"] == 3


def test_promote_flips_only_production_slot():
    step = steps.promote(parse(GREEN_STAGED))
    assert (step.slot, dict(step.changes)) == ("green", {"productionSlot": "green"})


@pytest.mark.parametrize("config,message", [
    (BLUE_LIVE, "nothing is staged: green is not deployed"),
    ({**BLUE_LIVE, "green": {"enabled": True, "image": V2, "replicas": 0}}, "green is scaled to 0 replicas"),
])
def test_promote_preconditions(config, message):
    with pytest.raises(steps.Refused, match=message):
        steps.promote(parse(config))


def test_rollback_flips_back_while_the_old_slot_runs():
    assert steps.rollback(parse(PROMOTED)).changes == {"productionSlot": "blue"}


def test_rollback_after_retire_says_the_slot_was_retired():
    with pytest.raises(steps.Refused, match="the previous slot blue was retired"):
        steps.rollback(parse(BLUE_RETIRED))


def test_retire_removes_the_old_slot():
    step = steps.retire(parse(PROMOTED))
    assert (step.slot, dict(step.changes)) == ("blue", {"blue.enabled": False})
    assert steps.checked(PROMOTED, step).slot("blue").enabled is False


def test_retire_refuses_the_production_slot():
    with pytest.raises(steps.Refused, match="green is the production slot"):
        steps.retire(parse(PROMOTED), slot="green")


def test_retire_keep_replicas_scales_down():
    step = steps.retire(parse(PROMOTED), keep_replicas=1)
    assert step.changes == {"blue.replicas": 1}
    with pytest.raises(steps.Refused, match="--keep-replicas is -1"):
        steps.retire(parse(PROMOTED), keep_replicas=-1)


def test_retire_twice_is_refused():
    with pytest.raises(steps.Refused, match="blue is already retired"):
        steps.retire(parse(BLUE_RETIRED))


RELEASE, STACK = "kubernetes:helm.sh/v3:Release", "pulumi:pulumi:Stack"


def test_preview_of_a_flip_is_accepted():
    changes = [(STACK, "same", []), (RELEASE, "update", ["values.productionSlot"]),
               ("kubernetes:core/v1:Namespace", "same", []),
               (STACK, "update", ["outputs.productionSlot", "outputs.prodSelector.slot", "stageSlot"])]
    assert steps.unexpected_changes(changes) == []


@pytest.mark.parametrize("change,problem", [
    ((RELEASE, "update", ["values.productionSlot", "values.blue.image"]), "also changes values.blue.image"),
    (("kubernetes:core/v1:Namespace", "update", ["metadata.labels"]), "Namespace update"),
    ((RELEASE, "replace", ["values.productionSlot"]), "Release replace"),
    ((STACK, "update", ["images"]), "stack outputs also change: images"),
])
def test_preview_with_anything_else_is_not(change, problem):
    (found,) = steps.unexpected_changes([(RELEASE, "update", ["values.productionSlot"]), change])
    assert problem in found


def test_apply_changes_edits_one_field_of_an_object():
    after = steps.apply_changes(GREEN_STAGED, {"green.image": V3})
    assert after["green"] == {"enabled": True, "image": V3, "replicas": 2}
    assert GREEN_STAGED["green"]["image"] == V2  # the input is not modified
