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

from ..config import PROJECT, project_keys

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


class StackSession:
    """One existing stack of the bluegreen project in `project_dir`."""

    def __init__(self, stack_name: str, project_dir: str | None = None):
        self.project_dir = project_dir or os.environ.get("BLUEGREEN_PROJECT_DIR") or REPO_ROOT
        workspace = auto.LocalWorkspace(work_dir=self.project_dir)
        try:
            self.stack = auto.Stack.select(stack_name, workspace)
        except auto.StackNotFoundError:
            raise SystemExit(f"bluegreen: stack {stack_name!r} does not exist in {self.project_dir}; "
                             f"create it with: pulumi stack init {stack_name}") from None
        self.name = stack_name

    # --- config ---------------------------------------------------------------------------------

    def raw_config(self) -> dict[str, Any]:
        """This project's stack config, keys without the `bluegreen:` prefix, objects decoded."""
        return project_keys({key: value.value for key, value in self.stack.get_all_config().items()})

    def set_config(self, changes: Mapping[str, Any]) -> None:
        """`pulumi config set --path KEY VALUE` for each change."""
        for path, value in changes.items():
            text = json.dumps(value) if isinstance(value, bool) else str(value)
            self.stack.set_config(path, auto.ConfigValue(value=text), path=True)

    def restore_config(self, raw: Mapping[str, Any], keys: Iterable[str]) -> None:
        """Put `keys` back as they were in `raw` (read earlier with raw_config()), or remove them
        where they were not set. Objects are rewritten leaf by leaf with --path, so they stay objects."""
        for key in keys:
            self.stack.remove_config(key)
            if key in raw:
                self.set_config(dict(_leaves(key, raw[key])))

    # --- operations -----------------------------------------------------------------------------

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
            ok, error = False, str(failure)
        seconds = time.monotonic() - started
        say(f"==> pulumi {verb} {'succeeded' if ok else 'FAILED'} in {seconds:.1f} s")
        return Run(ok, seconds, list(changes.values()), "\n".join(lines), error)

    # --- state ----------------------------------------------------------------------------------

    def outputs(self) -> dict[str, Any]:
        return {key: value.value for key, value in self.stack.outputs().items()}

    def deployed_values(self) -> dict[str, Any] | None:
        """The chart values of the Release as the last update deployed them (the Pulumi state);
        None before the first update."""
        state = self.stack.export_stack().deployment or {}
        for resource in state.get("resources") or []:
            if resource.get("type") == RELEASE_TYPE:
                return (resource.get("inputs") or {}).get("values")
        return None

    def history(self, limit: int = 5) -> list[dict[str, Any]]:
        """The last updates, newest first, with the production slot each one deployed."""
        entries = []
        for summary in self.stack.history(page_size=limit, page=1) or []:
            slot = (summary.config or {}).get(f"{PROJECT}:productionSlot")
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
