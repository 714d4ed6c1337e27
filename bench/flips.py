"""One flip of prod, counted in real requests: the same measurement for every method.

During each flip a load (bench.traffic.Traffic, RATE requests a second) goes to the prod host
through the ingress controller on 127.0.0.1. A flip is timed from its command's start:
- "switch": until every response from then on came from the new version;
- "command": until the command returned;
- "gap": switch minus command. Positive: the command returned before traffic had moved (the
  user's shell says done while prod still serves the old version). Negative: traffic moved first.
Failed requests are any non-2xx answer, connection error or timeout.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections import Counter
from dataclasses import asdict, dataclass

from bench import timeline
from bench.traffic import Traffic

RATE = 120.0  # requests a second to the prod host during a flip
SETTLED_S = 1.0  # a flip is over when the new version has answered everything for this long
TIMEOUT_S = 90.0  # a flip that has not switched by then fails the bench


@dataclass
class Flip:
    method: str
    kind: str  # "promote" (to the newer version) or "rollback" (back to the older one)
    version: str
    command_s: float
    switch_s: float
    gap_s: float
    sent: int
    failed: int
    rate_rps: float
    started: float  # time.time() at the command's start, to match other samples (Argo's CPU) to it
    ended: float
    failures: dict[str, int]  # what failed (status or error) -> how many
    failed_at_s: list[float]  # first and last failure, seconds from the command's start
    timeline: dict[str, list[int]]  # responses per 100 ms by version, and "failed" (bench.timeline)


def flip(ingress: str, host: str, method: str, kind: str, version: str, run: Commands) -> Flip:
    """Run one flip whose prod should end up serving `version`, and measure it."""
    with Traffic(ingress, host, rate=RATE, max_seconds=TIMEOUT_S + 30) as traffic:
        time.sleep(0.5)  # the state before
        started = time.time()
        run()
        command_s = time.time() - started
        deadline = time.monotonic() + TIMEOUT_S
        while not _settled(traffic, started, version):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method}: prod does not serve only {version} {TIMEOUT_S:.0f} s after "
                                   f"the flip started: {traffic.summary(started)}")
            time.sleep(0.1)
    switch_s = traffic.switched(started, version)
    assert switch_s is not None
    figures, failed = traffic.summary(), traffic.failures()
    kinds = Counter(r.kind for r in failed)
    when = [round(failed[0].sent - started, 3), round(failed[-1].sent - started, 3)] if failed else []
    ended = time.time()
    return Flip(method, kind, version, round(command_s, 3), switch_s, round(switch_s - command_s, 3),
                figures["sent"], figures["failed"], figures["rate_rps"], started, ended, dict(kinds), when,
                timeline.bins(traffic.responses, started, ended))


def wait_serving(ingress: str, host: str, version: str, timeout: float = 60) -> None:
    """Until `host` has answered 2 s of load with `version` only, not a request failed: a new
    Ingress takes a moment to reach the controller, and no method should pay for that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Traffic(ingress, host, rate=RATE, max_seconds=2) as traffic:
            time.sleep(2)
        figures = traffic.summary()
        served = {key.rsplit("/", 1)[1] for key in figures["versions"]}  # keys: slot/version
        if figures["sent"] and not figures["failed"] and served == {version}:
            return
    raise RuntimeError(f"{host} does not serve {version} alone after {timeout:.0f} s: {figures}")


def _settled(traffic: Traffic, started: float, version: str) -> bool:
    switched = traffic.switched(started, version)
    return switched is not None and time.time() - (started + switched) >= SETTLED_S


def summarize(flips: list[Flip]) -> dict:
    def stats(values: list[float]) -> dict:
        return {"median": round(statistics.median(values), 3),
                "min": round(min(values), 3), "max": round(max(values), 3)} if values else {}

    promotes = [f for f in flips if f.kind == "promote"]
    rollbacks = [f for f in flips if f.kind == "rollback"]
    return {
        "runs": len(flips),
        "switch_s": stats([f.switch_s for f in flips]),
        "promote_switch_s": stats([f.switch_s for f in promotes]),
        "rollback_switch_s": stats([f.switch_s for f in rollbacks]),
        "command_s": stats([f.command_s for f in flips]),
        "gap_s": stats([f.gap_s for f in flips]),
        "sent": sum(f.sent for f in flips),
        "failed": sum(f.failed for f in flips),
        "min_rate_rps": min(f.rate_rps for f in flips),
        "flips": [asdict(f) for f in flips],
    }


@dataclass
class Commands:
    """The commands of one flip, run one after the other; `wrap` prefixes each (bench.counts traces
    them with it)."""

    commands: list[list[str]]
    env: dict
    cwd: str

    def __call__(self, wrap: list[str] | None = None) -> None:
        for command in self.commands:
            done = subprocess.run([*(wrap or []), *command], env=self.env, cwd=self.cwd, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")


def shell(command: list[str], env: dict, cwd: str) -> Commands:
    return Commands([command], env, cwd)


def in_order(*steps: Commands) -> Commands:
    """Several commands as one flip."""
    return Commands([command for step in steps for command in step.commands], steps[0].env, steps[0].cwd)
