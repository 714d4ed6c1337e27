"""One release command's session: the stack (config, state), the cluster it deploys to, what the
command reports, and the steps every command shares (the cluster checked against what the stack
deployed, an update, prod watched and verified, the user's checks), for the app it acts on, or
several apps of the stack at once (App: one app's part).

The commands (bluegreen/release/commands/) are written over this object; the stack is read once
(stacks.StackSession keeps the state until an update changes it) and the cluster where it must be
seen as it is now.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import parse
from ..contract import ROLES, SLOTS, Names, Problem
from ..values import CHART_DIR, chart_values
from . import drift, helm, manifests, steps
from .checks import Window, checks_over_time, slot_readiness, verify_serving
from .journal import Journal
from .kube import EndpointWatch, KubeClient, KubeError
from .stacks import Run, StackSession, namespace_of, qualified, say


class Failed(Exception):
    """The step ran and did not succeed; the message says what state it left."""

    code = 1


class Drifted(Failed):
    """Prod serves, but the cluster is not what the stack deployed, or a command was interrupted."""

    code = 3


@dataclass(frozen=True)
class Truth:
    """What the stack deployed, the cluster as it is, their differences, and whether prod serves."""

    deployed: drift.Deployed
    cluster: drift.Cluster
    found: list[Problem]
    serving: bool


class App:
    """One BlueGreenApp of the session's stack: its config, names and checks (the cluster against
    what the stack deployed, its slots, its prod verified, the user's checks against it), over the
    stack and the cluster the session shares between its apps. Its findings go into `report`."""

    def __init__(self, session: Session, name: str | None, report: dict[str, Any], several: bool = False):
        self.session, self.stack, self.args, self.cwd = session, session.stack, session.args, session.cwd
        self.name, self.namespace = name, namespace_of(name)  # its stack config: api:productionSlot
        self.label = name if several else None  # named in what the command says, among several apps
        self.raw = self.stack.app_config(name)  # refused when the stack has no config for it
        self.settings = parse(self.raw)
        self.names = Names(self.settings.namespace, self.settings.app_name)
        self.report = report

    @property
    def kube(self) -> KubeClient:
        return self.session.kube

    def reload(self) -> None:
        """The app's config read again, after an update recorded changes into it."""
        self.raw = self.stack.keys_of(self.name)
        self.settings = parse(self.raw)

    def keys(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """A step's config edits as keys of the stack config (api:productionSlot), for an update
        that changes several apps."""
        return {qualified(self.namespace, path): value for path, value in changes.items()}

    # --- the cluster against what the stack deployed ---------------------------------------------

    def truth(self) -> Truth | None:
        """None when the stack's state holds no release for the app."""
        values = self.stack.deployed_values(self.names.app)
        if values is None:
            return None
        deployed, cluster = drift.Deployed(values), drift.read(self.kube, self.names)
        return Truth(deployed, cluster, drift.differences(deployed, self.names, cluster, self.config_values(deployed)),
                     drift.prod_serves(deployed, cluster))

    def never_deployed(self) -> Problem:
        """Why there is nothing to compare: never deployed, or a state that lost its release."""
        history = [entry for entry in self.stack.history(20) if entry["kind"] == "update"]
        if not any(entry["result"] == "succeeded" for entry in history):
            return Problem(f"stack {self.stack.name}", "has not deployed anything yet", "pulumi up")
        return Problem(f"stack {self.stack.name}", "has deployed before, but its state holds no release "
                       f"{self.names.app} (a refresh after the cluster or namespace was wiped removes it)",
                       "bluegreen repair (deploys the stack config again)")

    def config_values(self, deployed: drift.Deployed) -> dict[str, Any]:
        """The chart values of the stack config. The Secrets the stack made for the slots are taken
        as deployed: their names are Pulumi's, known only after an update."""
        names = {slot: (deployed.values.get(slot) or {}).get("secretName", "") for slot in SLOTS}
        return chart_values(self.settings, names)

    def pending(self, deployed: drift.Deployed) -> list[str]:
        """Chart values the stack config would change if deployed."""
        return drift.changed_keys(self.config_values(deployed), deployed.values)

    def require_true_cluster(self, command: str, settle_seconds: float = 10,
                             why: str = "is not what the stack deployed", refuse: bool = True) -> None:
        """Go on only while prod serves and the cluster is what the stack deployed. Right after a
        change, EndpointSlices and readiness take a moment to settle: look again before refusing
        (or, with `refuse` false, after a command's own changes, failing)."""
        say(f"==> precondition{self.of()}: prod serves, and the cluster is what the stack deployed")
        deadline = time.monotonic() + settle_seconds
        while True:
            truth = self.truth()
            if truth is None or (truth.serving and not truth.found):
                return  # nothing deployed yet: nothing to compare
            if time.monotonic() > deadline:
                problem = "prod does not serve, and the cluster" if not truth.serving else "the cluster"
                message = f"{self.tag()}{problem} {why}:\n{listed(truth.found)}"
                if not refuse:
                    raise Failed(message)
                raise steps.Refused(f"{message}\nFix: as listed (bluegreen status{self._app_flag()} shows the same "
                                    f"list); then run {command} again")
            time.sleep(1)

    def require_available(self, slot: str, verb: str) -> None:
        say(f"==> precondition{self.of()}: {slot} is deployed and all its replicas are Available")
        ready, desired = slot_readiness(self.kube, self.names, slot)
        if not desired or ready != desired:
            raise steps.Refused(f"cannot {verb}{self.of()}: {slot} has {ready}/{desired} available replicas")

    def of(self) -> str:
        """" of app api" where the command acts on several apps, else ""."""
        return f" of app {self.label}" if self.label else ""

    def tag(self) -> str:
        """"app api: " before what is said of the app where the command acts on several apps, else ""."""
        return f"app {self.label}: " if self.label else ""

    def _app_flag(self) -> str:
        return f" --app {self.label}" if self.label else ""

    # --- what an update would change, object by object -----------------------------------------------

    def object_diff(self, changes: Mapping[str, Any]) -> list[manifests.ObjectChange]:
        """The manifest Helm recorded for the deployed revision against the checkout's chart rendered
        with the stack config and `changes`: what the update would add, remove and change. Secrets the
        stack made for the slots keep the names they were deployed with (Pulumi names new ones)."""
        names = self.names
        records = self.kube.helm_releases(names.namespace, names.app)
        if not records:
            raise helm.HelmError(f"the release {names.app} has no Helm record in {names.namespace} to compare with")
        record = helm.record_from_secret(self.kube.get(f"/api/v1/namespaces/{names.namespace}/secrets/"
                                                       f"{records[0]['name']}") or {})
        settings = parse(steps.apply_changes(self.raw, changes))
        deployed = self.stack.deployed_values(names.app) or {}
        secret_names = {slot: (deployed.get(slot) or {}).get("secretName", "") for slot in SLOTS}
        rendered = helm.template(CHART_DIR, names.app, names.namespace, chart_values(settings, secret_names))
        return manifests.diff(record.manifest, rendered, names.namespace)

    def diff_in_background(self, changes: Mapping[str, Any]) -> concurrent.futures.Future:
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="diff")
        future = pool.submit(self.object_diff, changes)
        pool.shutdown(wait=False)
        return future

    def show_diff(self, future: concurrent.futures.Future,
                  added_bodies: bool = False) -> list[manifests.ObjectChange] | None:
        """Say what the update changes, object by object, and put it in the report; None (and why,
        in the report) when it cannot be worked out: the preview still guards the update."""
        try:
            found = future.result()
        except (helm.HelmError, manifests.ManifestError, KubeError, OSError) as error:
            self.report["diffError"] = str(error)
            say(f"==> what the update changes{self.of()}, object by object: not known ({error})")
            return None
        say(f"==> what the update changes{self.of()}, object by object:\n"
            + manifests.render_text(found, added_bodies=added_bodies).rstrip())
        self.report["diff"] = manifests.as_json(found)
        return found

    # --- prod -----------------------------------------------------------------------------------------

    def expect_serving(self, role: str, slot: str) -> None:
        problem = verify_serving(self.kube, self.names, role, slot)
        if problem:
            raise Failed(f"{self.tag()}{problem}")
        say(f"    {role}{self.of()}: selects {slot}, Endpoints are the ready {slot} pods")

    def smoke(self, target: str, slot: str, raise_on_failure: bool = True, window: Window | None = None,
              settle_until: float | None = None) -> list[str]:
        """The user's checks against `target`, over `window` (once without one); the rounds go
        into the report (checks.<target>). A failure is a refusal unless `raise_on_failure` is off."""
        args, window = self.args, window or Window()
        if not (getattr(args, "check_url", None) or getattr(args, "check_cmd", None)
                or window.max_error_rate is not None):
            return []
        url = self.settings.url(target)
        env = {"BLUEGREEN_SLOT": slot, "BLUEGREEN_SERVICE": self.names.service(target),
               "BLUEGREEN_NAMESPACE": self.names.namespace}
        over = (f" for {window.seconds:g}s, every {window.every:g}s ({window.rounds} rounds)"
                if window.rounds > 1 else "")
        rate = (f"; 5xx share of {self.names.service(target)} at most {window.max_error_rate:g}% "
                f"(ingress metrics: {window.metrics_url})" if window.max_error_rate is not None else "")
        say(f"==> checks against {target}{self.of()} ({slot}){over}{rate}")
        result = checks_over_time(target, url, getattr(args, "check_url", None), getattr(args, "check_cmd", None),
                                  env, say, window, self.names.namespace,
                                  {role: self.names.service(role) for role in ROLES},
                                  cwd=self.cwd, settle_until=settle_until)
        self.report.setdefault("checks", {})[target] = result.summary()
        failures = [f"{self.tag()}{failure}" for failure in result.failures]
        if failures and raise_on_failure:
            raise steps.Refused(f"smoke checks against {target}{self.of()} failed: " + "; ".join(failures))
        return failures

    @contextlib.contextmanager
    def watch_prod(self) -> Iterator[EndpointWatch]:
        """Poll prod's Endpoints through the step; the figures go into the report, failure or not."""
        watch = EndpointWatch(self.kube, self.names.namespace, self.names.service("prod"))
        try:
            with watch:
                yield watch
        finally:
            self.report["prodWatch"] = watch.summary()


# What a command that acts on one app reads from the session itself: its app's parts.
ONE_APP = frozenset({"raw", "settings", "names", "truth", "never_deployed", "pending", "require_true_cluster",
                     "require_available", "object_diff", "diff_in_background", "show_diff", "expect_serving",
                     "smoke", "watch_prod"})


class Session:
    """One command over one stack and one cluster, for the apps it selects (`--app`, repeated, or
    `--all`; see selection). A command that acts on one app reads that app's parts from the session
    itself (session.settings, session.truth(), ...: ONE_APP); one that takes several walks
    session.apps, each reporting into its own part of the report (report["apps"][NAME])."""

    def __init__(self, args: argparse.Namespace, read_only: bool = False):
        self.args = args
        self.cwd = os.getcwd()  # the user's: the inline program runs in the project's directory
        chosen = list(dict.fromkeys(getattr(args, "app", None) or []))  # --app, repeated; in order, once each
        # A command that changes nothing reports the last updates as they are now: read them ahead.
        self.stack = StackSession(args.stack, args.project_dir, chosen[0] if chosen else None, history=read_only)
        self.report: dict[str, Any] = {}  # the command's result fields, filled in as it goes
        self.updated = False  # an update of this command has run (so a refusal now would be a lie)
        selected = self._selection(chosen)
        if len(selected) == 1:
            self.apps = [App(self, selected[0], self.report)]
        else:
            parts = self.report.setdefault("apps", {})
            self.apps = [App(self, name, parts.setdefault(str(name), {}), several=True) for name in selected]
        self.kube = KubeClient(args.kubeconfig)
        self.journal = Journal(self.stack.project_dir, self.stack.name, *(app.names.app for app in self.apps))

    def _selection(self, chosen: list[str]) -> list[str | None]:
        """The apps the command acts on: those named with --app; with --all every app of the stack
        (the project's own, in a one-app project); else the project's own (None)."""
        if not getattr(self.args, "all", False):
            return list(chosen) or [None]
        if chosen:
            raise steps.Refused(f"--all and --app {' --app '.join(chosen)} together; allowed: one of them")
        if self.stack.keys_of(None):
            return [None]
        found = self.stack.apps()
        if not found:
            raise steps.Refused(f"--all: stack {self.stack.name} has deployed no app yet; name them with --app NAME")
        return list(found)

    @property
    def app(self) -> App:
        """The one app of a command that acts on one."""
        if len(self.apps) != 1:
            raise AttributeError(f"the command acts on {len(self.apps)} apps, not one")
        return self.apps[0]

    def __getattr__(self, name: str) -> Any:
        if name in ONE_APP:
            return getattr(self.app, name)
        raise AttributeError(name)

    @property
    def several(self) -> bool:
        return len(self.apps) > 1

    # --- a step ------------------------------------------------------------------------------------

    def refuse_if_interrupted(self, command: str) -> None:
        """A command that stopped half-way is finished or put back first (`bluegreen recover`)."""
        entry = self.journal.interrupted()
        if entry:
            recover = f"bluegreen recover --app {entry.app}" if self.several else "bluegreen recover"
            raise steps.Refused(f"{entry.describe()}.\nFix: {recover} (bluegreen status says what it left), "
                                f"then run {command} again")

    def plan(self, step: steps.Step) -> steps.Step:
        """Validate the step's config like the program will, say what it does, record it, and open
        its journal entry (closed by the CLI however the command ends)."""
        return self.plan_all([(self.app, step)])[0][1]

    def plan_all(self, planned: list[tuple[App, steps.Step]]) -> list[tuple[App, steps.Step]]:
        """plan, for one step per app that one update makes together; one journal entry for all."""
        command = planned[0][1].command
        self.refuse_if_interrupted(command)
        for app, step in planned:
            steps.checked(app.raw, step)
        for app, step in planned:
            say(f"==> {app.tag()}{step.summary}")
            app.report.update(slot=step.slot, changes=dict(step.changes))
        self.journal.begin(command, {app.names.app: dict(step.changes) for app, step in planned},
                           self.message(planned))
        return planned

    def changes(self, planned: list[tuple[App, steps.Step]]) -> dict[str, Any]:
        """The config edits of one update that makes every app's step: an app's own paths for one
        app (as the stack reads them), keys of each app's namespace for several."""
        if len(planned) == 1:
            return dict(planned[0][1].changes)
        return {key: value for app, step in planned for key, value in app.keys(step.changes).items()}

    def message(self, planned: list[tuple[App, steps.Step]]) -> str:
        return steps.together({app.names.app: step for app, step in planned})

    def up(self, changes: Mapping[str, Any], message: str, record: bool = True) -> Run:
        """An update with `changes` (written into the stack config once it succeeded, if `record`);
        its time goes into the report."""
        return self._updating(lambda: self.stack.up(changes, message, record))

    def _updating(self, update: Callable[[], Run]) -> Run:
        """Run `update` in the journal's update phase; its time goes into the report."""
        self.journal.phase("update")
        run = update()  # Pulumi's lock met here is a refusal: nothing ran
        self.updated = True
        self.report.setdefault("upSeconds", []).append(round(run.seconds, 2))
        self.journal.phase("verify")
        return run

    @contextlib.contextmanager
    def update_ahead(self, changes: Mapping[str, Any], message: str,
                     record: bool = True) -> Iterator[Callable[[], Run]]:
        """`up`, started now and let go by the function this yields, once the command's checks passed:
        Pulumi's start overlaps them (stacks.StackSession.update_ahead). A refusal in the block ends
        the update before its program ran; the journal stays in its phase until then, as nothing changes."""
        with self.stack.update_ahead(changes, message, record) as ahead:
            yield lambda: self._updating(ahead.go)

    @contextlib.contextmanager
    def watch_every_prod(self) -> Iterator[None]:
        """watch_prod of every app at once."""
        with contextlib.ExitStack() as watching:
            for app in self.apps:
                watching.enter_context(app.watch_prod())
            yield


def listed(found: list[Problem]) -> str:
    return "\n".join(f"- {item}" for item in found) or "- (no object differs: the prod Service has no ready endpoints)"


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
