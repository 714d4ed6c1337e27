"""The project's stacks through the Pulumi Automation API: config, state, preview, up, history.

Every release step is an ordinary Pulumi update of the project in `project_dir`, the same as
`pulumi config set --path ...` followed by `pulumi up`, so it shows in `pulumi stack history`. Two
things make it cheaper and safer than those two commands:

- The program runs in this process (the Automation API's inline program: the project's own
  `__main__.py`, run with runpy), so an update starts no language host and no second Python, and
  imports the SDK and the program once. A project whose venv is not this interpreter's runs as
  `pulumi up` would run it.
- A step's config edits go into a copy of `Pulumi.<stack>.yaml` (written here with `pulumi config
  set --path`'s meaning; by Pulumi itself, `pulumi config set-all --path --config-file COPY`, where
  a secret changes), which the preview and the update use. The stack's own
  file changes only once the update succeeded (`record`), so a command killed before that leaves
  the config as it was, and never a flipped config that the next `pulumi up` would deploy unchecked.
- An update can be started ahead of the command's last checks (`update_ahead`): the CLI starts,
  takes the stack's lock and reads the state while the checks run, and the program waits at a gate
  until they passed. A refusal closes the gate: the program stops before it registers anything, so
  nothing changes (the history shows that update as failed, with the reason).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import hashlib
import importlib
import json
import os
import runpy
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml
from pulumi import automation as auto
from pulumi.automation._minimum_version import _MINIMUM_VERSION  # the oldest CLI the Automation API takes
from pulumi.automation._stack import StackInitMode  # what Stack.select passes; not re-exported
from semver import VersionInfo

from ..config import is_secret_path, project_keys
from ..contract import COMPONENT_TYPE, PROJECT, RELEASE_TYPE
from . import launch
from .locks import backend_locks, held_by, pulumi_lock_error

HISTORY_SHOWN = 5  # the last updates a command's report shows (status.read_state); read ahead after an update


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Change:
    """One resource change in a preview or update: type, operation, and the property paths it touches."""

    urn: str
    type: str
    op: str
    paths: list[str] = field(default_factory=list)


@dataclass
class Run:
    ok: bool
    seconds: float
    changes: list[Change]
    output: str
    error: str = ""


class NoSuchStack(Exception):
    """The stack (or the app in it) the command names does not exist: a refusal."""


class _Workspace(auto.LocalWorkspace):
    """The Automation API's workspace, without `pulumi stack select`: every command here names its
    stack (--stack), and selecting one would change the stack the user's own `pulumi` commands act
    on. Whether the stack exists is seen when its state is read, which every command does first."""

    def select_stack(self, stack_name: str) -> None:
        return None


class _LaunchedCommand(auto.PulumiCommand):
    """The Automation API's handle on the `pulumi` on PATH, given the version that the launch read
    (bluegreen.release.launch) instead of running `pulumi version` once more."""

    def __init__(self, version: VersionInfo, starting: Callable[[], None] = lambda: None):
        # not the parent's __init__: it runs `pulumi version`
        self.command, self.version, self.starting = "pulumi", version, starting

    def run(self, *args: Any, **kwargs: Any) -> auto.CommandResult:
        self.starting()
        return super().run(*args, **kwargs)


def _pulumi_command(starting: Callable[[], None] = lambda: None) -> auto.PulumiCommand | None:
    """The launched command, when the launch read a version the Automation API takes; otherwise
    None, and the workspace runs and checks `pulumi version` itself (with its own error).
    `starting` is called as each command it runs starts."""
    text = launch.pulumi_version()
    try:
        version = VersionInfo.parse(text) if text else None
    except ValueError:
        return None
    return _LaunchedCommand(version, starting) if version and version >= _MINIMUM_VERSION else None


class _Stack(auto.Stack):
    """The Automation API's stack, without the reads it makes after every update that succeeded:
    the outputs (`pulumi stack output` twice, about 0.5 s after the switch) and a summary (`pulumi
    stack history`, 0.25 s). The tool reads the state and the history itself, once per change and
    side by side (StackSession._read_ahead), and a step's changes from the engine's events."""

    def outputs(self) -> auto.OutputMap:
        return {}

    def info(self, show_secrets: bool = True) -> auto.UpdateSummary:
        # Asked by up() and refresh() once the command succeeded, and read by nothing here: so
        # it holds what is known then, that the command succeeded (now).
        now = datetime.datetime.now()
        return auto.UpdateSummary(kind="", start_time=now, message="", environment={}, config={},
                                  result="succeeded", end_time=now)


class Gate:
    """Holds an update's program (in this process) until the command has decided: `open` lets it
    run; `refuse` makes it stop before it registers anything, so the update changes nothing."""

    def __init__(self) -> None:
        self._decided = threading.Event()
        self.refusal: str | None = None

    @property
    def decided(self) -> bool:
        return self._decided.is_set()

    def open(self) -> None:
        self._decided.set()

    def refuse(self, reason: str) -> None:
        self.refusal = reason
        self._decided.set()

    def wait(self) -> None:
        self._decided.wait()
        if self.refusal is not None:
            raise pulumi.RunError(f"bluegreen: the release command refused before this update's program ran; "
                                  f"nothing was changed: {self.refusal}")


class Ahead:
    """An update started ahead of the command's last checks (StackSession.update_ahead). `go()`
    lets its program run and returns the update's result."""

    def __init__(self, finish: Callable[[], Run], gate: Gate | None = None):
        self._finish, self.gate = finish, gate

    def go(self) -> Run:
        if self.gate:
            self.gate.open()
        return self._finish()


class StackSession:
    """An existing stack of the Pulumi project in `project_dir`, and the app a command works on.

    `app`: for a program with several BlueGreenApps, the one to work on; its stack config lives in
    the namespace named like it (`api:productionSlot`). Without it, the app's keys are this
    project's (`bluegreen:productionSlot`), as __main__.py reads them. A preview, an update or a
    record takes the app's paths ("productionSlot") and keys of any app's namespace
    ("web:productionSlot"): one update can change several apps.
    """

    def __init__(self, stack_name: str, project_dir: str | None = None, app: str | None = None,
                 history: bool = False):
        self.project_dir = launch.project_dir(project_dir)
        if not shutil.which("pulumi"):  # said now: the Automation API starts in the background
            raise FileNotFoundError(2, "No such file or directory", "pulumi")
        program = inline_program(self.project_dir)
        self.inline = program is not None
        # The Automation API starts (its `pulumi version` check) and the state (and with `history`,
        # for a command that only reads, the last updates) is read side by side, while the command
        # reads the config and the cluster: the first update or preview needs the one, every check
        # the other. The program's imports (0.07 s) wait until the first `pulumi` command of the
        # stack has started, an update's or a preview's: they would slow the way to it, and its
        # CLI takes longer than they do to call the program.
        background = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bluegreen")
        self.name = stack_name
        self._program = program
        started = threading.Event()

        def open_stack() -> auto.Stack:
            command = _pulumi_command(started.set)
            if command is None:  # the Automation API's own command says nothing as it starts
                started.set()
            workspace = _Workspace(work_dir=self.project_dir, program=program, pulumi_command=command)
            return _Stack(stack_name, workspace, StackInitMode.SELECT)

        self._stack: concurrent.futures.Future[auto.Stack] = background.submit(open_stack)
        background.shutdown(wait=False)
        if program:  # a daemon: a command that runs no update (status) exits without the imports
            threading.Thread(target=_warm_imports, args=(started,), name="bluegreen-imports", daemon=True).start()
        self._state: dict[str, Any] | None = None  # the exported state, read once until it changes
        self._reading = threading.Lock()  # held while the state is read: one read, however many ask
        self._exported: concurrent.futures.Future | None = None  # the state, being read (_read_ahead)
        self._summaries: concurrent.futures.Future | None = None  # the last updates, being read
        self._read_ahead(history=history)
        self.app = app
        self.namespace = namespace_of(app)
        self.config_file = os.path.join(self.project_dir, f"Pulumi.{stack_name}.yaml")
        self._config: dict[str, Any] | None = None  # every key of the stack config, as its file holds it

    def apps(self) -> list[str]:
        """The apps the stack deployed (each BlueGreenApp's release name), sorted."""
        return sorted(str((r.get("outputs") or {}).get("releaseName")) for r in self._resources(COMPONENT_TYPE))

    @property
    def stack(self) -> auto.Stack:
        """The Automation API's stack, once its workspace has started."""
        return self._stack.result()

    @stack.setter
    def stack(self, stack: auto.Stack) -> None:
        self._stack = concurrent.futures.Future()
        self._stack.set_result(stack)

    # --- config ---------------------------------------------------------------------------------

    def raw_config(self) -> dict[str, Any]:
        """The app's stack config (keys without the namespace prefix, objects decoded), as the stack's
        file holds it; a secret's value is "[secret]": no command needs one, and decrypting costs a
        key derivation. With --app, the app is named like its namespace unless its config says otherwise."""
        return self.keys_of(self.app)

    def app_config(self, app: str | None) -> dict[str, Any]:
        """raw_config of `app` (None: the project's own namespace), one of the stack's apps; refused
        (NoSuchStack, naming the stack's apps) when the stack config has no key of it."""
        found = self.keys_of(app)
        if not found:
            apps = self.apps()
            if app or len(apps) > 1:
                which = f"app {app!r} (no {app}:* keys)" if app else f"one app (no {PROJECT}:* keys)"
                raise NoSuchStack(f"stack {self.name!r} has no config for {which}; its apps: "
                                  f"{', '.join(apps) or 'none deployed yet'}. Choose one with --app NAME")
        return found

    def keys_of(self, app: str | None) -> dict[str, Any]:
        """raw_config of `app`; empty when the stack config has no key of it."""
        if self._config is None:
            every = self._stack_file_config()
            if every is None:  # no file of its own, or an ESC environment: Pulumi merges them
                try:
                    every = {key: value.value for key, value in self.stack.get_all_config().items()}
                except auto.CommandError as error:
                    raise self._no_such_stack(error) from None
            self._config = every
        found = project_keys(self._config, namespace_of(app))
        return {"appName": app, **found} if app and found else found

    def _stack_file_config(self) -> dict[str, Any] | None:
        try:
            with open(self.config_file) as f:
                document = yaml.safe_load(f) or {}
        except FileNotFoundError:
            return None
        if not isinstance(document, dict) or "environment" in document:
            return None
        return {key: _hidden(value) for key, value in (document.get("config") or {}).items()}

    def record(self, changes: Mapping[str, Any]) -> None:
        """Write `changes` into the stack's config file: after the update that deployed them."""
        if changes:
            self._set_all(changes, self.config_file)
            self._config = None

    def _set_all(self, changes: Mapping[str, Any], config_file: str) -> None:
        """`pulumi config set-all --path` of every change in one call, into `config_file`; `--secret`
        where secrets live (config.SECRET_PATHS)."""
        args = ["config", "set-all", "--path", "--stack", self.name, "--config-file", config_file]
        for key, value in self._keys(changes).items():
            text = json.dumps(value) if isinstance(value, bool) else str(value)
            args += ["--secret" if is_secret_path(key.split(":", 1)[1]) else "--plaintext", f"{key}={text}"]
        self._cli(args)

    def _keys(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """`changes` as keys of the stack config: a path of this app ("productionSlot") in its
        namespace, as `pulumi config set` reads a key without one; a key of another app's namespace
        ("web:productionSlot", see qualified) as it is. One update can so change several apps."""
        return {path if ":" in path.split(".")[0] else qualified(self.namespace, path): value
                for path, value in changes.items()}

    @contextlib.contextmanager
    def _config_with(self, changes: Mapping[str, Any]) -> Iterator[str | None]:
        """A copy of the stack's config file with `changes` made, for one preview or update; None
        without changes (the stack's own file is used). The copy is written here, with the same
        `--path` meaning as `pulumi config set`; a change under a secret is made by Pulumi."""
        if not changes:
            yield None
            return
        handle, copy = tempfile.mkstemp(prefix=f"bluegreen-Pulumi.{self.name}.", suffix=".yaml")
        os.close(handle)
        try:
            if os.path.exists(self.config_file):
                shutil.copyfile(self.config_file, copy)
            keys = self._keys(changes)
            if any(is_secret_path(key.split(":", 1)[1]) for key in keys):
                self._set_all(keys, copy)
            else:
                with open(copy) as f:
                    document = yaml.safe_load(f) or {}
                config = document.setdefault("config", {})
                for key, value in keys.items():
                    _set_path(config, key, value)
                with open(copy, "w") as f:
                    yaml.safe_dump(document, f, sort_keys=False)
            yield copy
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(copy)

    def _cli(self, args: list[str]) -> str:
        workspace = self.stack.workspace
        try:
            return workspace.pulumi_command.run(args, workspace.work_dir, dict(workspace.env_vars)).stdout
        except auto.CommandError as failure:
            locked = pulumi_lock_error(str(failure), self.name)
            if locked:
                raise locked from None
            raise

    # --- operations -----------------------------------------------------------------------------

    def locks(self) -> list[dict] | None:
        """Pulumi's locks on this stack in the state backend (locks.backend_locks); None when the
        backend cannot be read here."""
        backend = os.environ.get("PULUMI_BACKEND_URL") or self.stack.workspace.who_am_i().url or ""
        try:
            return backend_locks(backend, self.stack.workspace.project_settings().name, self.name)
        except (OSError, ValueError) as error:
            say(f"==> could not read the stack's lock in {backend.split('?')[0]} ({error}); Pulumi will check it")
            return None

    def check_unlocked(self) -> None:
        """Refuse (StackLocked) while another update holds this stack's lock in the state backend,
        before anything is changed. A backend that cannot be read here is left to Pulumi's check."""
        found = self.locks()
        if found:
            raise held_by(found, self.name)

    def preview(self, changes: Mapping[str, Any] | None = None) -> Run:
        """What an update with `changes` would do; the stack's config file is not touched."""
        with self._config_with(changes or {}) as config_file:
            return self._run("preview", self.stack.preview, diff=True, config_file=config_file)

    def up(self, changes: Mapping[str, Any] | None = None, message: str = "", record: bool = True) -> Run:
        """An update with `changes`; on success they are written into the stack's config file, unless
        `record` is false (then the caller records them once it has verified the result)."""
        with self._config_with(changes or {}) as config_file:
            run = self._run("up", self.stack.up, message=message or None, config_file=config_file,
                            show_secrets=False)
        if run.ok and record:
            self.record(changes or {})
        return run

    @contextlib.contextmanager
    def update_ahead(self, changes: Mapping[str, Any] | None = None, message: str = "",
                     record: bool = True) -> Iterator[Ahead]:
        """An update with `changes`, started now, whose program waits until `go()`: the CLI's start,
        the lock and the state read overlap the caller's checks. If the block ends without `go()` (a
        refusal, an error), the program stops before it registers anything, and the update ends
        having changed nothing. A program that runs outside this process cannot wait: then the
        update runs at `go()`, as `up` would."""
        if self._program is None:
            yield Ahead(lambda: self.up(changes, message, record))
            return
        program, gate = self._program, Gate()

        def gated() -> None:
            gate.wait()
            program()

        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="update")
        with self._config_with(changes or {}) as config_file:
            running = pool.submit(self._run, "up", self.stack.up, message=message or None, config_file=config_file,
                                  show_secrets=False, program=gated, gate=gate)
            pool.shutdown(wait=False)

            def finish() -> Run:
                run = running.result()
                if run.ok and record:
                    self.record(changes or {})
                return run

            try:
                yield Ahead(finish, gate)
            finally:
                if not gate.decided:
                    gate.refuse("the command stopped before its update")
                    with contextlib.suppress(Exception):  # the command's own error is the one to report
                        running.result()

    def refresh(self) -> Run:
        return self._run("refresh", self.stack.refresh)

    def _run(self, verb: str, operation: Callable, gate: Gate | None = None, **kwargs: Any) -> Run:
        """`operation` (the Automation API's preview, up or refresh) with its output shown and its
        changes collected. With a `gate`, the output is held until the gate opens, and a refused
        update is not shown at all: the command says why it refused."""
        changes: dict[str, Change] = {}
        lines: list[str] = []
        shown = 0

        def on_output(line: str) -> None:
            nonlocal shown
            lines.append(line)
            if gate is None or (gate.decided and gate.refusal is None):
                for held in lines[shown:]:
                    say(f"  | {held}")
                shown = len(lines)

        def on_event(event: auto.EngineEvent) -> None:
            for step_event in (event.resource_pre_event, event.res_outputs_event):
                if step_event is None or step_event.metadata is None:
                    continue
                meta = step_event.metadata
                change = changes.setdefault(meta.urn, Change(meta.urn, meta.type, str(meta.op.value)))
                if meta.op.value != "same":
                    change.op = str(meta.op.value)
                # Property paths ("values.productionSlot") where the provider gives them, else the
                # top-level keys only ("values"), which a flip check then treats as unexplained.
                paths = meta.detailed_diff or meta.diffs or []
                change.paths = sorted(set(change.paths) | set(paths))

        say(f"==> pulumi {verb} --stack {self.name}" + (" (started ahead; its program waits for the checks)"
                                                        if gate else ""))
        started = time.monotonic()
        try:
            operation(on_output=on_output, on_event=on_event, color="never",
                      **{key: value for key, value in kwargs.items() if value is not None})
            ok, error = True, ""
        except auto.CommandError as failure:
            locked = pulumi_lock_error(str(failure), self.name)
            if locked:
                say(f"==> pulumi {verb}: the stack is locked by another update")
                raise locked from None
            ok, error = False, str(failure)
        finally:
            if verb != "preview":  # the update or refresh changed the state (or may have, when it failed)
                self._state = self._exported = self._summaries = None
        if verb != "preview":  # what it left, read while the command records and verifies
            self._read_ahead(history=True)
        seconds = time.monotonic() - started
        if gate and gate.refusal is not None:
            say(f"==> pulumi {verb} ended before its program ran (refused; nothing changed)")
        else:
            say(f"==> pulumi {verb} {'succeeded' if ok else 'FAILED'} in {seconds:.1f} s")
        return Run(ok, seconds, list(changes.values()), "\n".join(lines), error)

    # --- state ----------------------------------------------------------------------------------

    def outputs(self, app_name: str) -> dict[str, Any]:
        """What the app's BlueGreenApp registered as its outputs in the last update (the names the
        stack exports for a one-app program); empty before the first update."""
        for resource in self._resources(COMPONENT_TYPE):
            outputs = resource.get("outputs") or {}
            if outputs.get("releaseName") == app_name:
                return outputs
        if self.app:
            return {}
        # A state from before the component registered all its outputs: the stack's exports.
        stack = next(iter(self._resources("pulumi:pulumi:Stack")), {})
        return dict(stack.get("outputs") or {})

    def deployed_values(self, app_name: str) -> dict[str, Any] | None:
        """The chart values of the app's Release as the last update deployed them (the Pulumi
        state); None when the state holds no Release for it."""
        for resource in self._resources(RELEASE_TYPE):
            inputs = resource.get("inputs") or {}
            if inputs.get("name") == app_name:
                return inputs.get("values")
        return None

    def _resources(self, type_: str) -> list[dict[str, Any]]:
        state = self._export().get("deployment") or {}
        return [r for r in state.get("resources") or [] if r.get("type") == type_]

    def read_again(self) -> None:
        """The state read anew from now on: what was read (or is being read) may be older than a
        change another command made since."""
        launch.drop_export()
        self._state = self._exported = None
        self._read_ahead(history=self._summaries is not None)

    def _read_ahead(self, history: bool) -> None:
        """The state, and with `history` the last updates, as they are now, read in the background
        from now on: at the start, and after anything that changed them (an update's end, when the
        command goes on to record and verify). Each read is one `pulumi` start (0.25 s); side by
        side they overlap the command's own work. Whatever was read before is dropped."""
        self._state = None
        reads = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="read-ahead")
        self._exported = reads.submit(_export, self.name, self.project_dir)
        self._summaries = reads.submit(self._history, HISTORY_SHOWN) if history else None
        reads.shutdown(wait=False)

    def _export(self) -> dict[str, Any]:
        """The stack's state, read once per change: every check of a command shares it. A check on
        another thread that asks while it is being read waits for that read."""
        with self._reading:
            if self._state is None:
                exported, self._exported = self._exported, None
                try:
                    self._state = exported.result() if exported else _export(self.name, self.project_dir)
                except auto.CommandError as error:
                    raise self._no_such_stack(error) from None
            return self._state

    def _no_such_stack(self, error: auto.CommandError) -> NoSuchStack:
        """Pulumi's error on reading the stack, as a refusal that names it: no such stack, or a name
        Pulumi does not take (its reason, not a dump)."""
        if "no stack named" in str(error):
            return NoSuchStack(f"stack {self.name!r} does not exist in {self.project_dir}; "
                               f"create it with: pulumi stack init {self.name}")
        reason = [line for line in str(error).splitlines() if line.strip().startswith(("error:", "stderr:"))]
        return NoSuchStack(f"--stack {self.name!r} cannot be read in {self.project_dir}: "
                           + (reason[-1].strip().removeprefix("stderr: ") if reason else str(error).strip())
                           + " (a stack name: letters, digits, '-', '_', '.', optionally org/project/)")

    def history(self, limit: int = HISTORY_SHOWN, app: str | None = None) -> list[dict[str, Any]]:
        """The last updates, newest first, with the production slot each one deployed (of `app`, by
        default this session's), its message and how many resources it changed (a refused release
        command's update ended having changed none)."""
        entries = []
        key = qualified(namespace_of(app or self.app), "productionSlot")
        ahead = self._summaries if limit <= HISTORY_SHOWN else None
        summaries = ahead.result() if ahead else self._history(limit)
        for summary in summaries[:limit]:
            slot = (summary.config or {}).get(key)
            changed = sum(count for op, count in (summary.resource_changes or {}).items() if op != "same")
            entries.append({"kind": summary.kind, "result": summary.result, "started": str(summary.start_time),
                            "productionSlot": slot.value if slot else None, "message": summary.message,
                            "changed": changed})
        return entries

    def _history(self, limit: int) -> list[auto.UpdateSummary]:
        return self.stack.history(page_size=limit, page=1, show_secrets=False) or []

    def stack_names(self) -> list[str]:
        """The stacks of this project in the state backend (`pulumi stack ls`)."""
        return sorted(summary.name for summary in self.stack.workspace.list_stacks())

    def cancel(self) -> None:
        """`pulumi cancel`: end the update that holds the stack's lock (a stale one after a kill).
        With no lock it succeeds too."""
        self.stack.cancel()

    def clear_pending_operations(self) -> int:
        """Drop the pending operations an interrupted update left in the state; returns how many."""
        deployment = self.stack.export_stack()
        state = deployment.deployment
        if state is None:  # a stack that was never updated has no state, so nothing is pending
            return 0
        pending = state.get("pending_operations") or []
        if pending:
            deployment.deployment = {**state, "pending_operations": []}
            self.stack.import_stack(deployment)
            self._read_ahead(history=False)
        return len(pending)


def namespace_of(app: str | None) -> str:
    """The stack config namespace of an app: named like it (--app NAME), or this project's."""
    return app or PROJECT


def qualified(namespace: str, path: str) -> str:
    """A config path of an app ("productionSlot") as a key of the stack config ("api:productionSlot")."""
    return f"{namespace}:{path}"


def _export(stack_name: str, project_dir: str) -> dict[str, Any]:
    """The stack's state: the read started at launch when it is this stack's (launch.take_export),
    else a read of its own (launch.start_export: `pulumi stack export`, without secrets)."""
    reading = launch.take_export(stack_name, project_dir) or launch.start_export(stack_name, project_dir)
    out, err = reading.communicate()
    if reading.returncode != 0:
        raise auto.CommandError(auto.CommandResult(out, err, reading.returncode))
    return json.loads(out or "{}")


def _warm_imports(after: threading.Event) -> None:
    """What the program imports, imported ahead of its first run (it runs in this process), once
    `after` is set."""
    after.wait()
    with contextlib.suppress(Exception):  # the program's own run reports any import error
        importlib.import_module("pulumi_kubernetes.helm.v3")


def inline_program(project_dir: str) -> Callable[[], None] | None:
    """The project's program as a function that runs it in this process: what `pulumi up` would run
    (the project's `main`, else its `__main__.py`), in the project's directory. None when it cannot
    run here: a runtime other than Python, a venv other than this interpreter's, or
    BLUEGREEN_INLINE=0 (then the CLI runs the program, with its own language host)."""
    if os.environ.get("BLUEGREEN_INLINE", "1") == "0":
        return None
    project = _project_file(project_dir)
    runtime = project.get("runtime")
    runtime = {"name": runtime} if isinstance(runtime, str) else runtime or {}
    name, venv = runtime.get("name"), (runtime.get("options") or {}).get("virtualenv")
    if name != "python" or (venv and os.path.realpath(os.path.join(project_dir, venv)) != os.path.realpath(sys.prefix)):
        return None
    main = os.path.join(project_dir, project.get("main") or "")
    program = os.path.join(main, "__main__.py") if os.path.isdir(main) else main
    if not os.path.isfile(program) or not _same_package(project_dir):
        return None

    def run() -> None:
        previous = os.getcwd()
        os.chdir(project_dir)  # Pulumi runs a program in its project's directory (the chart's path is relative)
        if project_dir not in sys.path:
            sys.path.insert(0, project_dir)
        try:
            runpy.run_path(program, run_name="__main__")
        finally:
            os.chdir(previous)

    return run


def _same_package(project_dir: str) -> bool:
    """A project with a `bluegreen` package of its own (this checkout, a copy of it) runs that one
    under `pulumi up`: the program may run here only if it is the package this process runs."""
    own = os.path.join(project_dir, PROJECT)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isfile(os.path.join(own, "__init__.py")) or os.path.realpath(own) == os.path.realpath(here):
        return True
    return _package_digest(own) == _package_digest(here)


def _package_digest(directory: str) -> str:
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith(".pyc"):
                path = os.path.join(root, name)
                digest.update(os.path.relpath(path, directory).encode() + b"\0")
                with open(path, "rb") as f:
                    digest.update(f.read() + b"\0")
    return digest.hexdigest()


def _project_file(project_dir: str) -> dict[str, Any]:
    for name in ("Pulumi.yaml", "Pulumi.yml"):
        with contextlib.suppress(OSError), open(os.path.join(project_dir, name)) as f:
            return yaml.safe_load(f) or {}
    return {}



def _hidden(value: Any) -> Any:
    """A stack file's config value with each secret (`{secure: CIPHERTEXT}`) as "[secret]"."""
    if isinstance(value, dict):
        return "[secret]" if set(value) == {"secure"} else {key: _hidden(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_hidden(item) for item in value]
    return value


def _set_path(config: dict[str, Any], key: str, value: Any) -> None:
    """`pulumi config set --path KEY VALUE` on a stack file's config map: "ns:green.image" sets the
    field image of the object ns:green (made when missing)."""
    head, *fields = key.split(".")
    if not fields:
        config[head] = value
        return
    node = config.setdefault(head, {})
    for name in fields[:-1]:
        node = node.setdefault(name, {})
    node[fields[-1]] = value
