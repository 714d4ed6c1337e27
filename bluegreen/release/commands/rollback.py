"""`bluegreen rollback`: prod back to the previous slot, if it still runs. The incident command: it
does the least it can before the flip, and its update starts while that is checked."""

from __future__ import annotations

import argparse

from .. import steps
from ..session import Failed, Session, tail

NAME = "rollback"
HELP = "flip prod back to the previous slot"


def run(session: Session, args: argparse.Namespace) -> None:
    step = session.plan(steps.rollback(session.settings))
    diff = session.diff_in_background(step.changes)  # worked out while the cluster is checked
    with session.update_ahead(step.changes, step.message) as update:
        session.require_true_cluster(NAME)
        session.require_available(step.slot, "roll back")
        session.show_diff(diff)
        with session.watch_prod():
            done = update()
            if not done.ok:
                raise Failed(f"pulumi up failed: {tail(done.error)}")
            session.expect_serving("prod", step.slot)
