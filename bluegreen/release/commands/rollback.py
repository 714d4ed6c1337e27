"""`bluegreen rollback`: prod back to the previous slot, if it still runs. The incident command: it
does the least it can before the flip, and its update starts while that is checked. Several apps
(--app repeated, --all) go back in one update."""

from __future__ import annotations

import argparse

from .. import steps
from ..session import Failed, Session, tail

NAME = "rollback"
HELP = "flip prod back to the previous slot"
SEVERAL = True  # --app repeated, or --all: every app flipped back in one update


def run(session: Session, args: argparse.Namespace) -> None:
    planned = session.plan_all([(app, steps.rollback(app.settings)) for app in session.apps])
    diffs = [app.diff_in_background(step.changes) for app, step in planned]  # worked out while the cluster is checked
    with session.update_ahead(session.changes(planned), session.message(planned)) as update:
        for app, step in planned:
            app.require_true_cluster(NAME)
            app.require_available(step.slot, "roll back")
        for (app, _), diff in zip(planned, diffs, strict=True):
            app.show_diff(diff)
        with session.watch_every_prod():
            done = update()
            if not done.ok:
                raise Failed(f"pulumi up failed: {tail(done.error)}")
            for app, step in planned:
                app.expect_serving("prod", step.slot)
