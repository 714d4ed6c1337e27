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
from ..session import App, Drifted, Failed, Session, listed
from ..stacks import HISTORY_SHOWN

NAME = "status"
HELP = "the prod and stage slots, readiness, history, and what differs from the stack"
READ_ONLY = True
SEVERAL = True  # --app repeated, or --all: each app's status


def run(session: Session, args: argparse.Namespace) -> None:
    failures = []
    for app in session.apps:
        try:
            _status(session, app, session.journal.interrupted(app.names.app))
        except Failed as failure:  # each app's status is read; the worst decides the exit code
            failures.append((app, failure))
    if len(session.apps) == 1 and failures:
        raise failures[0][1]
    if failures:
        worst = Drifted if all(isinstance(failure, Drifted) for _, failure in failures) else Failed
        for app, failed in failures:
            app.report.update(ok=False, error=str(failed))
        raise worst("\n".join(f"app {app.label}: {failed}" for app, failed in failures))


def _status(session: Session, app: App, entry: Entry | None) -> None:
    state = read_state(session, app)
    if app.label:
        app.report["ok"] = True  # unless it fails below
    found = [interrupted(session, entry, app)] if entry else []
    truth = app.truth()
    if truth is None:
        state.update(serving=False, drift=[asdict(p) for p in found], pending=[])
        raise Failed(f"{app.never_deployed()}" + (f"\n{listed(found)}" if found else ""))
    found += truth.found
    # A command cut off in its update may have moved prod before the state says so: prod serves if
    # it serves the slot it selects (that slot is what the state shows as prod, and recover settles it).
    serving = truth.serving or bool(entry and drift.serving_slot(truth.cluster))
    state.update(serving=serving, drift=[asdict(p) for p in found], pending=app.pending(truth.deployed))
    if not serving:
        raise Failed(f"prod does not serve {truth.deployed.production_slot}:\n{listed(found)}")
    if found:
        raise Drifted(f"{len(found)} difference(s) between the cluster and what the stack deployed:\n{listed(found)}")


def interrupted(session: Session, entry: Entry, app: App | None = None) -> Problem:
    """An interrupted command, what it left, and the one command that finishes it or puts it back.
    One that changed several apps in one update is said of all of them (`recover` takes them together)."""
    app = app or session.app
    every = entry.apps or {entry.app: entry.changes}
    reached = all(steps.reached(session.stack.deployed_values(name), changes) for name, changes in every.items())
    recover = "bluegreen recover" + (f" --app {app.label}" if app.label else "")
    several = f" (apps {', '.join(every)}, in one update)" if entry.apps else ""
    if entry.phase in UNCHANGED:
        left, fix = "it had changed nothing", f"{recover} (clears its record)"
    elif entry.phase != "rollback" and reached:
        edits = ", ".join(f"{name + ':' if entry.apps else ''}{path}={value}"
                          for name, changes in every.items() for path, value in changes.items())
        left = f"its update reached the cluster ({edits}), but the stack config does not say so yet"
        fix = f"{recover} (checks that prod serves, then writes it into the stack config)"
    else:
        left = "its update may have been cut off mid-way (a stack lock, a pending Helm revision)"
        fix = f"{recover} (clears them and puts the cluster back to the stack config)"
    return Problem(f"`bluegreen {entry.command}`{several}", f"(pid {entry.pid}, started {entry.started}) was "
                   f"interrupted during its {entry.phase} phase: {left}", fix)


def read_state(session: Session, app: App | None = None) -> dict[str, Any]:
    """The state a command leaves behind (of `app`, by default the command's one app), read afresh,
    into the report."""
    app = app or session.app
    stack, kube, names = session.stack, session.kube, app.names
    settings = parse(stack.keys_of(app.name))
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
    app.report["state"] = state = {
        "productionSlot": prod, "stageSlot": other_slot(prod),
        "servingChecked": serving is not None,
        "configProductionSlot": settings.production_slot,
        "deployedProductionSlot": outputs.get("productionSlot"),
        "slots": slots,
        "release": {"name": names.app, "namespace": names.namespace,
                    "revision": records[0]["revision"] if records else outputs.get("revision"),
                    "status": records[0]["status"] if records else outputs.get("status")},
        "urls": {"prod": outputs.get("prodUrl"), "stage": outputs.get("stageUrl")},
        "history": _try(lambda: stack.history(HISTORY_SHOWN, app.name), []),
    }
    return state


def _try(fn, default):
    try:
        return fn()
    except Exception:  # status shows what it can; an unreachable cluster is not fatal
        return default
