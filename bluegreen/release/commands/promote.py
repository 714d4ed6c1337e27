"""`bluegreen promote`: stage checked, a preview that may show only the flip, the flip, prod verified;
on any failure after the flip, prod goes back to the previous slot by itself. The flip's update
starts while the checks and the preview run, and waits for them."""

from __future__ import annotations

import argparse
import concurrent.futures

from ...config import parse
from .. import steps
from ..checks import verify_serving, wait_available
from ..session import Failed, Session, tail
from ..stacks import Run, say

NAME = "promote"
HELP = "check the stage, flip prod to it, verify"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check-url", help="GET this URL, expect 2xx; {url} is the stage (then prod) URL")
    parser.add_argument("--check-cmd", help="run this shell command, expect exit 0; BLUEGREEN_TARGET=stage|prod")
    parser.add_argument("--keep-stage-size", action="store_true",
                        help="flip to the stage slot as it is, even when it runs fewer replicas than prod")


def run(session: Session, args: argparse.Namespace) -> None:
    step = session.plan(steps.promote(session.settings))
    previous = session.settings.production_slot
    grow = None if args.keep_stage_size else steps.stage_at_prod_size(session.settings)
    if grow:  # the stage grows in an update of its own first; the flip's update starts after it
        session.require_true_cluster(NAME)
        session.require_available(step.slot, NAME)
        _scale_stage(session, grow)
    diff = session.diff_in_background(step.changes)
    # The flip's update starts now and waits for the checks, the preview and the diff, which run
    # side by side: none of them changes anything, and a refusal ends the update unchanged.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="preview") as background, \
            session.update_ahead(step.changes, step.message, record=False) as update:
        previewing = background.submit(_preview, session, step)
        if not grow:
            session.require_true_cluster(NAME)
            session.require_available(step.slot, NAME)
        session.smoke("stage", step.slot)
        preview = previewing.result()
        _guard(session, preview, session.show_diff(diff))
        with session.watch_prod():
            # The stack config records the flip only once prod is verified: a promote killed before
            # that leaves a config that says where prod was, and `bluegreen recover` finishes it.
            problem = _verified(session, step.slot, update())
            if problem:
                say(f"==> verification failed: {problem}")
                say(f"==> automatic rollback: prod back to {previous}")
                session.journal.phase("rollback")
                back = session.up({}, f"bluegreen promote: automatic rollback to {previous} ({problem})"[:500])
                still = verify_serving(session.kube, session.names, "prod", previous) if back.ok else tail(back.error)
                raise Failed(f"promotion of {step.slot} failed ({problem}); "
                             + (f"rolled back, prod serves {previous}" if not still else f"ROLLBACK FAILED: {still}"))
            session.journal.phase("record")
            session.stack.record(step.changes)


def _guard(session: Session, preview: Run, objects: list | None) -> None:
    """Refuse when the object diff or the preview shows anything beyond the flip."""
    if objects:
        beyond = steps.unexpected_objects(objects, session.names)
        if beyond:
            raise steps.Refused("the update would change more objects than the flip does (a chart edit in the "
                                "checkout, or drift):\n" + "\n".join(f"- {line}" for line in beyond)
                                + "\nReview it (bluegreen diff), deploy it into the idle slot or with a reviewed "
                                "pulumi up, then promote")
    unexpected = steps.unexpected_changes([(c.type, c.op, c.paths) for c in preview.changes])
    if not preview.ok or unexpected:
        reason = preview.error if not preview.ok else "; ".join(unexpected)
        raise steps.Refused(f"the preview shows more than the flip: {reason}\n{preview.output}")


def _preview(session: Session, step: steps.Step) -> Run:
    say("==> preview: only productionSlot and what follows from it may change")
    session.journal.phase("preview")
    return session.stack.preview(step.changes)


def _verified(session: Session, slot: str, update) -> str | None:
    """None when the update succeeded, prod selects `slot` with exactly its ready pods, and the
    user's checks pass against prod; otherwise what failed."""
    if not update.ok:
        return f"pulumi up failed: {tail(update.error)}"
    problem = verify_serving(session.kube, session.names, "prod", slot)
    if problem:
        return problem
    failures = session.smoke("prod", slot, raise_on_failure=False)
    return "; ".join(failures) if failures else None


def _scale_stage(session: Session, grow: steps.Step) -> None:
    """The stage slot at prod's size, Available, before the flip: an update of its own, prod untouched."""
    say(f"==> {grow.summary}")
    with session.watch_prod():
        update = session.up(grow.changes, grow.message)
    if not update.ok:
        raise Failed(f"scaling stage to prod's size failed; prod was not touched.\n{tail(update.error)}")
    session.raw = session.stack.raw_config()
    session.settings = parse(session.raw)
    ready, desired = wait_available(session.kube, session.names, grow.slot, 120, say)
    if not desired or ready != desired:
        raise Failed(f"{grow.slot} has {ready}/{desired} available replicas after scaling; prod was not touched")
