"""Tier 4, last: `scripts/cluster.sh down` leaves the host as it found it.

Compares `scripts/node.sh snapshot` (links, routes, iptables and nft rules, mounts, cgroups, the
sysctls kubelet changes, /var/log/containers, the node's and ingress's processes, the files under
/var/lib, /etc/cni and /opt/cni) from before the cluster started with the one after `down`, taken
while real pods were running on the node.
"""

from __future__ import annotations

import difflib
import subprocess

import pytest

from tests.e2e.conftest import HOST_BEFORE, SCRIPTS, V1, node_snapshot, wait_until

pytestmark = pytest.mark.e2e

NS = "bg-e2e-teardown"


def kubectl(*args: str, env) -> str:
    done = subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cluster_down_leaves_the_host_as_it_was(kube, pulumi_env):
    cluster = str(SCRIPTS / "cluster.sh")
    before = HOST_BEFORE.get("snapshot")
    was_up_before_the_run = before is None
    if was_up_before_the_run:  # see the host without the cluster, then bring the cluster back
        subprocess.run([cluster, "down"], check=True, env=pulumi_env)
        before = node_snapshot()
        subprocess.run([cluster, "up"], check=True, env=pulumi_env)

    # Real pods on the node while it goes down: their mounts, veths and cgroups must go too.
    kubectl("create", "namespace", NS, env=pulumi_env)
    kubectl("-n", NS, "create", "deployment", "demo", f"--image={V1}", "--replicas=2", env=pulumi_env)
    wait_until("2 demo pods running", lambda: kubectl(
        "-n", NS, "get", "pods", "-o", "jsonpath={.items[*].status.phase}", env=pulumi_env).split() == ["Running"] * 2,
        timeout=120)
    assert node_snapshot() != before  # the cluster did change the host: the comparison means something

    subprocess.run([cluster, "down"], check=True, env=pulumi_env)
    after = node_snapshot()
    try:
        assert after == before, "the host differs after `cluster.sh down`:\n" + "\n".join(
            difflib.unified_diff(before.splitlines(), after.splitlines(), "before up", "after down", lineterm=""))
    finally:
        if was_up_before_the_run:
            subprocess.run([cluster, "up"], check=False, env=pulumi_env)
