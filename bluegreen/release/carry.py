"""`bluegreen deploy --from-stack SOURCE`: what serves prod on another stack (an environment, such
as staging), read and checked, as the image this stack deploys into its idle slot.

The image is pinned by the digest the node reports for SOURCE's running prod pods
(`status.containerStatuses[].imageID`), never by its tag: a tag can be moved, the digest is the
bytes staging ran. SOURCE is read with the same machinery as the target (its own Session: stack,
cluster, drift), and every refusal comes before anything changes. The pure decisions (a duration,
the pods' image, the promotion time, the reference to deploy) are separate from the reading.
"""

from __future__ import annotations

import argparse
import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..contract import CONTAINER, Names
from ..keys import DEFAULTS
from .checks import pod_ready
from .steps import Refused

if TYPE_CHECKING:
    from .session import Session

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_ALLOWED = "0, or a whole number with a unit s, m, h or d (e.g. 90s, 30m, 2h, 1d)"
HISTORY_LIMIT = 500  # updates read back from SOURCE's history to find its promotion
# A reference the node can start the image by: the repository and its registry digest (the
# runtime's RepoDigest), as `name@sha256:<64 hex>`.
_PINNED_RE = re.compile(r"^(?:[a-z-]+://)?(?P<repo>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")


@dataclass(frozen=True)
class Duration:
    text: str
    seconds: int

    def __str__(self) -> str:
        return self.text


def duration(text: str) -> Duration:
    """--min-age: `0`, or a whole number with a unit (90s, 30m, 2h, 1d). argparse names the flag."""
    found = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if not found or (not found[2] and int(found[1]) != 0):
        raise argparse.ArgumentTypeError(f"is {text!r}; allowed: {DURATION_ALLOWED}")
    return Duration(text.strip(), int(found[1]) * DURATION_UNITS.get(found[2], 1))


def spoken(seconds: float) -> str:
    """A duration for a message: 1h 5m, 4m 10s, 12s."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return " ".join(parts[:2]) or "0s"


@dataclass(frozen=True)
class Image:
    """What one slot's ready pods run, as the node reports it."""

    image_id: str  # containerStatuses[].imageID: bluegreen.local/demo@sha256:...
    repository: str  # bluegreen.local/demo
    digest: str  # sha256:...
    spec_image: str  # the pods' image reference as deployed (bluegreen.local/demo:2.0.0)
    pods: int  # how many ready pods report it

    @property
    def tag(self) -> str:
        """The tag of the deployed reference, when it names the same repository; else empty."""
        name = self.spec_image.split("@", 1)[0]
        repository, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
        return tag if repository == self.repository else ""

    @property
    def reference(self) -> str:
        """The reference deployed into the target: repository, tag and digest
        (`bluegreen.local/demo:2.0.0@sha256:...`). The runtime resolves a tag-and-digest reference
        by its digest alone (the tag is only read by people and by the version label); without a
        tag, `repository@digest`."""
        return f"{self.repository}:{self.tag}@{self.digest}" if self.tag else f"{self.repository}@{self.digest}"


def ready_pods(pods: Iterable[dict]) -> tuple[list[dict], list[str]]:
    """(the Ready pods that are not terminating, the names of the others)."""
    ready, others = [], []
    for pod in pods:
        if pod_ready(pod):
            ready.append(pod)
        else:
            others.append(pod["metadata"]["name"])
    return ready, others


def running_image(pods: Sequence[Mapping[str, Any]], where: str) -> Image:
    """The one image the ready pods run, pinned by digest; refused when they run more than one, or
    the node reports no registry digest for it. `where` names the slot in messages."""
    ids: dict[str, list[str]] = {}
    specs: dict[str, str] = {}
    for pod in pods:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        status = next((s for s in statuses if s.get("name") == CONTAINER), statuses[0] if statuses else {})
        image_id = str(status.get("imageID") or "")
        ids.setdefault(image_id, []).append(pod["metadata"]["name"])
        specs[image_id] = str(status.get("image") or "")
    if not ids:
        raise Refused(f"{where} has no ready pods to read the image from")
    if len(ids) > 1:
        listing = "\n".join(f"- {image_id or '(no imageID)'}: {', '.join(sorted(names))}"
                            for image_id, names in sorted(ids.items()))
        raise Refused(f"{where}'s ready pods do not all run the same image:\n{listing}\n"
                      "Fix: wait until its rollout has finished (every pod on one image), then run this again")
    image_id, names = next(iter(ids.items()))
    pinned = _PINNED_RE.match(image_id)
    if not pinned:
        raise Refused(f"{where}'s pods report imageID {image_id!r}, not a registry digest (name@sha256:...): "
                      "the node knows the image only by its local ID, which no other node can start it by.\n"
                      "Fix: give the node the image with its digest (pulled from a registry, or imported with "
                      "digest references), then run this again")
    return Image(image_id.split("://", 1)[-1], pinned["repo"], pinned["digest"], specs[image_id], len(names))


@dataclass(frozen=True)
class Promotion:
    started: datetime.datetime
    message: str
    exact: bool  # False: the history read back did not reach the change; it is at or before `started`


def promotion(history: Sequence[Mapping[str, Any]], slot: str, complete: bool) -> Promotion | None:
    """When prod went to `slot`: the oldest of the newest run of successful updates that all
    deployed productionSlot == `slot` (history newest first; `complete`: it holds every update of the
    stack). None when the last successful update did not deploy `slot`."""
    found = None
    for entry in history:
        if entry.get("kind") != "update" or entry.get("result") != "succeeded":
            continue
        if (entry.get("productionSlot") or DEFAULTS["productionSlot"]) != slot:
            return Promotion(found[0], found[1], True) if found else None
        found = (_when(entry["started"]), str(entry.get("message") or ""))
    return Promotion(found[0], found[1], complete) if found else None


def _when(text: str) -> datetime.datetime:
    when = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Source:
    """What serves prod on SOURCE, checked: the image to carry and where it comes from."""

    stack: str
    slot: str
    image: Image
    promoted: Promotion

    @property
    def origin(self) -> str:
        """Where it came from, for the update's message in `pulumi stack history`."""
        tag = f", tag {self.image.tag}" if self.image.tag else ""
        when = self.promoted.started.isoformat(timespec="seconds")
        return (f"{self.stack}'s prod ({self.image.image_id}{tag}, promoted "
                f"{'' if self.promoted.exact else 'at or before '}{when})")

    def as_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "slot": self.slot, "imageID": self.image.image_id,
                "digest": self.image.digest, "tag": self.image.tag or None, "image": self.image.reference,
                "pods": self.image.pods, "promoted": self.promoted.started.isoformat(timespec="seconds"),
                "promotedExact": self.promoted.exact, "promotedBy": self.promoted.message}


def check_arguments(args: argparse.Namespace) -> None:
    """deploy's command line: IMAGE or --from-stack, and the source's flags only with it."""
    if args.image and args.from_stack:
        raise Refused(f"deploy takes IMAGE or --from-stack SOURCE, not both (IMAGE is {args.image!r}, --from-stack "
                      f"is {args.from_stack!r}).\nFix: bluegreen deploy {args.image}, or bluegreen deploy "
                      f"--from-stack {args.from_stack}")
    if not args.image and not args.from_stack:
        raise Refused("deploy needs the image: bluegreen deploy IMAGE, or bluegreen deploy --from-stack SOURCE "
                      "(what serves prod on stack SOURCE)")
    for flag, value in (("--min-age", args.min_age), ("--from-kubeconfig", args.from_kubeconfig)):
        if value is not None and not args.from_stack:
            raise Refused(f"{flag} is {str(value)!r}, but it applies only with --from-stack SOURCE")


def read_source(target: Session, args: argparse.Namespace, now: datetime.datetime | None = None) -> Source:
    """SOURCE's prod, read with a Session of its own and checked; refused (steps.Refused, or
    NoSuchStack naming the stacks there are) before anything changes."""
    from .session import Session, listed
    from .stacks import NoSuchStack

    name = args.from_stack
    if name == target.stack.name:
        raise Refused(f"--from-stack is {name!r}, the stack this command deploys to (--stack {target.stack.name}): "
                      "a stack's prod cannot be carried into itself.\nFix: name the environment to carry from, "
                      f"e.g. bluegreen deploy --from-stack staging --stack {target.stack.name}")
    source_args = argparse.Namespace(stack=name, project_dir=target.stack.project_dir, app=args.app,
                                     kubeconfig=args.from_kubeconfig or args.kubeconfig, json=args.json)
    try:
        source = Session(source_args)
        truth = source.truth()
    except NoSuchStack as error:
        raise NoSuchStack(f"--from-stack {name!r}: {error}\nThe stacks of this project: "
                          f"{', '.join(target.stack.stack_names()) or 'none'}") from None
    fix = f"bluegreen status --stack {name}"
    if truth is None:
        raise Refused(f"stack {name} has nothing deployed to carry: {source.never_deployed()}")
    slot = truth.deployed.production_slot
    if not truth.serving or truth.found:
        raise Refused(f"stack {name}'s prod ({slot}) is not what its stack deployed, so what it runs is not what "
                      f"was verified there:\n{listed(truth.found)}\nFix: bluegreen repair --stack {name} "
                      f"({fix} shows the same list), then run this again")
    where = f"stack {name}'s prod ({slot})"
    ready, others = ready_pods(source.kube.pods(source.names.namespace, source.names.pod_selector(slot)))
    desired = (truth.cluster.deployments[slot] or {}).get("spec", {}).get("replicas", 0)
    if others or len(ready) != desired:
        raise Refused(f"{where} has {len(ready)}/{desired} replicas ready"
                      + (f" (not ready: {', '.join(sorted(others))})" if others else "")
                      + f".\nFix: wait until every replica is ready ({fix}), then run this again")
    image = running_image(ready, where)
    history = source.stack.history(HISTORY_LIMIT)
    promoted = promotion(history, slot, complete=len(history) < HISTORY_LIMIT)
    if promoted is None:
        raise Refused(f"{where}: the stack's history has no successful update that deployed productionSlot={slot}, "
                      f"so when it was promoted is not known.\nFix: {fix}; bluegreen repair --stack {name}")
    min_age = args.min_age.seconds if args.min_age else 0
    age = ((now or datetime.datetime.now(datetime.UTC)) - promoted.started).total_seconds()
    if age < min_age:
        raise Refused(f"{where} was promoted {'' if promoted.exact else 'at least '}{spoken(age)} ago "
                      f"({promoted.started.isoformat(timespec='seconds')}, "
                      f"from its pulumi stack history); --min-age is {args.min_age}.\nFix: let it serve "
                      f"{spoken(min_age - age)} more, or pass a shorter --min-age")
    return Source(name, slot, image, promoted)


def refuse_same_image(target: Session, source: Source) -> None:
    """Refused when the target's prod already runs the source's digest: there is nothing to carry."""
    names: Names = target.names
    prod = target.settings.production_slot
    ready, _ = ready_pods(target.kube.pods(names.namespace, names.pod_selector(prod)))
    found = (_PINNED_RE.match(str(status.get("imageID") or ""))
             for pod in ready for status in (pod.get("status") or {}).get("containerStatuses") or [])
    if source.image.digest in {pinned["digest"] for pinned in found if pinned}:
        raise Refused(f"stack {target.stack.name}'s prod ({prod}) already runs {source.image.image_id}, what "
                      f"{source.stack}'s prod runs: there is nothing to carry.\nFix: none needed; to deploy it "
                      f"anyway, bluegreen deploy {source.image.reference}")
