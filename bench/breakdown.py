"""Where the time of one `pulumi up` flip goes, from the engine's own verbose log.

`pulumi up -v=9 --logtostderr --logflow` writes one JSON line per log record with a nanosecond
timestamp, for the CLI and (with --logflow) for the plugins. The markers below cut the run into
phases. Verbose logging itself slows the run a little; the phases are for comparison, the flip
latency table has the undisturbed figures.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import datetime

# (phase name, regex of the log message that ends it), in order. Each phase starts where the
# previous one ended; the first starts when the process is spawned.
MARKERS = [
    ("CLI start", r"Launching plugin 'python'"),
    ("language host start", r"langhost\[python\]\.Run\(.*\) executing"),
    ("program run (imports, registrations)", r"RegisterResource received: t=kubernetes:helm\.sh/v3:Release"),
    ("Release check and diff", r"Provider\[[^\]]+\]\.Diff\(urn:[^)]*Release[^)]*\) success"),
    ("Release update: render and apply", r"\[DEBUG\] beginning wait for"),
    ("Release update: await readiness", r"\[DEBUG\] wait for resources succeeded"),
    ("Release update: record release", r"Provider\[[^\]]+\]\.Update\([^)]*Release[^)]*\) success"),
    ("state, outputs, shutdown", None),  # until the process exits
]
PROVIDER_START = (r"Launching plugin 'kubernetes", r"Provider\[kubernetes\]\.CheckConfig")


def breakdown(command: list[str], env: dict, cwd: str) -> dict:
    spawned = time.time()
    done = subprocess.run(command + ["-v=9", "--logtostderr", "--logflow"], env=env, cwd=cwd,
                          capture_output=True, text=True)
    exited = time.time()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}")
    records = list(_records(done.stderr))
    phases, start = {}, spawned
    for name, pattern in MARKERS:
        end = exited if pattern is None else _first(records, pattern, after=start)
        phases[name] = round(end - start, 3)
        start = end
    launch, ready = _first(records, PROVIDER_START[0]), _first(records, PROVIDER_START[1])
    return {"total_s": round(exited - spawned, 3), "phases_s": phases,
            "provider_start_s (inside program run)": round(ready - launch, 3)}


def _records(log: str):
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        # "2026-11-26T11:54:22.728226095Z": nanoseconds, which datetime cannot hold; keep micro.
        stamp = re.sub(r"(\.\d{6})\d+", r"\1", record["time"]).replace("Z", "+00:00")
        yield datetime.fromisoformat(stamp).timestamp(), record.get("msg", "")


def _first(records: list, pattern: str, after: float = 0.0) -> float:
    regex = re.compile(pattern)
    for timestamp, message in records:
        if timestamp >= after - 0.001 and regex.search(message):
            return timestamp
    raise RuntimeError(f"no log record matches {pattern!r}")
