"""`bluegreen recover`: after an interrupted update or release command. Clears the stack lock a
killed update left (`pulumi cancel`) and, once the API server is ready, a Helm release left
pending-* (pulumi-kubernetes #2054), then finishes an interrupted release command or puts it back,
then deploys the stack config where the state still differs from it (only where the cluster
already holds it, or nothing in the cluster changes: otherwise it says `pulumi up` is needed), and
checks the cluster against the stack. Run it only when no update runs. One that changed several
apps in one update (`promote --app api --app web`) is finished or put back for all of them,
whichever of its apps --app names (its journal entry lists them). promote's automatic rollback
clears a pending Helm revision with the same steps."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TypeVar

from pulumi import automation as auto

from ...contract import SLOTS
from .. import drift, helm, manifests, steps
from ..checks import API_READY_SECONDS, wait_api_server
from ..journal import UNCHANGED, Entry, Journal
from ..kube import KubeError
from ..locks import alive_here, held_by
from ..session import App, Failed, Session, tail
from ..stacks import say

T = TypeVar("T")
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
    pulumi_step("pulumi cancel", session.stack.cancel)
    done.append("cancelled any stale update lock")
    # A command that changed several apps in one update is finished or put back for all of them.
    apps = [session.app] + [App(session, name, session.report) for name in (entry.apps if entry else {})
                            if name != session.names.app]
    wait_for_api_server(session, done)
    pending = any([settle_helm(session, app, done) for app in apps])
    cleared = pulumi_step("clearing the state's pending operations", session.stack.clear_pending_operations)
    if cleared:
        say(f"==> cleared {cleared} pending operation(s) from the Pulumi state")
        done.append(f"cleared {cleared} pending operation(s)")
    refresh(session, done)
    if entry:
        _finish(session, entry, apps, done)
        session.journal.end()
        Journal(session.stack.project_dir, session.stack.name, *(app.names.app for app in apps)).end()
    deployed = any([_deploy_config(session, app, done) for app in apps])
    if not (entry or pending or cleared or deployed):
        say("==> nothing was pending")
    for app in apps:
        app.require_true_cluster(NAME, settle_seconds=60, why="still differs after recover", refuse=False)
    say("==> recovered: the cluster is what the stack deployed, and the stack config is deployed")


def pulumi_step(what: str, operation: Callable[[], T]) -> T:
    """A Pulumi operation of recover; its failure named (Pulumi's last lines), not a traceback."""
    try:
        return operation()
    except auto.CommandError as error:
        raise Failed(f"{what} failed: {tail(str(error))}") from None


def refresh(session: Session, done: list[str]) -> None:
    refreshed = session.stack.refresh()
    if not refreshed.ok:
        raise Failed(f"pulumi refresh failed: {tail(refreshed.error)}")
    done.append("refreshed")


def wait_for_api_server(session: Session, done: list[str]) -> None:
    """Go on once the API server is ready (/readyz), waiting up to API_READY_SECONDS."""
    say(f"==> the API server is ready? (/readyz; waiting up to {API_READY_SECONDS} s)")
    started = time.monotonic()
    problem = wait_api_server(session.kube, API_READY_SECONDS, say)
    waited = time.monotonic() - started
    if problem:
        done.append(f"waited {waited:.0f} s for the API server: not ready")
        raise Failed(f"the API server is not ready after {waited:.0f} s: {problem}")
    if waited >= 1:
        done.append(f"waited {waited:.0f} s for the API server to be ready")


def settle_helm(session: Session, app: App, done: list[str]) -> bool:
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


def _deploy_config(session: Session, app: App, done: list[str]) -> bool:
    """When the Release's values in the state still differ from the stack config (an update that
    failed or was cut off after Helm applied it, a Helm rollback of a pending revision), the update
    of the stack config. Only where the cluster already holds the config's values for those keys, or
    the update would change no object (a retired slot's image): edits the cluster never had are the
    user's to review and deploy, and recover says so."""
    deployed = session.stack.deployed_values(app.names.app)
    if deployed is None:
        return False  # nothing deployed, or a state that lost its release: the check after says what to do
    pending = app.pending(drift.Deployed(deployed))
    if not pending:
        return False
    release = helm.newest_release(session.kube, app.names)
    config = app.config_values(drift.Deployed(deployed))
    if release is not None and drift.holds(release["values"], config, pending):
        why = f"the cluster holds the config's values (Helm v{release['revision']})"
    else:
        try:
            changes_objects = bool(app.object_diff({}))
        except (helm.HelmError, manifests.ManifestError, KubeError) as error:
            say(f"==> what deploying the stack config changes, object by object: not known ({error})")
            changes_objects = True
        if changes_objects:
            raise Failed("the stack config has changes the cluster never had, for: " + ", ".join(pending)
                         + "; recover does not deploy them. Review them (bluegreen diff), then deploy them: pulumi up")
        why = "deploying it changes no object in the cluster"
    say(f"==> the stack config differs from the state for {', '.join(pending)}, and {why}: pulumi up, so that the "
        "state is the stack config")
    update = session.up({}, f"bluegreen recover: deploy the stack config{app.of()} (" + ", ".join(pending) + ")")
    if not update.ok:
        raise Failed(f"pulumi up failed: {tail(update.error)}\nThe stack config is not deployed yet: pulumi up")
    done.append("pulumi up: deployed the stack config (" + ", ".join(pending) + ")")
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
        for app, _ in edits:
            app.reload()  # what recover deploys after this reads the config as it is now
        done.append(f"finished the interrupted {entry.command}: prod serves {', '.join(serves)}; recorded "
                    + ", ".join(f"{key}={value}" for key, value in recorded.items()))
        # Killed between the Release's step and the component's outputs, the state's outputs still
        # name the old slot (a refresh does not run the program): an update with the recorded config
        # writes them, and changes nothing in the cluster (the Release already holds those values).
        stale = [app for app, _ in edits if session.stack.outputs(app.names.app).get("productionSlot")
                 != (deployed[app] or {}).get("productionSlot")]
        if stale:
            say("==> the stack's outputs still name the old slot: pulumi up with the recorded config")
            update = session.stack.up({}, f"bluegreen recover: finish the interrupted {entry.command} (the outputs)")
            if not update.ok:
                raise Failed(f"pulumi up failed: {tail(update.error)}\nThe stack's outputs are behind: pulumi up")
            done.append("pulumi up: the stack's outputs brought up to date")
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
