"""The project's stacks through the Pulumi Automation API: config edits, preview, up, history.

Every release step is an ordinary Pulumi update of the project in `project_dir`, exactly what
`pulumi config set --path ...` followed by `pulumi up` does, so it shows in `pulumi stack history`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pulumi import automation as auto

from ..config import is_secret_path, project_keys
from ..contract import COMPONENT_TYPE, PROJECT
from .locks import backend_locks, held_by, pulumi_lock_error

RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


class StackSession:
    """One app in an existing stack of the Pulumi project in `project_dir`.

    `app`: for a program with several BlueGreenApps, the one to work on; its stack config lives in
    the namespace named like it (`api:productionSlot`). Without it, the app's keys are this
    project's (`bluegreen:productionSlot`), as __main__.py reads them.
    """

    def __init__(self, stack_name: str, project_dir: str | None = None, app: str | None = None):
        self.project_dir = project_dir or os.environ.get("BLUEGREEN_PROJECT_DIR") or REPO_ROOT
        workspace = auto.LocalWorkspace(work_dir=self.project_dir)
        try:
            self.stack = auto.Stack.select(stack_name, workspace)
        except auto.StackNotFoundError:
            raise NoSuchStack(f"stack {stack_name!r} does not exist in {self.project_dir}; "
                              f"create it with: pulumi stack init {stack_name}") from None
        except auto.CommandError as error:  # e.g. a name Pulumi does not take: its reason, not a dump
            reason = [line for line in str(error).splitlines() if line.strip().startswith(("error:", "stderr:"))]
            raise NoSuchStack(f"--stack {stack_name!r} cannot be selected in {self.project_dir}: "
                              + (reason[-1].strip().removeprefix("stderr: ") if reason else str(error).strip())
                              + " (a stack name: letters, digits, '-', '_', '.', optionally org/project/)") from None
        self.name, self.app = stack_name, app
        self.namespace = app or PROJECT
        self.touched: set[str] = set()  # top-level keys this session set, to put back if it is refused
        found = self._app_keys()
        self.config_at_start = self._named(found)  # what raw_config() returned when the command began
        if not found:
            apps = sorted(str((r.get("outputs") or {}).get("releaseName")) for r in self._resources(COMPONENT_TYPE))
            if app or len(apps) > 1:
                which = f"app {app!r} (no {app}:* keys)" if app else f"one app (no {PROJECT}:* keys)"
                raise NoSuchStack(f"stack {stack_name!r} has no config for {which}; its apps: "
                                  f"{', '.join(apps) or 'none deployed yet'}. Choose one with --app NAME")

    # --- config ---------------------------------------------------------------------------------

    def raw_config(self) -> dict[str, Any]:
        """The app's stack config, keys without the namespace prefix, objects decoded, read now. With
        --app, the app is named like its namespace unless its config says otherwise."""
        return self._named(self._app_keys())

    def _app_keys(self) -> dict[str, Any]:
        return project_keys({key: value.value for key, value in self.stack.get_all_config().items()}, self.namespace)

    def _named(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {"appName": self.app, **raw} if self.app else raw

    def set_config(self, changes: Mapping[str, Any]) -> None:
        """`pulumi config set --path NAMESPACE:KEY VALUE` for each change; `--secret` where secrets
        live (config.SECRET_PATHS), so that putting an object back never decrypts one."""
        for path, value in changes.items():
            text = json.dumps(value) if isinstance(value, bool) else str(value)
            self.touched.add(path.split(".")[0])
            self.stack.set_config(f"{self.namespace}:{path}", auto.ConfigValue(value=text, secret=is_secret_path(path)),
                                  path=True)

    def restore_config(self, raw: Mapping[str, Any], keys: Iterable[str]) -> None:
        """Put `keys` back as they were in `raw` (read earlier with raw_config()), or remove them
        where they were not set. Objects are rewritten leaf by leaf with --path, so they stay objects."""
        for key in list(keys):
            self.stack.remove_config(f"{self.namespace}:{key}")
            if key in raw:
                self.set_config(dict(_leaves(key, raw[key])))
            self.touched.discard(key)

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

    def preview(self) -> Run:
        return self._run("preview", self.stack.preview, diff=True)

    def up(self) -> Run:
        return self._run("up", self.stack.up)

    def refresh(self) -> Run:
        return self._run("refresh", self.stack.refresh)

    def _run(self, verb: str, operation: Callable, **kwargs: Any) -> Run:
        changes: dict[str, Change] = {}
        lines: list[str] = []

        def on_output(line: str) -> None:
            lines.append(line)
            say(f"  | {line}")

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

        say(f"==> pulumi {verb} --stack {self.name}")
        started = time.monotonic()
        try:
            operation(on_output=on_output, on_event=on_event, color="never", **kwargs)
            ok, error = True, ""
        except auto.CommandError as failure:
            locked = pulumi_lock_error(str(failure), self.name)
            if locked:
                say(f"==> pulumi {verb}: the stack is locked by another update")
                raise locked from None
            ok, error = False, str(failure)
        seconds = time.monotonic() - started
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
        return {key: value.value for key, value in self.stack.outputs().items()}

    def deployed_values(self, app_name: str) -> dict[str, Any] | None:
        """The chart values of the app's Release as the last update deployed them (the Pulumi
        state); None before the first update."""
        for resource in self._resources(RELEASE_TYPE):
            inputs = resource.get("inputs") or {}
            if inputs.get("name") == app_name:
                return inputs.get("values")
        return None

    def _resources(self, type_: str) -> list[dict[str, Any]]:
        state = self.stack.export_stack().deployment or {}
        return [r for r in state.get("resources") or [] if r.get("type") == type_]

    def history(self, limit: int = 5) -> list[dict[str, Any]]:
        """The last updates, newest first, with the production slot each one deployed."""
        entries = []
        for summary in self.stack.history(page_size=limit, page=1) or []:
            slot = (summary.config or {}).get(f"{self.namespace}:productionSlot")
            entries.append({"kind": summary.kind, "result": summary.result, "started": str(summary.start_time),
                            "productionSlot": slot.value if slot else None})
        return entries

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
        return len(pending)


def _leaves(path: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(f"{path}.{key}", item)
    else:
        yield path, value
