"""`bluegreen status`: where prod and stage are, and the cluster checked against what the stack
deployed. Prod is the slot the prod Service selects in the cluster, never only what the config says.
Read-only: never blocked by a lock."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from ...config import parse
from ...contract import SLOTS, Problem, other_slot, selected_slot
from .. import drift, steps
from ..checks import slot_readiness
from ..journal import UNCHANGED, Entry
from ..session import Drifted, Failed, Session, listed

NAME = "status"
HELP = "the prod and stage slots, readiness, history, and what differs from the stack"
READ_ONLY = True


def run(session: Session, args: argparse.Namespace) -> None:
    state = read_state(session)
    entry = session.journal.interrupted()
    found = [interrupted(session, entry)] if entry else []
    truth = session.truth()
    if truth is None:
        state.update(serving=False, drift=[asdict(p) for p in found], pending=[])
        raise Failed(f"{session.never_deployed()}" + (f"\n{listed(found)}" if found else ""))
    found += truth.found
    # A command cut off in its update may have moved prod before the state says so: prod serves if
    # it serves the slot it selects (that slot is what the state shows as prod, and recover settles it).
    serving = truth.serving or bool(entry and drift.serving_slot(truth.cluster))
    state.update(serving=serving, drift=[asdict(p) for p in found], pending=session.pending(truth.deployed))
    if not serving:
        raise Failed(f"prod does not serve {truth.deployed.production_slot}:\n{listed(found)}")
    if found:
        raise Drifted(f"{len(found)} difference(s) between the cluster and what the stack deployed:\n{listed(found)}")


def interrupted(session: Session, entry: Entry) -> Problem:
    """An interrupted command, what it left, and the one command that finishes it or puts it back."""
    deployed = session.stack.deployed_values(session.names.app)
    if entry.phase in UNCHANGED:
        left, fix = "it had changed nothing", "bluegreen recover (clears its record)"
    elif entry.phase != "rollback" and steps.reached(deployed, entry.changes):
        edits = ", ".join(f"{path}={value}" for path, value in entry.changes.items())
        left = f"its update reached the cluster ({edits}), but the stack config does not say so yet"
        fix = "bluegreen recover (checks that prod serves, then writes it into the stack config)"
    else:
        left = "its update may have been cut off mid-way (a stack lock, a pending Helm revision)"
        fix = "bluegreen recover (clears them and puts the cluster back to the stack config)"
    return Problem(f"`bluegreen {entry.command}`", f"(pid {entry.pid}, started {entry.started}) was interrupted "
                   f"during its {entry.phase} phase: {left}", fix)


def read_state(session: Session) -> dict[str, Any]:
    """The state a command leaves behind, read afresh, into the report."""
    stack, kube, names = session.stack, session.kube, session.names
    settings = parse(stack.raw_config())
    outputs = stack.outputs(names.app)
    records = _try(lambda: kube.helm_releases(names.namespace, names.app), [])
    serving = _try(lambda: selected_slot(kube.service(names.namespace, names.service("prod"))), None)
    prod = serving or outputs.get("productionSlot") or settings.production_slot
    slots = {}
    for slot in SLOTS:
        config = settings.slot(slot)
        ready, desired = _try(lambda s=slot: slot_readiness(kube, names, s), (None, None))
        slots[slot] = {"role": "prod" if slot == prod else "stage", "enabled": config.enabled,
                       "image": config.image if config.enabled else None, "ready": ready, "desired": desired}
    session.report["state"] = state = {
        "productionSlot": prod, "stageSlot": other_slot(prod),
        "servingChecked": serving is not None,
        "configProductionSlot": settings.production_slot,
        "deployedProductionSlot": outputs.get("productionSlot"),
        "slots": slots,
        "release": {"name": names.app, "namespace": names.namespace,
                    "revision": records[0]["revision"] if records else outputs.get("revision"),
                    "status": records[0]["status"] if records else outputs.get("status")},
        "urls": {"prod": outputs.get("prodUrl"), "stage": outputs.get("stageUrl")},
        "history": _try(lambda: stack.history(5), []),
    }
    return state


def _try(fn, default):
    try:
        return fn()
    except Exception:  # status shows what it can; an unreachable cluster is not fatal
        return default
