"""Flip latency and zero-downtime evidence: the same flip done four ways on one cluster.

Each flip is timed from the command's start until prod's ready Endpoints are exactly the new
slot's pods ("switch"), and until the command returns ("command"). prod and stage are polled
throughout (EndpointWatch, at least 20 Hz) to count empty or not-ready polls and the time both
Services select the same slot.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from bluegreen.release.checks import Names, ready_pod_ips
from bluegreen.release.kube import EndpointWatch, KubeClient


@dataclass
class Flip:
    method: str
    target: str
    command_s: float
    switch_s: float
    polls: int
    rate_hz: float
    empty_polls: int
    not_ready_polls: int
    same_slot_s: float


def flip(kube: KubeClient, names: Names, method: str, target: str, run: Callable[[], None]) -> Flip:
    """Run one flip to `target` and measure it."""
    target_pods = tuple(ready_pod_ips(kube, names, target))
    prod = EndpointWatch(kube, names.namespace, names.service("prod"))
    stage = EndpointWatch(kube, names.namespace, names.service("stage"))
    with prod, stage:
        time.sleep(0.2)  # a few polls of the state before
        started = time.time()
        run()
        command_s = time.time() - started
        deadline = time.monotonic() + 60
        while not _switched(prod, target, target_pods, started):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method}: prod did not switch to {target} within 60 s")
            time.sleep(0.05)
        time.sleep(0.3)  # and a few after
    switch_at = next(t for t, slot, ready, _ in prod.polls if t >= started and slot == target and ready == target_pods)
    return Flip(method, target, round(command_s, 3), round(switch_at - started, 3), len(prod.polls),
                round(prod.rate_hz, 1), prod.empty_polls, sum(1 for p in prod.polls if p[3]),
                round(_same_slot_seconds(prod, stage), 3))


def _switched(watch: EndpointWatch, target: str, pods: tuple, since: float) -> bool:
    return any(t >= since and slot == target and ready == pods for t, slot, ready, _ in watch.polls[-5:])


def _same_slot_seconds(prod: EndpointWatch, stage: EndpointWatch) -> float:
    """How long, by the two pollers' timelines, prod and stage selected the same slot."""
    events = sorted([(t, "prod", slot) for t, slot, _, _ in prod.polls]
                    + [(t, "stage", slot) for t, slot, _, _ in stage.polls])
    current: dict[str, str] = {}
    total, last = 0.0, None
    for t, role, slot in events:
        if last is not None and current.get("prod") and current.get("prod") == current.get("stage"):
            total += t - last
        current[role], last = slot, t
    return total


def summarize(flips: list[Flip]) -> dict:
    def stats(values: list[float]) -> dict:
        return {"median": round(statistics.median(values), 3),
                "min": round(min(values), 3), "max": round(max(values), 3)}

    return {
        "runs": len(flips),
        "switch_s": stats([f.switch_s for f in flips]),
        "command_s": stats([f.command_s for f in flips]),
        "polls": sum(f.polls for f in flips),
        "min_rate_hz": min(f.rate_hz for f in flips),
        "empty_polls": sum(f.empty_polls for f in flips),
        "not_ready_polls": sum(f.not_ready_polls for f in flips),
        "same_slot_s": stats([f.same_slot_s for f in flips]),
        "flips": [asdict(f) for f in flips],
    }


def shell(command: list[str], env: dict, cwd: str) -> Callable[[], None]:
    def run() -> None:
        done = subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return run
