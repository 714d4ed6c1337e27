"""The contract between the program, the chart and the release tool: the ground floor every other
module imports, and which imports nothing of the project.

It holds the words of the domain once: the two slots, the two roles (prod serves the production
slot, stage the other one), the names the chart gives an app's objects, the labels a Service selects
a slot's pods by, and the one shape of "what is wrong, and the command that fixes it". The chart's
templates (`_helpers.tpl`) render the same names and labels; the chart tier checks that they agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROJECT = "bluegreen"
COMPONENT_TYPE = f"{PROJECT}:index:BlueGreenApp"  # in the Pulumi state, found there by the release tool
RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
SLOTS = ("blue", "green")
ROLES = ("prod", "stage")
SLOT_LABEL = "slot"  # the pod label a Service selects a slot by (the chart's `slot:` selector label)
CONTAINER = "app"  # the name of the app's container in a slot's pods (templates/deployment.yaml)


def other_slot(slot: str) -> str:
    """The slot that is not `slot`: stage when given prod, prod when given stage."""
    if slot not in SLOTS:
        raise ValueError(f"slot is {slot!r}; allowed: {', '.join(SLOTS)}")
    return SLOTS[1 - SLOTS.index(slot)]


def role_slots(production_slot: str) -> dict[str, str]:
    """Which slot each role's Service selects."""
    return {"prod": production_slot, "stage": other_slot(production_slot)}


def pod_selector(app: str, slot: str) -> dict[str, str]:
    """The labels of one slot's pods, which a Service selects (the chart's selectorLabels + slot; the
    chart's name and its release name are both the app name)."""
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app, SLOT_LABEL: slot}


def selected_slot(service: Mapping[str, Any] | None) -> str | None:
    """The slot a Service (an object read from the cluster) selects; None without one."""
    return ((service or {}).get("spec", {}).get("selector") or {}).get(SLOT_LABEL)


@dataclass(frozen=True)
class Names:
    """The names the chart gives one app's objects in its namespace (release name == app name)."""

    namespace: str
    app: str

    def service(self, role: str) -> str:
        return f"{self.app}-{role}"

    def deployment(self, slot: str) -> str:
        return f"{self.app}-{slot}"

    def pod_selector(self, slot: str) -> dict[str, str]:
        return pod_selector(self.app, slot)


@dataclass(frozen=True)
class Problem:
    """Something that is not as it should be, and the command that fixes it: a bad config value
    ("productionSlot", "is 'purple'; allowed: blue, green.") or an object of the cluster that differs
    from what the stack deployed ("Deployment web-green", "is missing")."""

    subject: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.subject} {self.problem}\n  Fix: {self.fix}"
