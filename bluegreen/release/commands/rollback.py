"""`bluegreen rollback`: prod back to the previous slot, if it still runs. The incident command: it
does the least it can before the flip."""

from __future__ import annotations

import argparse

from .. import steps
from ..session import Failed, Session, tail

NAME = "rollback"
HELP = "flip prod back to the previous slot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(session: Session, args: argparse.Namespace) -> None:
    step = session.plan(steps.rollback(session.settings))
    diff = session.diff_in_background(step.changes)  # worked out while the cluster is checked
    session.require_true_cluster(NAME)
    session.require_available(step.slot, "roll back")
    session.show_diff(diff)
    with session.watch_prod():
        update = session.up(step.changes, step.message)
        if not update.ok:
            raise Failed(f"pulumi up failed: {tail(update.error)}")
        session.expect_serving("prod", step.slot)
