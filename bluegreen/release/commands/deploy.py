"""`bluegreen deploy IMAGE`: the image into the idle slot, enabled; prod is untouched (and watched).
`bluegreen deploy --from-stack SOURCE`: the same with what serves prod on stack SOURCE, pinned by
the digest its pods run (carry.py reads and checks SOURCE)."""

from __future__ import annotations

import argparse

from .. import carry, steps
from ..checks import wait_available
from ..session import Failed, Session, tail
from ..stacks import say

NAME = "deploy"
HELP = "deploy IMAGE (or what serves prod on --from-stack SOURCE) into the idle slot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", nargs="?", help="the image reference (registry/name:tag or ...@sha256:...)")
    parser.add_argument("--replace", action="store_true", help="replace a release that is already staged")
    parser.add_argument("--replicas", type=int, help="replica count of the new slot")
    parser.add_argument("--from-stack", metavar="SOURCE",
                        help="deploy the image that serves prod on stack SOURCE (e.g. staging), pinned by the "
                             "digest its pods run")
    parser.add_argument("--from-kubeconfig", metavar="PATH",
                        help="with --from-stack: the kubeconfig of SOURCE's cluster (default: this stack's)")
    parser.add_argument("--min-age", type=carry.duration, metavar="DURATION",
                        help=f"with --from-stack: SOURCE's prod must have served at least this long since its "
                             f"promotion; {carry.DURATION_ALLOWED}; default 0")


check_arguments = carry.check_arguments  # IMAGE or --from-stack, and its flags only with it


def run(session: Session, args: argparse.Namespace) -> None:
    image, origin = args.image, ""
    if args.from_stack:
        say(f"==> precondition: what serves prod on stack {args.from_stack}")
        source = carry.read_source(session, args)
        session.report["source"] = source.as_json()
        carry.refuse_same_image(session, source)
        image, origin = source.image.reference, source.origin
        say(f"    {source.origin}")
    step = session.plan(steps.deploy(session.settings, image, replace=args.replace, replicas=args.replicas,
                                     origin=origin))
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
            session.up({}, f"bluegreen deploy: reconcile after the failed deploy of {image}")
            raise Failed(f"pulumi up failed; {step.slot} was not deployed and prod stays on {prod}.\n"
                         f"{tail(update.error)}")
        say(f"==> waiting for {step.slot} to be Available")
        ready, desired = wait_available(session.kube, session.names, step.slot, 60, say)
        if ready != desired:
            raise Failed(f"{step.slot} has {ready}/{desired} available replicas")
        session.expect_serving("prod", prod)
        session.expect_serving("stage", step.slot)
