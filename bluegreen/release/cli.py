"""`bluegreen` (or `python -m bluegreen`): one guarded command per step of a release.

Each command says what it will do, streams Pulumi's progress to stderr, ends with the state it left
behind (stdout, or JSON with --json) and exits non-zero on failure: 1 when a step failed (for
`status`: prod does not serve), 2 when it was refused before anything changed, 3 when `status`
finds the cluster drifted from what the stack deployed, or a command interrupted, while prod serves.
The stack config stays the source of truth: a command edits it with `pulumi config set --path`
semantics and runs an ordinary `pulumi up`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from typing import Any, NoReturn

from ..config import ConfigError
from . import launch
from .commands import COMMANDS
from .commands.status import read_state
from .helm import HelmError
from .kube import KubeConfigError, KubeError
from .locks import StackLocked, command_lock, this_command
from .session import Failed, Session
from .stacks import NoSuchStack, say
from .steps import Refused


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except UsageError as usage:  # a bad command line is refused like any other bad input, JSON included
        say(f"bluegreen: refused, nothing was changed: {usage}")
        if "--json" in (sys.argv[1:] if argv is None else argv):
            print(json.dumps({"command": usage.command, "ok": False, "refused": True, "error": str(usage)}, indent=2))
        return 2
    started, begun = time.monotonic(), launch.STARTED or time.time()  # begun: when its state read began
    result: dict[str, Any] = {"command": args.command, "stack": args.stack}
    session: Session | None = None
    try:
        _selection_taken(args)
        check = getattr(COMMANDS[args.command], "check_arguments", None)
        if check:  # arguments that go together or not at all: refused before the stack is even read
            check(args)
        session = Session(args, read_only=_read_only(args.command))
        with _one_at_a_time(session, args, begun):
            try:
                COMMANDS[args.command].run(session, args)
            finally:
                if session.journal.entry:  # this command's own entry: it ended (a killed one stays)
                    session.journal.end()
        result["ok"], code = True, 0
    except Exception as error:  # every failure is a message and valid JSON too, never a traceback
        code, fields, verdict = _failure(error, session, args.command)
        result.update(ok=False, **fields)
        separator = ":\n" if verdict.startswith("refused") else ": "
        say(f"bluegreen {args.command}: {verdict}{separator}{fields['error']}")
    if session:
        for app in getattr(session, "apps", []):
            if "state" not in app.report:
                with contextlib.suppress(Exception):  # the state left behind, shown when it can be read
                    read_state(session, app)
        result.update(session.report)  # what the step measured, also when it failed
    result["seconds"] = round(time.monotonic() - started, 2)
    _print(result, args.json)
    return code


def _failure(error: Exception, session: Session | None, command: str) -> tuple[int, dict[str, Any], str]:
    """(exit code, result fields, what to call it) for an exception that ended a command."""
    changed = session is not None and session.updated  # an update of this command has run
    if isinstance(error, StackLocked):
        refused = not changed
        return (2 if refused else 1), {"error": str(error), **({"refused": True} if refused else {})}, \
            "refused, nothing was changed" if refused else "FAILED"
    if isinstance(error, (Refused, ConfigError, NoSuchStack, KubeConfigError)):  # found before anything changed
        return 2, {"error": str(error), "refused": True}, "refused, nothing was changed"
    if isinstance(error, (Failed, KubeError, HelmError)):
        return getattr(error, "code", 1), {"error": str(error)}, \
            "DRIFT" if getattr(error, "code", 1) == 3 else "FAILED"
    if isinstance(error, FileNotFoundError):  # a tool is not installed
        message = (f"{error.filename or error} is not installed or not on PATH "
                   "(in a checkout, `source scripts/activate` puts the project's tools there)")
        # Found out while setting up, nothing has run yet: a refusal. Later, a step has failed.
        refused = session is None or command == "status"
        return (2 if refused else 1), {"error": message, **({"refused": True} if refused else {})}, \
            "refused, nothing was changed" if refused else "FAILED"
    return 1, {"error": f"{type(error).__name__}: {error}".strip()}, "FAILED"


@contextlib.contextmanager
def _one_at_a_time(session: Session, args: argparse.Namespace, begun: float) -> Iterator[None]:
    """Commands that change the stack or the cluster hold this machine's lock on the stack, and
    start only while no update (from anywhere) holds Pulumi's lock on it. The state was read from
    the command's start (`begun`), before the lock was free: if another command let go of it since,
    its last update may have changed the state, and the state is read again."""
    if _read_only(args.command):
        yield
        return
    with command_lock(session.stack.project_dir, session.stack.name, this_command()) as released:
        if released is not None and released >= begun:
            session.stack.read_again()
        if args.command != "recover":  # recover is what clears a dead update's lock
            session.stack.check_unlocked()
        yield


def _read_only(command: str) -> bool:
    """A command that changes nothing (READ_ONLY = True)."""
    return getattr(COMMANDS[command], "READ_ONLY", False)


def _several() -> str:
    """The commands that act on several apps at once (SEVERAL = True), as a user reads them."""
    names = [name for name, command in COMMANDS.items() if getattr(command, "SEVERAL", False)]
    return ", ".join(names[:-1]) + " and " + names[-1]


def _selection_taken(args: argparse.Namespace) -> None:
    """Refuse several apps (--app repeated, --all) for a command that acts on one."""
    apps = list(dict.fromkeys(args.app or []))
    if (len(apps) > 1 or args.all) and not getattr(COMMANDS[args.command], "SEVERAL", False):
        given = "--all" if args.all else " ".join(f"--app {app}" for app in apps)
        raise Refused(f"{args.command} acts on one app: {given} names several; allowed: one --app NAME. "
                      f"{_several()} take several apps (--app repeated, or --all)")


class UsageError(Exception):
    """The command line is not one the tool takes: what is wrong, then the usage."""

    def __init__(self, message: str, command: str | None):
        super().__init__(message)
        self.command = command


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line raises UsageError (argparse would print and exit 2 with
    no JSON); subcommands' parsers are of the same class, named "bluegreen COMMAND"."""

    def error(self, message: str) -> NoReturn:
        words = self.prog.split()
        raise UsageError(f"{message}\n{self.format_usage().strip()}", words[1] if len(words) > 1 else None)


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    launch.target_options(common)  # --stack, --project-dir
    common.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    common.add_argument("--app", action="append", help="in a stack with several BlueGreenApps, the one to work on "
                        "(its stack config is the namespace named like it: APP:productionSlot, ...); "
                        f"{_several()} take it repeated, for several apps in one update")
    common.add_argument("--all", action="store_true", help=f"{_several()}: every app of the stack")
    common.add_argument("--kubeconfig", help="kubeconfig to read the cluster with (default: $KUBECONFIG)")
    parser = _Parser(prog="bluegreen", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        parser_of_command = commands.add_parser(name, parents=[common], help=command.HELP)
        if hasattr(command, "add_arguments"):  # a command with arguments of its own
            command.add_arguments(parser_of_command)
    return parser


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    for app, part in (result.get("apps") or {}).items():  # a command over several apps: each app's part
        print(f"app {app}:")
        _print_state(result["stack"], part)
    _print_state(result["stack"], result)
    print(f"{result['command']}: {'ok' if result.get('ok') else 'FAILED'} in {result['seconds']} s")


def _print_state(stack: str, result: dict) -> None:
    state = result.get("state")
    if state:
        release = state["release"]
        print(f"stack {stack}: release {release['name']} revision {release['revision']} "
              f"{release['status']} in namespace {release['namespace']}")
        for slot, info in sorted(state["slots"].items(), key=lambda item: item[1]["role"]):  # prod first
            role = info["role"]
            url = state["urls"].get(role) or ""
            if info["enabled"]:
                print(f"  {role:5} -> {slot:5} {info['image']}  {info['ready']}/{info['desired']} ready  {url}")
            else:
                print(f"  {role:5} -> {slot:5} (not deployed)  {url}")
        if not state.get("servingChecked"):
            print("  (prod's slot as the stack deployed it: the cluster could not be read)")
        for entry in state.get("history", [])[:5]:
            unchanged = " (changed nothing)" if entry["result"] == "failed" and not entry.get("changed") else ""
            print(f"  {entry['started']}  {entry['kind']} {entry['result']}{unchanged}  "
                  f"productionSlot={entry['productionSlot']}"
                  + (f"  {entry['message']}" if entry.get("message") else ""))
    if state and state.get("pending"):
        print(f"  the stack config has changes not deployed yet: {', '.join(state['pending'])}")
    for action in result.get("actions") or []:  # what the command did, in order (recover, repair, promote)
        print(f"  did: {action}")
    watch = result.get("prodWatch")
    if watch:
        print(f"prod Endpoints during the update: {watch['polls']} polls at {watch['rate_hz']} Hz, "
              f"{watch['empty']} empty")
