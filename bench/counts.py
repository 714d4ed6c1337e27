"""What one flip of a method costs in counts, which are behaviour, not timing (the same on a quiet
or a busy machine):
- how many `pulumi` processes and Python interpreters it starts: every execve of the flip's commands
  and their children, traced with strace (-f). The tool's overhead in processes;
- how many requests the API server answered during it, by its own counter: all, and the discovery
  and OpenAPI reads among them (a client learning the server's types and schemas: the cost of
  Helm inside Pulumi's provider, against the helm CLI's)."""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import tempfile

from bench.flips import Commands

# strace -f -o FILE writes "PID execve("/path", [...], ...) = 0" for each successful exec; when
# processes exec at the same moment, it splits the line: "PID execve("/path", ... <unfinished ...>",
# then "PID <... execve resumed>) = 0".
_EXEC = re.compile(r'^(?P<pid>\d+)\s+execve\("(?P<path>[^"]+)"(?P<rest>.*)$')
_RESUMED = re.compile(r'^(?P<pid>\d+)\s+<\.\.\. execve resumed>(?P<rest>.*)$')
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
            executed = executables(f.read())
    pulumi = [path for path in executed if os.path.basename(path) == "pulumi"]
    hosts = [path for path in executed if os.path.basename(path) == LANGUAGE_HOST]
    python = [path for path in executed if _is_python(path)]
    return {"pulumi_processes": len(pulumi), "language_host_processes": len(hosts), "python_processes": len(python),
            "python_programs": sorted({os.path.basename(path) for path in python})}


def executables(trace: str) -> list[str]:
    """The programs that strace's execve lines show executed (exec'd with success), in order."""
    executed: list[str] = []
    pending: dict[str, str | None] = {}  # pid -> the path of its exec, until strace says how it ended
    for line in trace.splitlines():
        if started := _EXEC.match(line):
            pid, path, rest = started["pid"], started["path"], started["rest"]
        elif resumed := _RESUMED.match(line):
            pid, path, rest = resumed["pid"], pending.pop(resumed["pid"], None), resumed["rest"]
        else:
            continue
        if rest.endswith("<unfinished ...>"):
            pending[pid] = path
        elif path and rest.endswith(" = 0"):
            executed.append(path)
    return executed


def _is_python(path: str) -> bool:
    if re.fullmatch(r"python[0-9.]*", os.path.basename(path)):
        return True
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


# One line of the API server's /metrics: apiserver_request_total{...,verb="GET",...} 12
_REQUESTS = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<count>\S+)$')
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def api_requests(commands: Commands) -> dict[str, int]:
    """Run the flip's commands; the API server's requests meanwhile (its apiserver_request_total, read
    with kubectl before and after). Other clients (controllers, the ingress) add theirs to "all";
    discovery and OpenAPI reads are made by clients that load the server's types."""
    before = _request_totals()
    commands()
    after = _request_totals()
    grown = {key: after[key] - before.get(key, 0) for key in after if after[key] > before.get(key, 0)}
    return {"all": sum(grown.values()),
            "discovery": sum(n for (verb, what), n in grown.items() if verb == "GET" and what in ("api", "apis")),
            "openapi": sum(n for (_, what), n in grown.items() if what.startswith("openapi"))}


def _request_totals() -> collections.Counter:
    return request_totals(subprocess.run(["kubectl", "get", "--raw", "/metrics"], capture_output=True, text=True,
                                         check=True).stdout)


def request_totals(metrics: str) -> collections.Counter:
    """The API server's request counts in its /metrics text, by (verb, resource or path)."""
    totals: collections.Counter = collections.Counter()
    for match in map(_REQUESTS.match, metrics.splitlines()):
        if match:
            labels = dict(_LABEL.findall(match["labels"]))
            # A request for no resource (GET /api, /apis, /openapi/v3/...) is counted under its path.
            what = labels.get("resource") or labels.get("subresource", "")
            totals[labels.get("verb", ""), what] += int(float(match["count"]))
    return totals
