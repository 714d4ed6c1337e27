"""`bluegreen promote`: stage checked, a preview that may show only the flip, the flip, prod verified;
on any failure after the flip, prod goes back to the previous slot by itself."""

from __future__ import annotations

import argparse
import concurrent.futures
from typing import NoReturn

from .. import helm, steps
from ..checks import verify_serving, wait_available
from ..kube import KubeError
from ..session import Failed, Session, tail
from ..stacks import Run, say
from .recover import refresh, settle_helm, wait_for_api_server

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
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="preview") as background:
        previewing = None
        diff = session.diff_in_background(step.changes)
        if not grow:  # the preview runs while the cluster and the stage are checked: it changes nothing
            previewing = background.submit(_preview, session, step)
        session.require_true_cluster(NAME)
        session.require_available(step.slot, NAME)
        if grow:
            _scale_stage(session, grow)
        session.smoke("stage", step.slot)
        preview = previewing.result() if previewing else _preview(session, step)
    objects = session.show_diff(diff if not grow else session.diff_in_background(step.changes))
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
    with session.watch_prod():
        # The stack config records the flip only once prod is verified: a promote killed before
        # that leaves a config that says where prod was, and `bluegreen recover` finishes it.
        update = session.up(step.changes, step.message, record=False)
        problem = _verified(session, step.slot, update)
        if problem:
            say(f"==> verification failed: {problem}")
            say(f"==> automatic rollback: prod back to {previous}")
            session.journal.phase("rollback")
            _rollback(session, step.slot, previous, problem)
        session.journal.phase("record")
        session.stack.record(step.changes)


def _rollback(session: Session, slot: str, previous: str, problem: str) -> NoReturn:
    """Prod back to `previous` (the stack config's slot: the flip was not recorded) with an update,
    after what made the flip fail is out of its way: the API server waited for, a Helm revision the
    failed update left pending removed and Helm rolled back (as `bluegreen recover` does, for Helm
    refuses any upgrade while a revision is pending), the state refreshed after that."""
    done = session.report.setdefault("actions", [])
    failed = f"promotion of {slot} failed ({problem})"
    try:
        wait_for_api_server(session, done)
        if settle_helm(session, done):
            refresh(session, done)
    except (Failed, helm.HelmError, KubeError) as error:
        raise Failed(f"{failed}; ROLLBACK NOT RUN: {error}\nProd may serve {slot}; once the cause is fixed: "
                     f"bluegreen recover (puts prod back to {previous}, the stack config's slot)") from None
    back = session.up({}, f"bluegreen promote: automatic rollback to {previous} ({problem})"[:500])
    if not back.ok:
        raise Failed(f"{failed}; ROLLBACK FAILED: {tail(back.error)}\nbluegreen recover puts prod back to {previous}")
    done.append(f"pulumi up: prod back to {previous}")
    still = verify_serving(session.kube, session.names, "prod", previous)
    raise Failed(f"{failed}; " + (f"rolled back, prod serves {previous}" if not still else f"ROLLBACK FAILED: {still}"))


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
    session.reload_config()
    ready, desired = wait_available(session.kube, session.names, grow.slot, 120, say)
    if not desired or ready != desired:
        raise Failed(f"{grow.slot} has {ready}/{desired} available replicas after scaling; prod was not touched")
