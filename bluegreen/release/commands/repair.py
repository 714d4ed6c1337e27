"""`bluegreen repair`: the cluster brought back to what the stack deployed, without changing the
stack config: a Helm upgrade with the deployed values for objects deleted or edited by hand, or a
refresh and an update for a wiped namespace or cluster; checked again after."""

from __future__ import annotations

import argparse

from ...values import CHART_DIR
from .. import helm, steps
from ..session import Failed, Session, listed, tail
from ..stacks import say
from .recover import remove_orphans

NAME = "repair"
HELP = "bring the cluster back to what the stack deployed"


def run(session: Session, args: argparse.Namespace) -> None:
    session.refuse_if_interrupted(NAME)
    truth = session.truth()
    done = session.report.setdefault("actions", [])
    if truth is None:
        lost = session.never_deployed()
        if "has not deployed anything yet" in lost.problem:
            raise steps.Refused(str(lost))
        say(f"==> {lost.subject} {lost.problem}")
        _redeploy(session, done)
    elif truth.serving and not truth.found:
        say("==> nothing to repair: the cluster is what the stack deployed")
        return
    else:
        say(f"==> the cluster differs from what the stack deployed:\n{listed(truth.found)}")
        if not truth.cluster.namespace or truth.cluster.release is None:
            pending = session.pending(truth.deployed)
            if pending:
                raise steps.Refused("the stack config has changes that were never deployed (" + ", ".join(pending)
                                    + "), and `pulumi up` would deploy them too; deploy them (pulumi up) or put the "
                                    "config back first")
            _redeploy(session, done)
        else:
            names = session.names
            say(f"==> plan: helm upgrade {names.app} with the values the stack deployed (recreates deleted objects, "
                "puts hand-edited fields back), then pulumi refresh")
            helm.upgrade(names.app, CHART_DIR, names.namespace, dict(truth.deployed.values),
                         session.settings.helm_timeout_seconds)
            done.append(f"helm upgrade {names.app} with the deployed values")
            remove_orphans(session, dict(truth.deployed.values), done)
            _refresh(session, done)
    session.require_true_cluster(NAME, settle_seconds=60, why="still differs after the repair", refuse=False)
    say("==> repaired: the cluster is what the stack deployed")


def _redeploy(session: Session, done: list[str]) -> None:
    say("==> plan: pulumi refresh (the stack learns what is gone), then pulumi up (recreates it)")
    _refresh(session, done)
    update = session.stack.up({}, "bluegreen repair: redeploy what the stack deployed")
    if not update.ok:
        raise Failed(f"pulumi up failed: {tail(update.error)}")
    done.append("pulumi up recreated the release")


def _refresh(session: Session, done: list[str]) -> None:
    refreshed = session.stack.refresh()
    if not refreshed.ok:
        raise Failed(f"pulumi refresh failed: {tail(refreshed.error)}")
    done.append("refreshed")
