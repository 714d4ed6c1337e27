"""One release command's session: the app's stack (config, state), the cluster it deploys to, what
the command reports, and the steps every command shares (the cluster checked against what the
stack deployed, an update, prod watched and verified, the user's checks).

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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import parse
from ..contract import SLOTS, Names, Problem
from ..values import CHART_DIR, chart_values
from . import drift, helm, manifests, steps
from .checks import slot_readiness, smoke_checks, verify_serving
from .journal import Journal
from .kube import EndpointWatch, KubeClient, KubeError
from .stacks import Run, StackSession, say


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


class Session:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cwd = os.getcwd()  # the user's: the inline program runs in the project's directory
        self.stack = StackSession(args.stack, args.project_dir, args.app)
        self.raw = self.stack.raw_config()
        self.settings = parse(self.raw)
        self.names = Names(self.settings.namespace, self.settings.app_name)
        self.kube = KubeClient(args.kubeconfig)
        self.journal = Journal(self.stack.project_dir, self.stack.name, self.names.app)
        self.report: dict[str, Any] = {}  # the command's result fields, filled in as it goes
        self.updated = False  # an update of this command has run (so a refusal now would be a lie)

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

    def reload_config(self) -> None:
        """Read the stack config again, after this command wrote into it."""
        self.raw = self.stack.raw_config()
        self.settings = parse(self.raw)

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
        say("==> precondition: prod serves, and the cluster is what the stack deployed")
        deadline = time.monotonic() + settle_seconds
        while True:
            truth = self.truth()
            if truth is None or (truth.serving and not truth.found):
                return  # nothing deployed yet: nothing to compare
            if time.monotonic() > deadline:
                problem = "prod does not serve, and the cluster" if not truth.serving else "the cluster"
                message = f"{problem} {why}:\n{listed(truth.found)}"
                if not refuse:
                    raise Failed(message)
                raise steps.Refused(f"{message}\nFix: as listed (bluegreen status shows the same list); "
                                    f"then run {command} again")
            time.sleep(1)

    def require_available(self, slot: str, verb: str) -> None:
        say(f"==> precondition: {slot} is deployed and all its replicas are Available")
        ready, desired = slot_readiness(self.kube, self.names, slot)
        if not desired or ready != desired:
            raise steps.Refused(f"cannot {verb}: {slot} has {ready}/{desired} available replicas")

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
            say(f"==> what the update changes, object by object: not known ({error})")
            return None
        say("==> what the update changes, object by object:\n"
            + manifests.render_text(found, added_bodies=added_bodies).rstrip())
        self.report["diff"] = manifests.as_json(found)
        return found

    # --- a step ------------------------------------------------------------------------------------

    def refuse_if_interrupted(self, command: str) -> None:
        """A command that stopped half-way is finished or put back first (`bluegreen recover`)."""
        entry = self.journal.interrupted()
        if entry:
            raise steps.Refused(f"{entry.describe()}.\nFix: bluegreen recover (bluegreen status says what it "
                                f"left), then run {command} again")

    def plan(self, step: steps.Step) -> steps.Step:
        """Validate the step's config like the program will, say what it does, record it, and open
        its journal entry (closed by the CLI however the command ends)."""
        self.refuse_if_interrupted(step.command)
        steps.checked(self.raw, step)
        say(f"==> {step.summary}")
        self.report.update(slot=step.slot, changes=dict(step.changes))
        self.journal.begin(step.command, dict(step.changes), step.message)
        return step

    def up(self, changes: Mapping[str, Any], message: str, record: bool = True) -> Run:
        """An update with `changes` (written into the stack config once it succeeded, if `record`);
        its time goes into the report."""
        self.journal.phase("update")
        run = self.stack.up(changes, message, record)  # Pulumi's lock met here is a refusal: nothing ran
        self.updated = True
        self.report.setdefault("upSeconds", []).append(round(run.seconds, 2))
        self.journal.phase("verify")
        return run

    def expect_serving(self, role: str, slot: str) -> None:
        problem = verify_serving(self.kube, self.names, role, slot)
        if problem:
            raise Failed(problem)
        say(f"    {role}: selects {slot}, Endpoints are the ready {slot} pods")

    def smoke(self, target: str, slot: str, raise_on_failure: bool = True) -> list[str]:
        args = self.args
        if not (getattr(args, "check_url", None) or getattr(args, "check_cmd", None)):
            return []
        url = self.settings.url(target)
        env = {"BLUEGREEN_SLOT": slot, "BLUEGREEN_SERVICE": self.names.service(target),
               "BLUEGREEN_NAMESPACE": self.names.namespace}
        say(f"==> smoke checks against {target} ({slot})")
        failures = smoke_checks(target, url, args.check_url, args.check_cmd, env, say, cwd=self.cwd)
        if failures and raise_on_failure:
            raise steps.Refused(f"smoke checks against {target} failed: " + "; ".join(failures))
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


def listed(found: list[Problem]) -> str:
    return "\n".join(f"- {item}" for item in found) or "- (no object differs: the prod Service has no ready endpoints)"


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
