"""`bluegreen retire`: the old slot's Deployment removed (the article's optional delete), or scaled down."""

from __future__ import annotations

import argparse

from ...contract import SLOTS
from .. import steps
from ..session import Failed, Session, tail

NAME = "retire"
HELP = "remove (or scale down) the old slot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slot", choices=SLOTS, help="default: the non-production slot")
    parser.add_argument("--keep-replicas", type=int, help="scale down to N instead of removing")


def run(session: Session, args: argparse.Namespace) -> None:
    step = session.plan(steps.retire(session.settings, slot=args.slot, keep_replicas=args.keep_replicas))
    diff = session.diff_in_background(step.changes)  # worked out while the cluster is checked
    session.require_true_cluster(NAME)
    session.show_diff(diff)
    with session.watch_prod():
        update = session.up(step.changes, step.message)
        if not update.ok:
            raise Failed(f"pulumi up failed: {tail(update.error)}")
        session.expect_serving("prod", session.settings.production_slot)
