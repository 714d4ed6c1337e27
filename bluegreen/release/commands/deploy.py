"""`bluegreen deploy IMAGE`: the image into the idle slot, enabled; prod is untouched (and watched)."""

from __future__ import annotations

import argparse

from .. import steps
from ..checks import wait_available
from ..session import Failed, Session, tail
from ..stacks import say

NAME = "deploy"
HELP = "deploy IMAGE into the idle slot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image")
    parser.add_argument("--replace", action="store_true", help="replace a release that is already staged")
    parser.add_argument("--replicas", type=int, help="replica count of the new slot")


def run(session: Session, args: argparse.Namespace) -> None:
    step = session.plan(steps.deploy(session.settings, args.image, replace=args.replace, replicas=args.replicas))
    diff = session.diff_in_background(step.changes)  # worked out while the cluster is checked
    session.require_true_cluster(NAME)
    prod = session.settings.production_slot
    session.show_diff(diff)
    with session.watch_prod():
        update = session.up(step.changes, step.message)
        if not update.ok:
            # Helm's atomic upgrade rolled the release back; the stack config was never changed. An
            # update with it brings the stack's state in line with the release again.
            say("==> the update failed (Helm rolled the release back); reconciling with the stack config")
            session.up({}, f"bluegreen deploy: reconcile after the failed deploy of {args.image}")
            raise Failed(f"pulumi up failed; {step.slot} was not deployed and prod stays on {prod}.\n"
                         f"{tail(update.error)}")
        say(f"==> waiting for {step.slot} to be Available")
        ready, desired = wait_available(session.kube, session.names, step.slot, 60, say)
        if ready != desired:
            raise Failed(f"{step.slot} has {ready}/{desired} available replicas")
        session.expect_serving("prod", prod)
        session.expect_serving("stage", step.slot)
