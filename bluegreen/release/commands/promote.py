"""`bluegreen promote`: stage checked, a preview that may show only the flip, the flip, prod verified;
on any failure after the flip, prod goes back to the previous slot by itself."""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import time

from ...config import parse
from .. import steps
from ..checks import (
    CHECK_EVERY_DEFAULT,
    CHECK_FOR_DEFAULT,
    METRICS_ENV,
    SETTLE_SECONDS,
    Window,
    parse_duration,
    parse_percent,
    verify_serving,
    wait_available,
)
from ..session import Failed, Session, tail
from ..stacks import Run, say

NAME = "promote"
HELP = "check the stage, flip prod to it, verify"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check-url", help="GET this URL, expect 2xx; {url} is the stage (then prod) URL")
    parser.add_argument("--check-cmd", help="run this shell command, expect exit 0; BLUEGREEN_TARGET=stage|prod")
    parser.add_argument("--check-for", default=CHECK_FOR_DEFAULT, metavar="DURATION",
                        help="repeat the checks for this long against stage before the flip and against prod "
                        f"after it (e.g. 30s, 2m; default {CHECK_FOR_DEFAULT}: once)")
    parser.add_argument("--check-every", default=CHECK_EVERY_DEFAULT, metavar="INTERVAL",
                        help=f"one round of checks this often within --check-for (default {CHECK_EVERY_DEFAULT})")
    parser.add_argument("--max-error-rate", metavar="PCT",
                        help="at most this percentage of 5xx answers per round, from the ingress controller's "
                        "request metrics for the stage (then prod) Service; needs --check-for")
    parser.add_argument("--metrics-url", help="the ingress controller's Prometheus metrics (Traefik's "
                        f"traefik_service_requests_total); default ${METRICS_ENV}")
    parser.add_argument("--keep-stage-size", action="store_true",
                        help="flip to the stage slot as it is, even when it runs fewer replicas than prod")


def window(args: argparse.Namespace) -> Window:
    """The checks' window from the command line; a refusal naming the flag when a value is not allowed."""
    try:
        seconds = parse_duration("--check-for", args.check_for)
        every = parse_duration("--check-every", args.check_every, minimum=1.0)
        rate = None if args.max_error_rate is None else parse_percent("--max-error-rate", args.max_error_rate)
    except ValueError as error:
        raise steps.Refused(str(error)) from error
    metrics_url = args.metrics_url or os.environ.get(METRICS_ENV) or None
    if rate is not None and not seconds:
        raise steps.Refused("--max-error-rate needs --check-for (the window the ingress metrics are read over, "
                            "e.g. --check-for 30s): a rate is a difference between two scrapes")
    if rate is not None and not metrics_url:
        raise steps.Refused(f"--max-error-rate needs the ingress controller's metrics: --metrics-url is not given "
                            f"and ${METRICS_ENV} is not set (scripts/activate sets it for the local cluster; "
                            "elsewhere: --metrics-url http://HOST:PORT/metrics, Traefik's Prometheus endpoint)")
    if seconds and not (args.check_url or args.check_cmd or rate is not None):
        raise steps.Refused(f"--check-for is {args.check_for!r}, but there is nothing to check: add --check-url, "
                            "--check-cmd or --max-error-rate")
    if seconds and every > seconds:
        raise steps.Refused(f"--check-every is {args.check_every!r}; allowed: at most --check-for "
                            f"({args.check_for})")
    return Window(seconds, every, rate, metrics_url if rate is not None else None)


def run(session: Session, args: argparse.Namespace) -> None:
    checks = window(args)
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
        session.smoke("stage", step.slot, window=checks)
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
        problem = _verified(session, step.slot, update, checks)
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


def _preview(session: Session, step: steps.Step) -> Run:
    say("==> preview: only productionSlot and what follows from it may change")
    session.journal.phase("preview")
    return session.stack.preview(step.changes)


def _verified(session: Session, slot: str, update, checks: Window) -> str | None:
    """None when the update succeeded, prod selects `slot` with exactly its ready pods, and the
    user's checks pass against prod; otherwise what failed."""
    if not update.ok:
        return f"pulumi up failed: {tail(update.error)}"
    problem = verify_serving(session.kube, session.names, "prod", slot)
    if problem:
        return problem
    failures = session.smoke("prod", slot, raise_on_failure=False, window=checks,
                             settle_until=time.monotonic() + SETTLE_SECONDS)
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
