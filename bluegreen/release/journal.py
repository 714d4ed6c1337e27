"""What a release command is in the middle of, kept on disk while it runs.

A command that changes anything writes its entry before its first check and moves it from phase
to phase; it removes it when it ends, however it ends (success, failure, refusal). An entry whose
process is gone is an interrupted command (killed, machine crash): `bluegreen status` names it,
what it may have left half-done, and the one command that finishes it or puts it back
(`bluegreen recover`). The entry lives beside this machine's command lock (locks.py), under the
temp directory, keyed by project directory, stack and app. A command that changes several apps in
one update (`promote --app api --app web`) writes the same entry under each of them, with every
app's changes (`apps`): whichever app a later command names, it sees the interrupted command, and
`recover` finishes or puts back all of them together.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import socket
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

# The phases, in order. Up to "preview" nothing outside this process has changed (a step's config
# edits live in a copy of the stack's config file until its update succeeded).
PHASES = ("checks", "preview", "update", "verify", "rollback", "record")
UNCHANGED = ("checks", "preview")


@dataclass
class Entry:
    command: str
    stack: str
    app: str
    changes: dict[str, Any]  # the step's config edits (of this entry's app)
    message: str = ""
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)  # app -> its edits, when one update made several
    phase: str = "checks"
    pid: int = field(default_factory=os.getpid)
    process_start: str = field(default_factory=lambda: _process_start(os.getpid()))
    host: str = field(default_factory=socket.gethostname)
    started: str = field(default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))

    @property
    def alive(self) -> bool:
        """The command's process still runs (the same process: a pid the kernel reused is not it)."""
        return self.host == socket.gethostname() and _process_start(self.pid) == self.process_start

    def describe(self) -> str:
        return (f"`bluegreen {self.command}` (pid {self.pid}, started {self.started}) stopped during its "
                f"{self.phase} phase")


class Journal:
    """The entries of a command's apps (one, or several changed in one update)."""

    def __init__(self, project_dir: str, stack: str, app: str, *more: str):
        directory = os.path.join(tempfile.gettempdir(), f"bluegreen-journal-{os.getuid()}")
        key = hashlib.sha256(os.path.realpath(project_dir).encode()).hexdigest()[:12]
        self.paths = {name: os.path.join(directory, f"{key}-{stack}-{name}.json") for name in (app, *more)}
        self.path = self.paths[app]
        self.stack, self.app = stack, app
        self.entry: Entry | None = None

    def begin(self, command: str, changes: dict[str, dict[str, Any]], message: str = "") -> None:
        """The entry of `command`, which makes `changes` (app -> its config edits) in one update."""
        every = {app: dict(edits) for app, edits in changes.items()} if len(changes) > 1 else {}
        self.entry = Entry(command, self.stack, self.app, dict(changes.get(self.app, {})), message, apps=every)
        self._write()

    def phase(self, name: str) -> None:
        assert name in PHASES, name
        if self.entry:
            self.entry.phase = name
            self._write()

    def end(self) -> None:
        self.entry = None
        for path in self.paths.values():
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def interrupted(self, app: str | None = None) -> Entry | None:
        """The entry of a command that stopped without ending (of `app`, else the first found among
        the apps); None when there is none, or its command still runs."""
        for path in [self.paths[app]] if app else self.paths.values():
            try:
                with open(path) as f:
                    entry = Entry(**json.load(f))
            except (OSError, ValueError, TypeError):
                continue
            if not entry.alive:
                return entry
        return None

    def _write(self) -> None:
        assert self.entry is not None
        for app, path in self.paths.items():
            own = {**asdict(self.entry), "app": app, "changes": self.entry.apps.get(app, self.entry.changes)}
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            partial = path + ".partial"
            with open(partial, "w") as f:
                json.dump(own, f)
            os.replace(partial, path)  # whole or not at all, whenever the process is killed


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); empty when
    it is not running."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""
