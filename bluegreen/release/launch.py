"""The release tool's entry point (`bluegreen`, `python -m bluegreen`).

Before Python imports the tool (the Pulumi SDK, gRPC: about 0.3 s), it starts the first thing every
command needs and that needs nothing of the tool: the state of the stack the command names (`pulumi
stack export`, a `pulumi` start: 0.3 s). The two overlap, the checks have the state sooner, and a
command's update can start sooner: it waits for neither.

The Automation API also asks for `pulumi version` before its first command: that too is a `pulumi`
start. The version is kept per `pulumi` binary (its path, size and modification time) in the user's
cache, so it runs once per installed Pulumi, not once per command; without a kept one it is started
here as well.

`--stack` and `--project-dir` are defined here (target_options) for the command line too, so that
the stack read at launch is the one the command opens; StackSession takes the launched read only if
it is (take_export), and otherwise reads its own.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import time
from typing import NoReturn

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Where the toolchain keeps its builds (scripts/toolchain.sh): the versions of `pulumi` binaries too.
VERSION_CACHE = os.path.join(os.environ.get("BLUEGREEN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                                "bluegreen"), "pulumi-version.json")
_ENV = {"PULUMI_SKIP_UPDATE_CHECK": "true"}  # no network call to ask for a newer Pulumi

STARTED: float | None = None  # when main() began (time.time()): the command's start, when its state read began
_version: subprocess.Popen | None = None  # `pulumi version`, started at launch when none was kept
_read: str | None = None  # the version, once known
_export: tuple[str, str, subprocess.Popen] | None = None  # (stack, project dir, its state read) started at launch


def main(argv: list[str] | None = None) -> int:
    global STARTED, _version, _read, _export
    STARTED = time.time()
    given = sys.argv[1:] if argv is None else argv
    if shutil.which("pulumi") and not {"-h", "--help"} & set(given):
        _read = _kept_version()
        if _read is None:
            _version = subprocess.Popen(["pulumi", "version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True, env={**os.environ, **_ENV})
        target = _target(given)
        if target:
            _export = (*target, start_export(*target))
            atexit.register(drop_export)
    from .cli import main as run

    return run(argv)


# --- the stack a command names ------------------------------------------------------------------

def target_options(parser: argparse.ArgumentParser) -> None:
    """--stack and --project-dir, as every command takes them."""
    parser.add_argument("--stack", default=os.environ.get("BLUEGREEN_STACK", "staging"),
                        help="Pulumi stack (environment); default: staging")
    parser.add_argument("--project-dir", help="the Pulumi project (default: this checkout)")


def project_dir(given: str | None) -> str:
    """The Pulumi project's directory: --project-dir, else $BLUEGREEN_PROJECT_DIR, else this checkout."""
    return os.path.abspath(given or os.environ.get("BLUEGREEN_PROJECT_DIR") or REPO_ROOT)


class _Quiet(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # the command line's own parser says what is wrong
        raise ValueError(message)


def _target(argv: list[str]) -> tuple[str, str] | None:
    """(stack, project dir) that the command line names; None when it names no command first (its
    own parser will say what is wrong). On an unusual line (an abbreviated option) the command's own
    parser may see another stack: StackSession takes the read only if it is of the stack it opens."""
    parser = _Quiet(add_help=False)
    target_options(parser)
    try:
        known, rest = parser.parse_known_args(argv)
    except ValueError:
        return None
    if not rest or rest[0].startswith("-"):  # no command first: a usage error to come
        return None
    return known.stack, project_dir(known.project_dir)


def start_export(stack: str, directory: str) -> subprocess.Popen:
    """`pulumi stack export`, without --show-secrets: no command reads a secret from the state, and
    decrypting them all costs as much again as the export."""
    return subprocess.Popen(["pulumi", "stack", "export", "--stack", stack], cwd=directory, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **_ENV})


def take_export(stack: str, directory: str) -> subprocess.Popen | None:
    """The state read started at launch, if it is of `stack` in `directory`; once (a later read is
    of a state that may have changed since)."""
    global _export
    if _export is None or _export[:2] != (stack, directory):
        return None
    started, _export = _export[2], None
    return started


def drop_export() -> None:
    """The state read started at launch, if not taken, is stopped and not taken later: at exit (a
    usage error, a refusal), and when the state it reads may have changed since (read_again)."""
    global _export
    if _export is not None and _export[2].poll() is None:
        _export[2].kill()
        _export[2].wait()
    _export = None


# --- the version of `pulumi` --------------------------------------------------------------------

def pulumi_version() -> str | None:
    """The version of the `pulumi` on PATH ("3.260.0"): kept for this binary, or printed by the
    `pulumi version` started at launch (then kept), read once (every stack a command opens asks).
    None when neither (the tool used as a library) or it failed: the Automation API then asks."""
    global _read
    if _read is None and _version is not None:
        out, _ = _version.communicate()
        _read = out.strip().removeprefix("v") if _version.returncode == 0 and out.strip() else ""
        if _read:
            _keep_version(_read)
    return _read or None


def _binary() -> tuple[str, list[int]] | None:
    """The `pulumi` on PATH: its real path, and its size and modification time."""
    found = shutil.which("pulumi")
    try:
        info = os.stat(found) if found else None
    except OSError:
        return None
    return (os.path.realpath(found), [info.st_size, info.st_mtime_ns]) if found and info else None


def _kept() -> dict:
    try:
        with open(VERSION_CACHE) as f:
            kept = json.load(f)
    except (OSError, ValueError):
        return {}
    return kept if isinstance(kept, dict) else {}


def _kept_version() -> str | None:
    binary = _binary()
    if binary is None:
        return None
    path, identity = binary
    entry = _kept().get(path)
    if isinstance(entry, dict) and entry.get("binary") == identity and isinstance(entry.get("version"), str):
        return entry["version"]
    return None


def _keep_version(version: str) -> None:
    """The version, kept under the binary's path; the versions of other `pulumi` binaries stay
    while they exist (a removed install or an old toolchain build is dropped)."""
    binary = _binary()
    if binary is None:
        return
    path, identity = binary
    kept = {other: entry for other, entry in _kept().items() if os.path.exists(other)}
    kept[path] = {"binary": identity, "version": version}
    try:
        os.makedirs(os.path.dirname(VERSION_CACHE), exist_ok=True)
        partial = f"{VERSION_CACHE}.{os.getpid()}"
        with open(partial, "w") as f:
            json.dump(kept, f, indent=1)
        os.replace(partial, VERSION_CACHE)
    except OSError:  # a home that cannot be written: the version is read per command, as before
        pass
