"""Tier 1: which slot is prod, which is stage, and what each Service selects."""

import pytest

from bluegreen.config import other_slot, parse
from bluegreen.contract import pod_selector, role_slots
from bluegreen.values import chart_values
from tests.scenarios import SCENARIOS


def test_other_slot():
    assert other_slot("blue") == "green"
    assert other_slot("green") == "blue"
    with pytest.raises(ValueError, match="slot is 'purple'; allowed: blue, green"):
        other_slot("purple")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_settings_for_each_release_step(scenario):
    settings = parse(scenario.config)
    assert (settings.production_slot, settings.stage_slot) == (scenario.prod, scenario.stage)
    assert role_slots(settings.production_slot) == {"prod": scenario.prod, "stage": scenario.stage}
    assert pod_selector(settings.app_name, scenario.prod) == {
        "app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web", "slot": scenario.prod}
    assert {slot: settings.image(slot) for slot in ("blue", "green")} == scenario.images


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_chart_values_keep_the_articles_meaning(scenario):
    values = chart_values(parse(scenario.config))
    assert values["productionSlot"] == scenario.prod
    for slot in ("blue", "green"):
        assert values[slot]["enabled"] == (scenario.images[slot] is not None)
    assert values["nameOverride"] == "web"
    assert values["ingress"]["prodHost"] == "shop.example.com"
