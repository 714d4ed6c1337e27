"""How many `pulumi` processes and Python interpreters one flip of a method starts: every execve of
the flip's commands and their children, traced with strace (-f). The tool's overhead in processes,
which is behaviour, not timing: the same on a quiet or a busy machine."""

from __future__ import annotations

import os
import re
import shutil
import tempfile

from bench.flips import Commands

# strace -f -o FILE writes "PID execve("/path", [...], ...) = 0" for each successful exec.
_EXEC = re.compile(r'^\d+\s+execve\("(?P<path>[^"]+)".* = 0$')
# The plugin the CLI starts to run a Python program (not started by the release tool's inline program).
LANGUAGE_HOST = "pulumi-language-python"


def available() -> bool:
    return shutil.which("strace") is not None


def count(commands: Commands) -> dict[str, int | list[str]]:
    """Run the flip's commands under strace; the pulumi CLI processes, language hosts and Python
    interpreters they started (a Python script counts as an interpreter; the language host, Pulumi's
    own or this machine's stand-in, is a Go program and is counted by its name)."""
    with tempfile.TemporaryDirectory(prefix="bench-strace-") as directory:
        log = os.path.join(directory, "trace")
        commands(wrap=["strace", "-f", "-qq", "-A", "-e", "trace=execve", "-e", "signal=none", "-o", log])
        with open(log) as f:
            executed = [m["path"] for m in map(_EXEC.match, f.read().splitlines()) if m]
    pulumi = [path for path in executed if os.path.basename(path) == "pulumi"]
    hosts = [path for path in executed if os.path.basename(path) == LANGUAGE_HOST]
    python = [path for path in executed if _is_python(path)]
    return {"pulumi_processes": len(pulumi), "language_host_processes": len(hosts), "python_processes": len(python),
            "python_programs": sorted({os.path.basename(path) for path in python})}


def _is_python(path: str) -> bool:
    if re.fullmatch(r"python[0-9.]*", os.path.basename(path)):
        return True
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first
