"""`bluegreen promote`: stage checked, a preview that may show only the flip, the flip, prod verified;
on any failure after the flip, prod goes back to the previous slot by itself. The flip's update
starts while the checks and the preview run, and waits for them. Several apps (--app repeated,
--all): every app's flip in that one update, and all of them back together."""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import time
from typing import NoReturn

from .. import helm, steps
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
from ..kube import KubeError
from ..session import App, Failed, Session, tail
from ..stacks import Run, say
from .recover import refresh, settle_helm, wait_for_api_server

NAME = "promote"
HELP = "check the stage, flip prod to it, verify"
SEVERAL = True  # --app repeated, or --all: every app flipped in one update, and back together


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
    planned = session.plan_all([(app, steps.promote(app.settings)) for app in session.apps])
    previous = {app: app.settings.production_slot for app, _ in planned}
    sizes = [] if args.keep_stage_size else [(app, steps.stage_at_prod_size(app.settings)) for app, _ in planned]
    grow = [(app, step) for app, step in sizes if step]
    changes, message = session.changes(planned), session.message(planned)
    if grow:  # the stages grow in an update of their own first; the flip's update starts after it
        for app, step in planned:
            app.require_true_cluster(NAME)
            app.require_available(step.slot, NAME)
        _scale_stage(session, grow)
    diffs = [app.diff_in_background(step.changes) for app, step in planned]
    # The flip's update (of every app) starts now and waits for the checks, the preview and the
    # diffs, which run side by side: none of them changes anything, and a refusal ends the update unchanged.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="preview") as background, \
            session.update_ahead(changes, message, record=False) as update:
        previewing = background.submit(_preview, session, changes)
        if not grow:
            for app, step in planned:
                app.require_true_cluster(NAME)
                app.require_available(step.slot, NAME)
        for app, step in planned:
            app.smoke("stage", step.slot, window=checks)
        preview = previewing.result()
        _guard([(app, app.show_diff(diff)) for (app, _), diff in zip(planned, diffs, strict=True)], preview)
        with session.watch_every_prod():
            # The stack config records the flip only once prod is verified: a promote killed before
            # that leaves a config that says where prod was, and `bluegreen recover` finishes it.
            problem = _verified(planned, update(), checks)
            if problem:
                _roll_back(session, planned, previous, problem)
            session.journal.phase("record")
            session.stack.record(changes)


def _guard(objects: list[tuple[App, list | None]], preview: Run) -> None:
    """Refuse when an app's object diff or the preview shows anything beyond the flips."""
    for app, found in objects:
        beyond = steps.unexpected_objects(found, app.names) if found else []
        if beyond:
            raise steps.Refused(f"the update would change more objects{app.of()} than the flip does (a chart edit "
                                "in the checkout, or drift):\n" + "\n".join(f"- {line}" for line in beyond)
                                + "\nReview it (bluegreen diff), deploy it into the idle slot or with a reviewed "
                                "pulumi up, then promote")
    unexpected = steps.unexpected_changes([(c.type, c.op, c.paths) for c in preview.changes])
    if not preview.ok or unexpected:
        reason = preview.error if not preview.ok else "; ".join(unexpected)
        raise steps.Refused(f"the preview shows more than the flip: {reason}\n{preview.output}")


def _roll_back(session: Session, planned: list[tuple[App, steps.Step]], previous: dict[App, str],
               problem: str) -> NoReturn:
    """Every app of the promotion back to its previous slot, in one update (the stack config still
    says where prod was), checked; then the promotion fails, saying so. First what made the flip
    fail is put out of the update's way: the API server waited for, a Helm revision the failed update
    left pending removed and Helm rolled back (as `bluegreen recover` does, for Helm refuses any
    upgrade while a revision is pending), the state refreshed after that."""
    say(f"==> verification failed: {problem}")
    slots = ", ".join(f"{app.label}: {previous[app]}" if session.several else previous[app] for app, _ in planned)
    promoted = ", ".join(f"{app.label} ({step.slot})" if session.several else step.slot for app, step in planned)
    failed = f"promotion of {promoted} failed ({problem})"
    say(f"==> automatic rollback{' of every app, in one update' if session.several else ''}: prod back to {slots}")
    session.journal.phase("rollback")
    done = session.report.setdefault("actions", [])
    try:
        wait_for_api_server(session, done)
        if any([settle_helm(session, app, done) for app, _ in planned]):
            refresh(session, done)
    except (Failed, helm.HelmError, KubeError) as error:
        raise Failed(f"{failed}; ROLLBACK NOT RUN: {error}\nProd may serve the new slot; once the cause is fixed: "
                     f"bluegreen recover (puts prod back to {slots}, the stack config's)") from None
    label = f"bluegreen promote of {', '.join(str(app.label) for app, _ in planned)}" if session.several \
        else "bluegreen promote"
    back = session.up({}, f"{label}: automatic rollback to {slots} ({problem})"[:500])
    if not back.ok:
        raise Failed(f"{failed}; ROLLBACK FAILED: {tail(back.error)}\nbluegreen recover puts prod back to {slots}")
    done.append(f"pulumi up: prod back to {slots}")
    left = [f"{app.tag()}{still}" for app, _ in planned
            if (still := verify_serving(session.kube, app.names, "prod", previous[app]))]
    raise Failed(f"{failed}; " + (("rolled back all of them in one update, prod serves " if session.several
                                   else "rolled back, prod serves ") + slots if not left
                                  else f"ROLLBACK FAILED: {'; '.join(left)}"))


def _preview(session: Session, changes: dict) -> Run:
    say("==> preview: only productionSlot and what follows from it may change")
    session.journal.phase("preview")
    return session.stack.preview(changes)


def _verified(planned: list[tuple[App, steps.Step]], update: Run, checks: Window) -> str | None:
    """None when the update succeeded, each app's prod selects its new slot with exactly its ready
    pods, and the user's checks pass against each prod; otherwise what failed (of every app)."""
    if not update.ok:
        return f"pulumi up failed: {tail(update.error)}"
    problems = []
    for app, step in planned:
        problem = verify_serving(app.kube, app.names, "prod", step.slot)
        if problem:
            problems.append(f"{app.tag()}{problem}")
            continue
        problems += app.smoke("prod", step.slot, raise_on_failure=False, window=checks,
                              settle_until=time.monotonic() + SETTLE_SECONDS)
    return "; ".join(problems) or None


def _scale_stage(session: Session, grow: list[tuple[App, steps.Step]]) -> None:
    """Each stage slot at its prod's size, Available, before the flip: an update of its own, prod untouched."""
    for app, step in grow:
        say(f"==> {app.tag()}{step.summary}")
    with session.watch_every_prod():
        update = session.up(session.changes(grow), session.message(grow))
    if not update.ok:
        raise Failed(f"scaling stage to prod's size failed; prod was not touched.\n{tail(update.error)}")
    for app, step in grow:
        app.reload()
        ready, desired = wait_available(app.kube, app.names, step.slot, 120, say)
        if not desired or ready != desired:
            raise Failed(f"{app.tag()}{step.slot} has {ready}/{desired} available replicas after "
                         "scaling; prod was not touched")
