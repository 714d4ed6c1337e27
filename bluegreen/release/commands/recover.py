"""`bluegreen recover`: after an interrupted update or release command. Clears the stack lock a
killed update left (`pulumi cancel`) and a Helm release left pending-* (pulumi-kubernetes #2054),
then finishes an interrupted release command or puts it back. Run it only when no update runs.
One that changed several apps in one update (`promote --app api --app web`) is finished or put back
for all of them, whichever of its apps --app names (its journal entry lists them)."""

from __future__ import annotations

import argparse

from ...contract import SLOTS
from .. import helm, steps
from ..journal import UNCHANGED, Entry, Journal
from ..locks import alive_here, held_by
from ..session import App, Failed, Session, tail
from ..stacks import say

NAME = "recover"
HELP = "after an interrupted update or command: clear the lock and a pending Helm revision, finish or undo it"


def run(session: Session, args: argparse.Namespace) -> None:
    running = [lock for lock in session.stack.locks() or [] if alive_here(lock)]
    if running:  # an update that is alive is not interrupted: clearing its lock would break it
        raise held_by(running, session.stack.name)
    entry = session.journal.interrupted()
    if entry:
        say(f"==> {entry.describe()}")
    done = session.report.setdefault("actions", [])
    # A killed `pulumi up` leaves its lock behind (self-managed backends); only a dead update
    # may be cancelled, which is why `recover` is run by hand, when no update is running.
    say("==> clearing the lock a killed update left (pulumi cancel)")
    session.stack.cancel()
    done.append("cancelled any stale update lock")
    # A command that changed several apps in one update is finished or put back for all of them.
    apps = [session.app] + [App(session, name, session.report) for name in (entry.apps if entry else {})
                            if name != session.names.app]
    pending = any([_settle_helm(session, app, done) for app in apps])
    cleared = session.stack.clear_pending_operations()
    if cleared:
        say(f"==> cleared {cleared} pending operation(s) from the Pulumi state")
        done.append(f"cleared {cleared} pending operation(s)")
    refreshed = session.stack.refresh()
    if not refreshed.ok:
        raise Failed(f"pulumi refresh failed: {tail(refreshed.error)}")
    done.append("refreshed")
    if entry:
        _finish(session, entry, apps, done)
        session.journal.end()
        Journal(session.stack.project_dir, session.stack.name, *(app.names.app for app in apps)).end()
    elif not pending and not cleared:
        say("==> nothing was pending; the release is healthy")


def _settle_helm(session: Session, app: App, done: list[str]) -> bool:
    """Remove the records an interrupted update left pending and roll back to the last settled
    revision; whether there were any."""
    names = app.names
    records = session.kube.helm_releases(names.namespace, names.app)
    pending = [r for r in records if r["status"].startswith("pending-")]
    settled = [r for r in records if not r["status"].startswith("pending-")]
    say(f"==> Helm release {names.app}: " + (", ".join(f"v{r['revision']} {r['status']}" for r in records)
                                              or "no records"))
    if not pending:
        return False
    if not settled:
        raise Failed("the release never got past its first install; remove it with pulumi destroy and deploy again")
    for record in pending:
        say(f"==> removing the pending record v{record['revision']} ({record['status']})")
        helm.delete_record(session.kube, names, record)
        done.append(f"removed pending v{record['revision']}")
    last_good = settled[0]["revision"]
    say(f"==> helm rollback {names.app} {last_good}")
    helm.rollback(names.app, last_good, names.namespace, app.settings.helm_timeout_seconds)
    done.append(f"rolled back to v{last_good}")
    rolled_back = helm.newest_release(session.kube, names)
    remove_orphans(session, rolled_back["values"] if rolled_back else {}, done, app)
    return True


def _finish(session: Session, entry: Entry, apps: list[App], done: list[str]) -> None:
    """An interrupted release command: nothing to do when it had changed nothing; its changes
    written into the stack config when its update got through (and prod serves); otherwise the
    cluster put back to the stack config, which the command had not changed yet. For a command
    that changed several apps in one update: when it got through for every one of them."""
    every = entry.apps or {entry.app: entry.changes}
    edits = [(app, every.get(app.names.app, {})) for app in apps]
    deployed = {app: session.stack.deployed_values(app.names.app) for app in apps}
    if entry.phase in UNCHANGED:
        done.append(f"the interrupted {entry.command} had changed nothing")
    elif entry.phase != "rollback" and all(steps.reached(deployed[app], changes) for app, changes in edits):
        serves = []
        for app, _ in edits:
            production = (deployed[app] or {}).get("productionSlot", app.settings.production_slot)
            app.expect_serving("prod", production)
            serves.append(f"{app.names.app + ' ' if entry.apps else ''}{production}")
        recorded = edits[0][1] if len(edits) == 1 else \
            {key: value for app, changes in edits for key, value in app.keys(changes).items()}
        session.stack.record(recorded)
        done.append(f"finished the interrupted {entry.command}: prod serves {', '.join(serves)}; recorded "
                    + ", ".join(f"{key}={value}" for key, value in recorded.items()))
        if entry.command == "promote":
            say("==> the promotion's checks against prod did not run: run yours now; `bluegreen rollback` undoes it")
    else:
        say(f"==> putting the cluster back to the stack config (the interrupted {entry.command} had not recorded "
            "its changes)")
        update = session.stack.up({}, f"bluegreen recover: undo the interrupted {entry.command}")
        if not update.ok:
            raise Failed(f"pulumi up failed: {tail(update.error)}")
        done.append(f"put back the interrupted {entry.command}")


def remove_orphans(session: Session, values: dict, done: list[str], app: App | None = None) -> None:
    """Delete the Deployments of slots that `values` retire but that still exist: objects of an
    update whose Helm record is gone (removed by recover), which no Helm upgrade or rollback will
    ever delete, since no revision has them any more. `app`: by default the command's one app."""
    names = (app or session.app).names
    for slot in SLOTS:
        if (values.get(slot) or {}).get("enabled"):
            continue
        name = names.deployment(slot)
        found = session.kube.deployment(names.namespace, name)
        if found and found["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == names.app:
            say(f"==> deleting Deployment {name}: {slot} is retired and no Helm revision has it any more")
            session.kube.request("DELETE", f"/apis/apps/v1/namespaces/{names.namespace}/deployments/{name}")
            done.append(f"deleted the orphaned Deployment {name}")
