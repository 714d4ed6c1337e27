"""Pure release planning: for each command, the slot it acts on, its preconditions, and the stack
config edits it makes. No Pulumi, no cluster: the CLI applies these edits with
`pulumi config set --path` semantics and runs an ordinary `pulumi up`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import REPLICAS, SLOTS, ConfigError, Settings, other_slot, parse


class Refused(Exception):
    """A command that must not run in the current state; the message says why and what to do."""


@dataclass(frozen=True)
class Step:
    """One release step: what it does, to which slot, and the config edits that do it."""

    command: str
    slot: str
    summary: str
    changes: Mapping[str, Any] = field(default_factory=dict)  # config path -> new value

    def apply(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """The raw stack config after this step's edits (paths like "green.image")."""
        return apply_changes(raw, self.changes)


def deploy(settings: Settings, image: str, replace: bool = False, replicas: int | None = None) -> Step:
    """Put `image` into the idle slot and enable it. Prod is not touched."""
    idle = settings.stage_slot
    staged = settings.slot(idle)
    if staged.enabled and staged.image and not replace:
        raise Refused(
            f"a release is already staged: {idle} runs {staged.image}. "
            f"Promote it (bluegreen promote), retire it (bluegreen retire), "
            f"or replace it (bluegreen deploy {image} --replace)."
        )
    if replicas is not None and not 1 <= replicas <= REPLICAS[1]:
        # A release without pods can be neither tested through stage nor promoted.
        raise Refused(f"--replicas is {replicas}; allowed: 1 to {REPLICAS[1]}")
    live = settings.slot(settings.production_slot)
    # The new release gets prod's size unless told otherwise, so promoting it keeps prod's capacity
    # (a slot scaled down by `retire --keep-replicas` would otherwise come back small).
    changes: dict[str, Any] = {f"{idle}.enabled": True, f"{idle}.image": image,
                               f"{idle}.replicas": live.replicas if replicas is None else replicas}
    return Step("deploy", idle, f"deploy {image} into the idle slot {idle}; prod stays on "
                                f"{settings.production_slot} ({live.image})", changes)


def promote(settings: Settings) -> Step:
    """Send prod to the stage slot. Only a slot that is deployed, with an image and pods, qualifies."""
    target = settings.stage_slot
    state = settings.slot(target)
    if not state.enabled or not state.image:
        raise Refused(f"nothing is staged: {target} is not deployed. Deploy a release first: bluegreen deploy IMAGE")
    if state.replicas == 0:
        raise Refused(f"{target} is scaled to 0 replicas; "
                      f"deploy it again before promoting: bluegreen deploy {state.image} --replace")
    return Step("promote", target,
                f"promote {target} ({state.image}) to prod; {settings.production_slot} stays deployed for rollback",
                {"productionSlot": target})


def rollback(settings: Settings) -> Step:
    """Flip prod back to the other slot, which must still run."""
    target = settings.stage_slot
    state = settings.slot(target)
    if not state.enabled or not state.image or state.replicas == 0:
        raise Refused(f"cannot roll back: the previous slot {target} was retired ({target}.enabled is "
                      f"{'true' if state.enabled else 'false'}, replicas {state.replicas}). "
                      f"Redeploy the old version with: bluegreen deploy IMAGE, then bluegreen promote")
    return Step("rollback", target, f"roll prod back to {target} ({state.image})", {"productionSlot": target})


def retire(settings: Settings, slot: str | None = None, keep_replicas: int | None = None) -> Step:
    """Remove the non-production slot's Deployment, or scale it down to `keep_replicas`."""
    target = slot or settings.stage_slot
    if target not in SLOTS:
        raise Refused(f"slot is {target!r}; allowed: {', '.join(SLOTS)}")
    if target == settings.production_slot:
        raise Refused(f"{target} is the production slot and serves prod; it cannot be retired. "
                      f"Retire {other_slot(target)}, or promote {other_slot(target)} first")
    state = settings.slot(target)
    if keep_replicas is not None:
        if not REPLICAS[0] <= keep_replicas <= REPLICAS[1]:
            raise Refused(f"--keep-replicas is {keep_replicas}; allowed: {REPLICAS[0]} to {REPLICAS[1]}")
        return Step("retire", target, f"scale the old slot {target} down to {keep_replicas} replica(s)",
                    {f"{target}.replicas": keep_replicas})
    if not state.enabled:
        raise Refused(f"{target} is already retired ({target}.enabled is false)")
    return Step("retire", target, f"retire the old slot {target} ({state.image}): its Deployment is removed",
                {f"{target}.enabled": False})


def checked(raw: Mapping[str, Any], step: Step) -> Settings:
    """The settings after `step`, validated exactly as the program will: bad input stops here."""
    try:
        return parse(step.apply(raw))
    except ConfigError as error:
        raise Refused(f"{step.command} would leave an invalid stack config:\n{error}") from None


# What a flip may change in a preview: the Release's productionSlot value, and the stack outputs
# that follow from it. Anything else (drift, an unrelated config edit) must be reviewed by a human.
FLIP_RELEASE_PATHS = {"values.productionSlot"}
FLIP_OUTPUTS = {"productionSlot", "stageSlot", "prodSelector", "stageSelector"}


def unexpected_changes(changes: list[tuple[str, str, list[str]]]) -> list[str]:
    """Given preview changes as (resource type, operation, changed property paths), list what a flip
    does not explain. An empty list means the preview shows only the flip."""
    problems = []
    for typ, op, paths in changes:
        if op in ("same", "read"):
            continue
        if typ == "kubernetes:helm.sh/v3:Release" and op == "update":
            extra = sorted(set(paths) - FLIP_RELEASE_PATHS)
            if extra:
                problems.append(f"{typ} update also changes {', '.join(extra)}")
        elif typ == "pulumi:pulumi:Stack" and op == "update":
            extra = sorted(set(p.removeprefix("outputs.").split(".")[0] for p in paths) - FLIP_OUTPUTS)
            if extra:
                problems.append(f"stack outputs also change: {', '.join(extra)}")
        else:
            problems.append(f"{typ} {op}")
    return problems


def apply_changes(raw: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(dict(raw))
    for path, value in changes.items():
        head, _, rest = path.partition(".")
        if rest:
            node = result.get(head)
            result[head] = node = dict(node) if isinstance(node, Mapping) else {}
            node[rest] = value
        else:
            result[head] = value
    return result
