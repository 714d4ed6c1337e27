"""`bluegreen` (or `python -m bluegreen`): one guarded command per step of a release.

Each command says what it will do, streams Pulumi's progress to stderr, ends with the state it left
behind (stdout, or JSON with --json) and exits non-zero on failure: 1 when a step failed (for
`status`: prod does not serve), 2 when it was refused before anything changed, 3 when `status`
finds the cluster drifted from what the stack deployed while prod serves. The stack config stays
the source of truth: a command edits it with `pulumi config set --path` semantics and runs an ordinary `pulumi up`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from typing import Any

from ..config import SLOTS, ConfigError, parse
from ..values import CHART_DIR, chart_values
from . import drift, plan
from .checks import Names, slot_readiness, smoke_checks, verify_serving, wait_available
from .kube import EndpointWatch, KubeClient, KubeConfigError, KubeError
from .locks import StackLocked, alive_here, command_lock, held_by, this_command
from .stacks import NoSuchStack, StackSession, say


class Failed(Exception):
    """The step ran and did not succeed; the message says what state it left."""

    code = 1


class Drifted(Failed):
    """Prod serves, but the cluster is not what the stack deployed (bluegreen status)."""

    code = 3


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.monotonic()
    result: dict[str, Any] = {"command": args.command, "stack": args.stack}
    release: Release | None = None
    try:
        release = Release(args)
        with _one_at_a_time(release, args):
            getattr(release, args.command)(args)
        result["ok"], code = True, 0
    except StackLocked as locked:
        # Refused if this command had not updated the stack yet: then put back what it set.
        refused = release is None or "upSeconds" not in release.report
        if release and refused and release.session.touched:
            with contextlib.suppress(Exception):
                release.session.restore_config(release.raw, set(release.session.touched))
        result.update(ok=False, error=str(locked), **({"refused": True} if refused else {}))
        say(f"bluegreen {args.command}: {'refused, nothing was changed' if refused else 'FAILED'}:\n{locked}")
        code = 2 if refused else 1
    except (plan.Refused, ConfigError, NoSuchStack, KubeConfigError) as refusal:
        result.update(ok=False, refused=True, error=str(refusal))
        say(f"bluegreen {args.command}: refused, nothing was changed:\n{refusal}")
        code = 2
    except (Failed, KubeError) as failure:
        result.update(ok=False, error=str(failure))
        say(f"bluegreen {args.command}: {'DRIFT' if isinstance(failure, Drifted) else 'FAILED'}: {failure}")
        code = getattr(failure, "code", 1)
    except FileNotFoundError as missing:  # a tool is not installed
        error = (f"{missing.filename or missing} is not installed or not on PATH "
                 "(in a checkout, `source scripts/activate` puts the project's tools there)")
        # Found out while setting up, nothing has run yet: a refusal. Later, a step has failed.
        refused = release is None or args.command == "status"
        result.update(ok=False, error=error, **({"refused": True} if refused else {}))
        say(f"bluegreen {args.command}: {'refused, nothing was changed' if refused else 'FAILED'}: {error}")
        code = 2 if refused else 1
    except Exception as failure:  # anything else is a message and valid JSON too, never a traceback
        error = f"{type(failure).__name__}: {failure}".strip()
        result.update(ok=False, error=error)
        say(f"bluegreen {args.command}: FAILED: {error}")
        code = 1
    if release:
        if "state" not in release.report:
            with contextlib.suppress(Exception):  # the state left behind, shown when it can be read
                release.read_state()
        result.update(release.report)  # what the step measured, also when it failed
    result["seconds"] = round(time.monotonic() - started, 2)
    _print(result, args.json)
    return code


class Release:
    """The commands, over one stack and the cluster it deploys to."""

    def __init__(self, args: argparse.Namespace):
        self.session = StackSession(args.stack, args.project_dir, args.app)
        self.raw = self.session.config_at_start
        self.settings = parse(self.raw)
        self.names = Names.of(self.settings)
        self.kube = KubeClient(args.kubeconfig)
        self.report: dict[str, Any] = {}  # the command's result fields, filled in as it goes

    # --- commands -------------------------------------------------------------------------------

    def status(self, args) -> None:
        """The stack's state, and the cluster checked against what the stack deployed."""
        self.read_state()
        state = self.report["state"]
        truth = self._truth()
        if truth is None:
            state.update(serving=False, drift=[], pending=[])
            raise Failed(f"stack {self.session.name} has not deployed anything yet: pulumi up")
        deployed, _, found, serving = truth
        state.update(serving=serving, drift=[asdict(d) for d in found],
                     pending=self._pending(deployed))
        if not serving:
            raise Failed(f"prod does not serve {deployed.production_slot}:\n{_listed(found)}")
        if found:
            raise Drifted(f"{len(found)} difference(s) between the cluster and what the stack deployed:\n"
                          f"{_listed(found)}")

    def repair(self, args) -> None:
        """Bring the cluster back to what the stack deployed, without changing the stack config."""
        truth = self._truth()
        if truth is None:
            raise plan.Refused(f"stack {self.session.name} has not deployed anything yet: pulumi up")
        deployed, cluster, found, serving = truth
        done = self.report.setdefault("actions", [])
        if serving and not found:
            say("==> nothing to repair: the cluster is what the stack deployed")
            return
        say(f"==> the cluster differs from what the stack deployed:\n{_listed(found)}")
        if not cluster.namespace or cluster.release is None:
            pending = self._pending(deployed)
            if pending:
                raise plan.Refused("the stack config has changes that were never deployed ("
                                   + ", ".join(pending) + "), and `pulumi up` would deploy them too; "
                                   "deploy them (pulumi up) or put the config back first")
            say("==> plan: pulumi refresh (the stack learns what is gone), then pulumi up (recreates it)")
            self._refresh(done)
            run = self._up({})
            if not run.ok:
                raise Failed(f"pulumi up failed: {_tail(run.error)}")
            done.append("pulumi up recreated the release")
        else:
            say(f"==> plan: helm upgrade {self.names.app} with the values the stack deployed (recreates "
                "deleted objects, puts hand-edited fields back), then pulumi refresh")
            self._helm_upgrade(deployed.values)
            done.append(f"helm upgrade {self.names.app} with the deployed values")
            self._remove_orphans(deployed.values, done)
            self._refresh(done)
        self._require_true_cluster("repair", settle_seconds=60, why="still differs after the repair")
        say("==> repaired: the cluster is what the stack deployed")

    def read_state(self) -> None:
        # Read afresh: after a step, the state left behind is what counts.
        settings, outputs = parse(self.session.raw_config()), self.session.outputs(self.names.app)
        records = _try(lambda: self.kube.helm_releases(self.names.namespace, self.names.app), [])
        slots = {}
        for slot in ("blue", "green"):
            state = settings.slot(slot)
            ready, desired = _try(functools.partial(slot_readiness, self.kube, self.names, slot), (None, None))
            slots[slot] = {"role": "prod" if slot == settings.production_slot else "stage",
                           "enabled": state.enabled, "image": state.image if state.enabled else None,
                           "ready": ready, "desired": desired}
        self.report["state"] = {
            "productionSlot": settings.production_slot, "stageSlot": settings.stage_slot,
            "deployedProductionSlot": outputs.get("productionSlot"),
            "slots": slots,
            "release": {"name": self.names.app, "namespace": self.names.namespace,
                        "revision": records[0]["revision"] if records else outputs.get("revision"),
                        "status": records[0]["status"] if records else outputs.get("status")},
            "urls": {"prod": outputs.get("prodUrl"), "stage": outputs.get("stageUrl")},
            "history": _try(lambda: self.session.history(5), []),
        }

    def deploy(self, args) -> None:
        step = self._plan(plan.deploy(self.settings, args.image, replace=args.replace, replicas=args.replicas))
        self._require_true_cluster("deploy")
        prod = self.settings.production_slot
        with self._watch_prod():
            run = self._up(step.changes)
            if not run.ok:
                self._undo(step, "the update failed (Helm rolled the release back)")
                raise Failed(f"pulumi up failed; {step.slot} was not deployed and prod stays on {prod}.\n"
                             f"{_tail(run.error)}")
            say(f"==> waiting for {step.slot} to be Available")
            ready, desired = wait_available(self.kube, self.names, step.slot, 60, say)
            if ready != desired:
                raise Failed(f"{step.slot} has {ready}/{desired} available replicas")
            self._expect_serving("prod", prod)
            self._expect_serving("stage", step.slot)

    def promote(self, args) -> None:
        step = self._plan(plan.promote(self.settings))
        self._require_true_cluster("promote")
        previous = self.settings.production_slot
        self._require_available(step.slot, "promote")
        self._smoke("stage", step.slot, args)
        say("==> preview: only productionSlot and what follows from it may change")
        self.session.set_config(step.changes)
        preview = self.session.preview()
        unexpected = plan.unexpected_changes([(c.type, c.op, c.paths) for c in preview.changes])
        if not preview.ok or unexpected:
            self.session.restore_config(self.raw, step.changes)
            reason = preview.error if not preview.ok else "; ".join(unexpected)
            raise plan.Refused(f"the preview shows more than the flip: {reason}\n{preview.output}")
        with self._watch_prod():
            run = self._up({})
            problem = None if run.ok else f"pulumi up failed: {_tail(run.error)}"
            problem = problem or verify_serving(self.kube, self.names, "prod", step.slot)
            if not problem:
                failures = self._smoke("prod", step.slot, args, raise_on_failure=False)
                problem = "; ".join(failures) if failures else None
            if problem:
                say(f"==> verification failed: {problem}")
                say(f"==> automatic rollback: prod back to {previous}")
                back = self._up({"productionSlot": previous})
                still = verify_serving(self.kube, self.names, "prod", previous) if back.ok else _tail(back.error)
                raise Failed(f"promotion of {step.slot} failed ({problem}); "
                             + (f"rolled back, prod serves {previous}" if not still else f"ROLLBACK FAILED: {still}"))

    def rollback(self, args) -> None:
        step = self._plan(plan.rollback(self.settings))
        self._require_true_cluster("rollback")
        self._require_available(step.slot, "roll back")
        with self._watch_prod():
            run = self._up(step.changes)
            if not run.ok:
                raise Failed(f"pulumi up failed: {_tail(run.error)}")
            self._expect_serving("prod", step.slot)

    def retire(self, args) -> None:
        step = self._plan(plan.retire(self.settings, slot=args.slot, keep_replicas=args.keep_replicas))
        self._require_true_cluster("retire")
        with self._watch_prod():
            run = self._up(step.changes)
            if not run.ok:
                raise Failed(f"pulumi up failed: {_tail(run.error)}")
            self._expect_serving("prod", self.settings.production_slot)

    def recover(self, args) -> None:
        """Bring back a stack and a Helm release that an interrupted update left locked and pending
        (pulumi-kubernetes #2054). Run it only when no update is running."""
        running = [lock for lock in self.session.locks() or [] if alive_here(lock)]
        if running:  # an update that is alive is not interrupted: clearing its lock would break it
            raise held_by(running, self.session.name)
        records = self.kube.helm_releases(self.names.namespace, self.names.app)
        pending = [r for r in records if r["status"].startswith("pending-")]
        settled = [r for r in records if not r["status"].startswith("pending-")]
        history = ", ".join(f"v{r['revision']} {r['status']}" for r in records)
        say(f"==> Helm release {self.names.app}: " + (history or "no records"))
        done = self.report.setdefault("actions", [])
        # A killed `pulumi up` leaves its lock behind (self-managed backends); only a dead update
        # may be cancelled, which is why `recover` is run by hand, when no update is running.
        say("==> clearing the lock a killed update left (pulumi cancel)")
        self.session.cancel()
        done.append("cancelled any stale update lock")
        if pending:
            if not settled:
                raise Failed("the release never got past its first install; "
                             "remove it with pulumi destroy and deploy again")
            for record in pending:
                say(f"==> removing the pending record v{record['revision']} ({record['status']})")
                self.kube.delete_secret(self.names.namespace, record["name"])
                done.append(f"removed pending v{record['revision']}")
            last_good = settled[0]["revision"]
            say(f"==> helm rollback {self.names.app} {last_good}")
            rolled = subprocess.run(["helm", "rollback", self.names.app, str(last_good), "-n", self.names.namespace,
                                     "--wait", "--timeout", f"{self.settings.helm_timeout_seconds}s"],
                                    stdout=sys.stderr)  # stdout carries only the result
            if rolled.returncode != 0:
                raise Failed(f"helm rollback to v{last_good} failed (exit {rolled.returncode})")
            done.append(f"rolled back to v{last_good}")
            rolled_back = drift.newest_release(self.kube, self.names)
            self._remove_orphans(rolled_back["values"] if rolled_back else {}, done)
        cleared = self.session.clear_pending_operations()
        if cleared:
            say(f"==> cleared {cleared} pending operation(s) from the Pulumi state")
            done.append(f"cleared {cleared} pending operation(s)")
        refreshed = self.session.refresh()
        if not refreshed.ok:
            raise Failed(f"pulumi refresh failed: {_tail(refreshed.error)}")
        done.append("refreshed")
        if not pending and not cleared:
            say("==> nothing was pending; the release is healthy")

    # --- shared steps ---------------------------------------------------------------------------

    def _truth(self):
        """(what the stack deployed, the cluster, their differences, whether prod serves); None
        when the stack has deployed nothing yet."""
        values = self.session.deployed_values(self.names.app)
        if values is None:
            return None
        deployed, cluster = drift.Deployed(values), drift.read(self.kube, self.names)
        return deployed, cluster, drift.differences(deployed, self.names, cluster), drift.prod_serves(deployed, cluster)

    def _pending(self, deployed: drift.Deployed) -> list[str]:
        """Chart values the stack config would change if deployed. The Secrets the stack made for
        the slots are taken as deployed: their names are Pulumi's, known only after an update."""
        names = {slot: (deployed.values.get(slot) or {}).get("secretName", "") for slot in SLOTS}
        return drift.changed_keys(chart_values(self.settings, names), deployed.values)

    def _require_true_cluster(self, command: str, settle_seconds: float = 10,
                              why: str = "is not what the stack deployed") -> None:
        """Go on only while prod serves and the cluster is what the stack deployed. Right after a
        change, EndpointSlices and readiness take a moment to settle: look again before refusing."""
        say("==> precondition: prod serves, and the cluster is what the stack deployed")
        deadline = time.monotonic() + settle_seconds
        while True:
            truth = self._truth()
            if truth is None:
                return  # nothing deployed yet: nothing to compare
            _, _, found, serving = truth
            if serving and not found:
                return
            if time.monotonic() > deadline:
                problem = "prod does not serve, and the cluster" if not serving else "the cluster"
                message = f"{problem} {why}:\n{_listed(found)}"
                if command == "repair":
                    raise Failed(message)
                raise plan.Refused(f"{message}\nFix: bluegreen repair (bluegreen status shows the same list); "
                                   f"then run {command} again")
            time.sleep(1)

    def _remove_orphans(self, values: dict[str, Any], done: list[str]) -> None:
        """Delete the Deployments of slots that `values` retire but that still exist: objects of an
        update whose Helm record is gone (removed by recover), which no Helm upgrade or rollback
        will ever delete, since no revision has them any more."""
        for slot in SLOTS:
            if (values.get(slot) or {}).get("enabled"):
                continue
            name = self.names.deployment(slot)
            found = self.kube.deployment(self.names.namespace, name)
            if found and found["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == self.names.app:
                say(f"==> deleting Deployment {name}: {slot} is retired and no Helm revision has it any more")
                self.kube.request("DELETE", f"/apis/apps/v1/namespaces/{self.names.namespace}/deployments/{name}")
                done.append(f"deleted the orphaned Deployment {name}")

    def _refresh(self, done: list[str]) -> None:
        refreshed = self.session.refresh()
        if not refreshed.ok:
            raise Failed(f"pulumi refresh failed: {_tail(refreshed.error)}")
        done.append("refreshed")

    def _helm_upgrade(self, values: dict[str, Any]) -> None:
        """Helm's three-way merge against the live objects, with the values the stack deployed."""
        with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
            json.dump(values, file)
            file.flush()
            upgraded = subprocess.run(["helm", "upgrade", self.names.app, CHART_DIR, "-n", self.names.namespace,
                                       # --atomic: an upgrade that fails is rolled back, not left half-done
                                       "-f", file.name, "--reset-values", "--wait", "--atomic",
                                       "--timeout", f"{self.settings.helm_timeout_seconds}s"],
                                      stdout=sys.stderr)  # stdout carries only the result
        if upgraded.returncode != 0:
            raise Failed(f"helm upgrade {self.names.app} failed (exit {upgraded.returncode})")

    def _plan(self, step: plan.Step) -> plan.Step:
        """Validate the step's config like the program will, say what it does, record it."""
        plan.checked(self.raw, step)
        say(f"==> {step.summary}")
        self.report.update(slot=step.slot, changes=dict(step.changes))
        return step

    def _require_available(self, slot: str, verb: str) -> None:
        say(f"==> precondition: {slot} is deployed and all its replicas are Available")
        ready, desired = slot_readiness(self.kube, self.names, slot)
        if not desired or ready != desired:
            raise plan.Refused(f"cannot {verb}: {slot} has {ready}/{desired} available replicas")

    def _up(self, changes):
        """`pulumi config set --path` each change, then `pulumi up`; the time is reported."""
        self.session.set_config(changes)
        run = self.session.up()
        self.report.setdefault("upSeconds", []).append(round(run.seconds, 2))
        return run

    def _undo(self, step: plan.Step, why: str) -> None:
        say(f"==> {why}; restoring the stack config and reconciling")
        self.session.restore_config(self.raw, {path.split(".")[0] for path in step.changes})
        self._up({})

    def _expect_serving(self, role: str, slot: str) -> None:
        problem = verify_serving(self.kube, self.names, role, slot)
        if problem:
            raise Failed(problem)
        say(f"    {role}: selects {slot}, Endpoints are the ready {slot} pods")

    def _smoke(self, target: str, slot: str, args, raise_on_failure: bool = True) -> list[str]:
        if not (args.check_url or args.check_cmd):
            return []
        url = self.settings.url(target)
        env = {"BLUEGREEN_SLOT": slot, "BLUEGREEN_SERVICE": self.names.service(target),
               "BLUEGREEN_NAMESPACE": self.names.namespace}
        say(f"==> smoke checks against {target} ({slot})")
        failures = smoke_checks(target, url, args.check_url, args.check_cmd, env, say)
        if failures and raise_on_failure:
            raise plan.Refused(f"smoke checks against {target} failed: " + "; ".join(failures))
        return failures

    @contextlib.contextmanager
    def _watch_prod(self):
        """Poll prod's Endpoints through the step; the figures go into the report, failure or not."""
        watch = EndpointWatch(self.kube, self.names.namespace, self.names.service("prod"))
        try:
            with watch:
                yield watch
        finally:
            self.report["prodWatch"] = watch.summary()


READ_ONLY = {"status"}


@contextlib.contextmanager
def _one_at_a_time(release: Release, args: argparse.Namespace):
    """Commands that change the stack or the cluster hold this machine's lock on the stack, and
    start only while no update (from anywhere) holds Pulumi's lock on it."""
    if args.command in READ_ONLY:
        yield
        return
    with command_lock(release.session.project_dir, release.session.name, this_command()):
        if args.command != "recover":  # recover is what clears a dead update's lock
            release.session.check_unlocked()
        yield


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", default=os.environ.get("BLUEGREEN_STACK", "staging"),
                        help="Pulumi stack (environment); default: staging")
    common.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    common.add_argument("--project-dir", help="the Pulumi project (default: this checkout)")
    common.add_argument("--app", help="in a stack with several BlueGreenApps, the one to work on (its stack "
                        "config is the namespace named like it: APP:productionSlot, ...)")
    common.add_argument("--kubeconfig", help="kubeconfig to read the cluster with (default: $KUBECONFIG)")
    checks = argparse.ArgumentParser(add_help=False)
    checks.add_argument("--check-url", help="GET this URL, expect 2xx; {url} is the stage (then prod) URL")
    checks.add_argument("--check-cmd", help="run this shell command, expect exit 0; BLUEGREEN_TARGET=stage|prod")

    parser = argparse.ArgumentParser(prog="bluegreen", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("status", parents=[common], help="the live and stage slots, readiness, history")
    deploy = commands.add_parser("deploy", parents=[common], help="deploy IMAGE into the idle slot")
    deploy.add_argument("image")
    deploy.add_argument("--replace", action="store_true", help="replace a release that is already staged")
    deploy.add_argument("--replicas", type=int, help="replica count of the new slot")
    commands.add_parser("promote", parents=[common, checks], help="check the stage, flip prod to it, verify")
    commands.add_parser("rollback", parents=[common], help="flip prod back to the previous slot")
    retire = commands.add_parser("retire", parents=[common], help="remove (or scale down) the old slot")
    retire.add_argument("--slot", choices=["blue", "green"], help="default: the non-production slot")
    retire.add_argument("--keep-replicas", type=int, help="scale down to N instead of removing")
    commands.add_parser("recover", parents=[common], help="repair a Helm release stuck in pending-*")
    commands.add_parser("repair", parents=[common], help="bring the cluster back to what the stack deployed")
    return parser


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    state = result.get("state")
    if state:
        release = state["release"]
        print(f"stack {result['stack']}: release {release['name']} revision {release['revision']} "
              f"{release['status']} in namespace {release['namespace']}")
        for slot, info in sorted(state["slots"].items(), key=lambda item: item[1]["role"]):  # prod first
            role = info["role"]
            url = state["urls"].get(role) or ""
            if info["enabled"]:
                print(f"  {role:5} -> {slot:5} {info['image']}  {info['ready']}/{info['desired']} ready  {url}")
            else:
                print(f"  {role:5} -> {slot:5} (not deployed)  {url}")
        for entry in state.get("history", [])[:5]:
            print(f"  {entry['started']}  {entry['kind']} {entry['result']}  productionSlot={entry['productionSlot']}")
    if state and state.get("pending"):
        print(f"  the stack config has changes not deployed yet: {', '.join(state['pending'])}")
    watch = result.get("prodWatch")
    if watch:
        print(f"prod Endpoints during the update: {watch['polls']} polls at {watch['rate_hz']} Hz, "
              f"{watch['empty']} empty")
    print(f"{result['command']}: {'ok' if result.get('ok') else 'FAILED'} in {result['seconds']} s")


def _listed(found) -> str:
    return "\n".join(f"- {item}" for item in found) or "- (no object differs: the prod Service has no ready endpoints)"


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _try(fn, default):
    try:
        return fn()
    except Exception:  # status shows what it can; an unreachable cluster is not fatal
        return default
