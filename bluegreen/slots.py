"""Pure slot logic: which slot serves prod, which is stage, and what each Service selects.

The chart renders the same selectors from the same values (tests/chart checks that they agree),
so the program can export them: a Release's preview only diffs its input values
(pulumi-kubernetes issue 1701), and these exports are what shows a reviewer of
`pulumi preview --diff` that prod moves from `slot: blue` to `slot: green`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .config import Settings, SlotSettings
from .contract import other_slot, pod_selector


@dataclass(frozen=True)
class SlotPlan:
    """What the cluster should look like for one stack config."""

    app_name: str
    production: str
    slots: Mapping[str, SlotSettings]

    @property
    def stage(self) -> str:
        return other_slot(self.production)

    def selector(self, slot: str) -> dict[str, str]:
        return pod_selector(self.app_name, slot)

    @property
    def prod_selector(self) -> dict[str, str]:
        return self.selector(self.production)

    @property
    def stage_selector(self) -> dict[str, str]:
        return self.selector(self.stage)

    def image(self, slot: str) -> str | None:
        """The image a slot runs, or None when the slot has no Deployment."""
        state = self.slots[slot]
        return state.image if state.enabled else None



def plan(settings: Settings) -> SlotPlan:
    return SlotPlan(app_name=settings.app_name, production=settings.production_slot, slots=dict(settings.slots))
