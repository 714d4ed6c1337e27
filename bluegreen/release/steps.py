"""Pure decisions of the release tool: for each command, the slot it acts on, its preconditions, the
stack config edits it makes and the message its update carries into `pulumi stack history`; and
what a preview may show for a flip. No Pulumi, no cluster: the commands apply these edits with
`pulumi config set --path` semantics and run an ordinary `pulumi up`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError, Settings, parse
from ..contract import RELEASE_TYPE, ROLES, SLOT_LABEL, SLOTS, Names, other_slot
from ..keys import REPLICAS


class Refused(Exception):
    """A command that must not run in the current state; the message says why and what to do."""


@dataclass(frozen=True)
class Step:
    """One release step: what it does, to which slot, and the config edits that do it."""

    command: str
    slot: str
    summary: str
    changes: Mapping[str, Any] = field(default_factory=dict)  # config path -> new value
    message: str = ""  # the update's message in `pulumi stack history`

    def apply(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """The raw stack config after this step's edits (paths like "green.image")."""
        return apply_changes(raw, self.changes)


def deploy(settings: Settings, image: str, replace: bool = False, replicas: int | None = None,
           origin: str = "") -> Step:
    """Put `image` into the idle slot and enable it. Prod is not touched. `origin`: where the image
    comes from (deploy --from-stack: another stack's prod), for the update's message."""
    idle = settings.stage_slot
    staged = settings.slot(idle)
    if staged.enabled and staged.image and not replace:
        raise Refused(
            f"a release is already staged: {idle} runs {staged.image}. "
            f"Promote it (bluegreen promote), retire it (bluegreen retire), "
            f"or replace it (bluegreen deploy {'--from-stack SOURCE' if origin else image} --replace)."
        )
    if replicas is not None and not 1 <= replicas <= REPLICAS[1]:
        # A release without pods can be neither tested through stage nor promoted.
        raise Refused(f"--replicas is {replicas}; allowed: 1 to {REPLICAS[1]}")
    live = settings.slot(settings.production_slot)
    # The new release gets prod's size unless told otherwise, so promoting it keeps prod's capacity
    # (a slot scaled down by `retire --keep-replicas` would otherwise come back small).
    changes: dict[str, Any] = {f"{idle}.enabled": True, f"{idle}.image": image,
                               f"{idle}.replicas": live.replicas if replicas is None else replicas}
    stays = f"prod stays {settings.production_slot} ({live.image})"
    message = f"bluegreen deploy: {idle} <- {origin}; {stays}" if origin else \
        f"bluegreen deploy: {image} into {idle} (stage); {stays}"
    return Step("deploy", idle, f"deploy {image} into the idle slot {idle}; prod stays on "
                                f"{settings.production_slot} ({live.image})", changes, message)


def promote(settings: Settings) -> Step:
    """Send prod to the stage slot. Only a slot that is deployed, with an image and pods, qualifies."""
    target = settings.stage_slot
    state = settings.slot(target)
    if not state.enabled or not state.image:
        raise Refused(f"nothing is staged: {target} is not deployed. Deploy a release first: bluegreen deploy IMAGE")
    if state.replicas == 0:
        raise Refused(f"{target} is scaled to 0 replicas; "
                      f"deploy it again before promoting: bluegreen deploy {state.image} --replace")
    was = settings.production_slot
    return Step("promote", target, f"promote {target} ({state.image}) to prod; {was} stays deployed for rollback",
                {"productionSlot": target},
                f"bluegreen promote: {target} ({state.image}) to prod; was {was} ({settings.slot(was).image})")


def stage_at_prod_size(settings: Settings) -> Step | None:
    """Before a promotion, the stage slot scaled up to prod's replica count (Argo's
    previewReplicaCount): a slot staged small (`deploy --replicas 1`) takes prod's traffic at full
    size. None when it already runs as many replicas as prod, or more."""
    stage, prod = settings.stage_slot, settings.production_slot
    wanted, has = settings.slot(prod).replicas, settings.slot(stage).replicas
    if has >= wanted:
        return None
    image = settings.slot(stage).image
    return Step("promote", stage, f"scale stage ({stage}, {image}) from {has} to prod's {wanted} replicas first",
                {f"{stage}.replicas": wanted},
                f"bluegreen promote: {stage} ({image}) scaled from {has} to {wanted} replicas, prod's size, "
                "before the flip")


def rollback(settings: Settings) -> Step:
    """Flip prod back to the other slot, which must still run."""
    target = settings.stage_slot
    state = settings.slot(target)
    if not state.enabled or not state.image or state.replicas == 0:
        raise Refused(f"cannot roll back: the previous slot {target} was retired ({target}.enabled is "
                      f"{'true' if state.enabled else 'false'}, replicas {state.replicas}). "
                      f"Redeploy the old version with: bluegreen deploy IMAGE, then bluegreen promote")
    was = settings.production_slot
    return Step("rollback", target, f"roll prod back to {target} ({state.image})", {"productionSlot": target},
                f"bluegreen rollback: prod back to {target} ({state.image}); was {was} ({settings.slot(was).image})")


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
                    {f"{target}.replicas": keep_replicas},
                    f"bluegreen retire: {target} ({state.image}) scaled to {keep_replicas}")
    if not state.enabled:
        raise Refused(f"{target} is already retired ({target}.enabled is false)")
    return Step("retire", target, f"retire the old slot {target} ({state.image}): its Deployment is removed",
                {f"{target}.enabled": False}, f"bluegreen retire: {target} ({state.image}) removed")


def together(by_app: Mapping[str, Step]) -> str:
    """The message of one update that makes each app's step: the step's own for one app; for several,
    one that names every app with what its step does ("bluegreen promote of api, web: api: green
    (...) to prod; was blue (...); web: ...")."""
    if len(by_app) == 1:
        return next(iter(by_app.values())).message
    command = next(iter(by_app.values())).command
    each = [f"{app}: {step.message.removeprefix(f'bluegreen {command}: ')}" for app, step in by_app.items()]
    return f"bluegreen {command} of {', '.join(by_app)}: " + "; ".join(each)


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
        if op in ("same", "read", "discard"):  # discard: a read resource no longer read (the old self StackReference)
            continue
        if typ == RELEASE_TYPE and op == "update":
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


def reached(deployed: Mapping[str, Any] | None, changes: Mapping[str, Any]) -> bool:
    """Whether the deployed chart values hold every config edit of a step: the update that makes them
    got through. The chart's values mirror these paths (productionSlot, <slot>.enabled|image|replicas)."""
    if deployed is None or not changes:
        return False
    for path, value in changes.items():
        node: Any = deployed
        for part in path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node != value:
            return False
    return True


def unexpected_objects(changes: list, names: Names) -> list[str]:
    """Given the object diff of a flip (manifests.ObjectChange), what a flip does not explain: a
    flip changes the prod and stage Services' slot selectors and nothing else."""
    flip = {("Service", names.service(role)) for role in ROLES}
    problems = []
    for change in changes:
        if change.action != "changed":
            problems.append(f"{change} {change.action}")
            continue
        explained = f"spec.selector.{SLOT_LABEL}" if (change.kind, change.name) in flip else None
        extra = [f.path for f in change.fields if f.path != explained]
        if extra:
            problems.append(f"{change} changes {', '.join(extra)}")
    return problems
