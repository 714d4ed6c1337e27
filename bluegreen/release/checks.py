"""Checks around a flip: is a slot ready, does prod serve the right pods, do the smoke checks pass."""

from __future__ import annotations

import http.client
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from ..contract import Names, selected_slot
from .kube import KubeClient, KubeError, deployment_ready


def slot_readiness(kube: KubeClient, names: Names, slot: str) -> tuple[int, int]:
    """(available, desired) replicas of a slot's Deployment; (0, 0) when it has none."""
    return deployment_ready(kube.deployment(names.namespace, names.deployment(slot)))


def wait_available(kube: KubeClient, names: Names, slot: str, timeout: float, say) -> tuple[int, int]:
    deadline, last = time.monotonic() + timeout, None
    while True:
        available, desired = slot_readiness(kube, names, slot)
        if (available, desired) != last:
            say(f"    {slot}: {available}/{desired} available")
            last = (available, desired)
        if desired and available == desired:
            return available, desired
        if time.monotonic() > deadline:
            return available, desired
        time.sleep(0.5)


API_READY_SECONDS = 60  # how long a step waits for the API server after a failure, before it acts


def wait_api_server(kube: KubeClient, timeout: float, say, interval: float = 1.0, every: float = 5.0) -> str | None:
    """Wait until the API server is ready (/readyz), saying so every `every` s; None once it is,
    else why it was not after `timeout` s."""
    started = time.monotonic()
    said = None
    while True:
        problem = kube.not_ready()
        waited = time.monotonic() - started
        if problem is None:
            if said is not None:
                say(f"    the API server is ready after {waited:.0f} s")
            return None
        if said is None or waited - said >= every:
            say(f"    waiting for the API server ({waited:.0f} of {timeout:.0f} s): {problem}")
            said = waited
        if waited >= timeout:
            return problem
        time.sleep(interval)


def ready_pod_ips(kube: KubeClient, names: Names, slot: str) -> list[str]:
    ips = []
    for pod in kube.pods(names.namespace, names.pod_selector(slot)):
        conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        ready = conditions.get("Ready") == "True" and pod["status"].get("podIP")
        if ready and not pod["metadata"].get("deletionTimestamp"):
            ips.append(pod["status"]["podIP"])
    return sorted(ips)


def verify_serving(kube: KubeClient, names: Names, role: str, slot: str, timeout: float = 30.0) -> str | None:
    """None when the `role` Service selects `slot` and its ready Endpoints are exactly that slot's
    ready pods; otherwise what is wrong (after waiting up to `timeout` for the controllers)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            service = kube.service(names.namespace, names.service(role))
            selected = selected_slot(service)
            endpoints = kube.endpoints(names.namespace, names.service(role)).ready
            pods = ready_pod_ips(kube, names, slot)
            if selected != slot:
                problem = f"Service {names.service(role)} selects slot {selected!r}, not {slot}"
            elif not endpoints:
                problem = f"Service {names.service(role)} has no ready Endpoints"
            elif endpoints != pods:
                problem = f"Service {names.service(role)} Endpoints {endpoints} are not the {slot} pods {pods}"
            else:
                return None
        except KubeError as error:
            problem = str(error)
        if time.monotonic() > deadline:
            return problem
        time.sleep(0.5)


def smoke_checks(target: str, url: str, check_url: str | None, check_cmd: str | None,
                 env: dict[str, str], say, timeout: float = 10.0, cwd: str | None = None) -> list[str]:
    """Run the user's checks against `target` (stage or prod); returns the failures.

    `check_url` may use {url}, the target's URL without its trailing slash
    (e.g. '{url}/healthz'); `check_cmd` runs in a shell with BLUEGREEN_TARGET, BLUEGREEN_URL,
    BLUEGREEN_SLOT, BLUEGREEN_SERVICE and BLUEGREEN_NAMESPACE set.
    """
    failures = []
    base = url.rstrip("/")
    if check_url and "{url}" in check_url and not base:
        # stageAccess internal: the stage host has no route, so there is no URL to put in.
        failures.append(f"{target} has no URL (stageAccess is internal): check it in the cluster with --check-cmd "
                        "(BLUEGREEN_SERVICE, BLUEGREEN_NAMESPACE; e.g. through kubectl port-forward)")
    elif check_url:
        address = check_url.replace("{url}", base)
        ingress = os.environ.get("BLUEGREEN_INGRESS")
        say(f"    check {target}: GET {address}" + (f" (through {ingress})" if ingress else ""))
        try:
            status = http_get(address, ingress, timeout)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
            status = None
            failures.append(f"GET {address}: {getattr(error, 'reason', error)}")
        if status is not None and not 200 <= status < 300:
            failures.append(f"GET {address}: HTTP {status}, expected 2xx")
    if check_cmd:
        say(f"    check {target}: {check_cmd}")
        done = subprocess.run(check_cmd, shell=True, env={**os.environ, **env, "BLUEGREEN_TARGET": target,
                                                           "BLUEGREEN_URL": base}, timeout=300, cwd=cwd)
        if done.returncode != 0:
            failures.append(f"{check_cmd!r} exited {done.returncode}, expected 0")
    for failure in failures:
        say(f"    FAILED: {failure}")
    return failures


def http_get(address: str, ingress: str | None, timeout: float) -> int:
    """The HTTP status of GET `address`. With `ingress` (BLUEGREEN_INGRESS, http://HOST:PORT), the
    request goes there with the URL's host in the Host header, like `curl --connect-to`: how the
    local cluster's ingress is reached, and how a user tests an ingress before DNS points at it."""
    if not ingress:
        try:
            with urllib.request.urlopen(address, timeout=timeout) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
    url, via = urllib.parse.urlsplit(address), urllib.parse.urlsplit(ingress)
    if via.scheme != "http" or not via.hostname:
        raise ValueError(f"BLUEGREEN_INGRESS is {ingress!r}; allowed: http://HOST:PORT")
    conn = http.client.HTTPConnection(via.hostname, via.port or 80, timeout=timeout)
    try:
        target = (url.path or "/") + ("?" + url.query if url.query else "")
        conn.request("GET", target, headers={"Host": url.netloc})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()
