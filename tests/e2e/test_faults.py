"""Tier 4: faults outside the release tool (issue 21, part 1), on the real node, under counted load.

One stack, its state in S3 (versitygw on 127.0.0.1): blue and green both deployed. During each
fault, 120 requests a second go to the prod host through the ingress (bench/traffic.py, 127.0.0.1
only). For each one the test records the requests sent and failed, what `bluegreen status --json`
says right after (exit code, drift), the one command that brings everything back (or that it healed
by itself), and that nothing was lost: the stack config is what the step set, the Pulumi state has
no pending operation and holds the Helm revision that is deployed, Helm's newest record is
`deployed`, `pulumi preview` shows no change and `bluegreen status` no drift.

- kubelet restarted while prod serves (scripts/node.sh restart kubelet);
- containerd restarted while prod serves (scripts/node.sh restart containerd);
- the ingress controller restarted during a `pulumi up` flip (scripts/ingress/traefik.sh stop, then
  start, as after a crash; and traefik.sh restart, which prepares the new process first);
- the ingress controller down while `bluegreen promote --check-url` checks prod after its flip;
- the API server stopped for 15 s, and for 40 s, in the middle of a `bluegreen promote`
  (scripts/cluster.sh stop-component / start-component kube-apiserver);
- the state backend (the S3 server) stopped in the middle of a `pulumi up` flip, for 30 s (within
  Pulumi's retries of a state write) and until the update fails.

Failed requests are asserted to be 0 only where the fault does not touch what serves prod (the pods,
kube-proxy's rules, Traefik): the API server, containerd and the state backend. Where it does
(kubelet: it reports every pod not ready until its first probe after the restart; Traefik: nothing
listens while it restarts), they are counted and printed. The table is printed at the end of the run.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable

import pytest
from pulumi import automation as auto

from tests.e2e import conftest as e2e
from tests.e2e.conftest import INGRESS_CLASS, V1, V2, counted, fetch, fresh_namespace, version_of, wait_until
from tests.e2e.s3 import S3Server
from tests.e2e.test_team_state import pulumi_up_under

pytestmark = pytest.mark.e2e

STACK, NS = "e2e-faults", "bg-e2e-faults"
PROD_HOST, STAGE_HOST = "shop.faults.example.com", "stage.shop.faults.example.com"
PODS = {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web"}
VERSION = {"blue": version_of(V1), "green": version_of(V2)}
RELEASE = "kubernetes:helm.sh/v3:Release"
# One row per fault, for the table printed at the end of the run.
ROWS: list[dict] = []


class App:
    def __init__(self, stack, tool: e2e.ReleaseTool, s3: S3Server, kube, ingress: str, env: dict, project_dir):
        self.stack, self.tool, self.s3, self.kube, self.ingress = stack, tool, s3, kube, ingress
        self.env, self.project_dir = env, project_dir

    def config(self) -> dict[str, str]:
        return {key: value.value for key, value in self.stack.get_all_config().items()}

    def prod_slot(self) -> str:
        return self.stack.get_config("productionSlot").value

    def status(self) -> tuple[int, list[str], str]:
        """`bluegreen status --json`: exit code, the drift list (what is wrong), the error."""
        code, printed = self.tool.run("status")
        drift = [f"{d['subject']} {d['problem']}" for d in (printed.get("state") or {}).get("drift") or []]
        return code, drift, printed.get("error", "")

    def pulumi_up(self) -> subprocess.Popen:
        """A plain `pulumi up` as a user runs it (the flip's config set first)."""
        return subprocess.Popen(["pulumi", "up", "--yes", "--skip-preview", "--stack", STACK], cwd=self.project_dir,
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def helm_pending(self) -> bool:
        try:
            records = self.kube.helm_releases(NS, "web")
        except Exception:  # the API server may be the fault
            return False
        return bool(records) and records[0]["status"].startswith("pending-")

    def lost(self, expected: dict[str, str]) -> list[str]:
        """What does not agree: the stack config against `expected`, the Pulumi state against Helm's
        history, the cluster against the stack (preview and status)."""
        problems = []
        config = self.config()
        changed = sorted(k for k in set(config) | set(expected) if config.get(k) != expected.get(k))
        problems += [f"config {k}: {expected.get(k)!r} -> {config.get(k)!r}" for k in changed]
        state = self.stack.export_stack().deployment
        if state.get("pending_operations"):
            problems.append(f"{len(state['pending_operations'])} pending operation(s) in the Pulumi state")
        (release,) = [r for r in state["resources"] if r["type"] == RELEASE]
        revision = release["outputs"]["status"]["revision"]
        records = self.kube.helm_releases(NS, "web")
        if records[0]["status"] != "deployed":
            problems.append(f"Helm's newest record v{records[0]['revision']} is {records[0]['status']}")
        if records[0]["revision"] != revision:
            problems.append(f"the Pulumi state holds Helm revision {revision}, Helm's newest is "
                            f"v{records[0]['revision']} {records[0]['status']}")
        try:
            self.stack.preview(expect_no_changes=True, color="never")
        except auto.CommandError as error:
            problems.append(f"pulumi preview shows changes: {str(error)[-500:]}")
        code, drift, error = self.status()
        if code != 0:
            problems.append(f"bluegreen status exits {code}: {drift or error[-300:]}")
        return problems


@pytest.fixture(scope="module")
def app(project_dir, pulumi_env, kube, ingress, tmp_path_factory):
    fresh_namespace(kube, NS)
    root = tmp_path_factory.mktemp("faults")
    with S3Server(root / "s3", pulumi_env, root / "versitygw.log") as s3:
        env = {**pulumi_env, **s3.backend_env(), "BLUEGREEN_INGRESS": ingress}
        stack = auto.create_or_select_stack(STACK, work_dir=str(project_dir),
                                            opts=auto.LocalWorkspaceOptions(env_vars=env))
        for key, value in {"namespace": NS, "prodHost": PROD_HOST, "stageHost": STAGE_HOST,
                           "ingressClass": INGRESS_CLASS, "helmTimeoutSeconds": "120",
                           "blue.enabled": "true", "blue.image": V1, "blue.replicas": "2",
                           "green.enabled": "true", "green.image": V2, "green.replicas": "2"}.items():
            stack.set_config(key, auto.ConfigValue(value), path=True)
        stack.up(on_output=print, color="never")
        wait_until("prod answers", lambda: fetch(ingress, PROD_HOST) == (200, "blue", VERSION["blue"]), timeout=60)
        yield App(stack, e2e.ReleaseTool(STACK, project_dir, env), s3, kube, ingress, env, project_dir)
        table()
        if s3.process is None:  # a failed test left it stopped
            s3.start()
        stack.destroy(on_output=print, color="never")
        stack.workspace.remove_stack(STACK)


def table() -> None:
    head = ("fault", "requests", "failed", "status right after", "recovering command", "lost", "notes")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for row in ROWS:
        lines.append(" | ".join(str(row[k]) for k in head))
    e2e.SECTIONS["faults outside the release tool: prod requests during each fault"] = lines
    print("\n" + "\n".join(lines))


def record(fault: str, traffic_name: str, status: tuple[int, list[str], str], command: str, lost: list[str],
           **extra) -> dict:
    figures = e2e.REPORT[traffic_name]
    code, drift, error = status
    shown = f"exit {code}" + (f"; drift: {'; '.join(drift)}" if drift else "") + \
        (f"; {error.splitlines()[0][:160]}" if code and not drift and error else "")
    row = {"fault": fault, "requests": figures["sent"], "failed": figures["failed"], "status right after": shown,
           "recovering command": command, "lost": "; ".join(lost) or "nothing", "notes": "", **extra,
           "failures": figures["failures"], "versions": figures["versions"]}
    ROWS.append(row)
    print(row)
    return row


def heal_or(app: App, status: tuple[int, list[str], str], command: Callable[[], str], wait_s: float = 30) -> str:
    """None needed when `status` (right after the fault) was clean, or when `bluegreen status`
    comes back clean within `wait_s` by itself (the controllers catching up); otherwise `command`,
    which must bring it back. Returns what it took."""
    if status[0] == 0:
        return "none needed"
    started = time.monotonic()
    while time.monotonic() < started + wait_s:
        if app.status()[0] == 0:
            return f"none: clean again by itself after {time.monotonic() - started:.0f} s"
        time.sleep(2)
    return command()


def no_command() -> str:
    raise AssertionError("bluegreen status does not come back clean by itself")


def node(*args: str) -> None:
    subprocess.run([str(e2e.SCRIPTS / "node.sh"), *args], check=True)


def control_plane(*args: str) -> None:
    subprocess.run([str(e2e.SCRIPTS / "cluster.sh"), *args], check=True)


def traefik(*args: str) -> None:
    subprocess.run([str(e2e.SCRIPTS / "ingress" / "traefik.sh"), *args], check=True, stdout=subprocess.DEVNULL)


def ready_pods(app: App, slot: str) -> int:
    return sum(1 for p in app.kube.pods(NS, {**PODS, "slot": slot})
               if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])))


@pytest.mark.parametrize("process", ["kubelet", "containerd"])
def test_a_node_process_restarted_while_prod_serves(app, process):
    config, slot = app.config(), app.prod_slot()
    name = f"fault: {process} restarted while prod serves"
    with counted(name, app.ingress, PROD_HOST, VERSION[slot], outage=True):
        node("restart", process)
        status = app.status()
        command = heal_or(app, status, no_command)
        wait_until(f"2 ready {slot} pods", lambda: ready_pods(app, slot) == 2, timeout=60)
        # A pod that kubelet's restart made not ready is back in prod's endpoints only once the
        # endpoints controller has seen it ready again: status must come back clean by itself.
        settled = heal_or(app, app.status(), no_command)
        command = command if settled == "none needed" else settled
    row = record(f"{process} restarted while prod serves", name, status, command, app.lost(config))
    assert row["lost"] == "nothing", row
    if process == "containerd":  # the containers keep running under their shims; kubelet is not restarted
        assert row["failed"] == 0, row


def flip(app: App) -> tuple[str, str]:
    """Set productionSlot to the other slot; returns (from, to)."""
    before = app.prod_slot()
    after = "green" if before == "blue" else "blue"
    app.stack.set_config("productionSlot", auto.ConfigValue(after))
    return before, after


# A stop then a start (as after a crash), and traefik.sh restart (the new process prepared first).
TRAEFIK_RESTARTS = {"stop, then start": (("stop",), ("start",)), "restart": (("restart",),)}


@pytest.mark.parametrize("how", TRAEFIK_RESTARTS)
def test_the_ingress_controller_restarted_during_a_pulumi_up_flip(app, how):
    config = app.config()
    before, after = flip(app)
    name = f"fault: Traefik restarted ({how}) during a pulumi up flip"
    with counted(name, app.ingress, PROD_HOST, VERSION[after], outage=True):
        update = app.pulumi_up()
        wait_until("the flip's Helm upgrade is under way", app.helm_pending, timeout=60, interval=0.05)
        for args in TRAEFIK_RESTARTS[how]:
            traefik(*args)
        output, _ = update.communicate(timeout=300)
        print(output)
        status = app.status()
        command = heal_or(app, status, no_command)
    assert update.returncode == 0, output[-3000:]
    row = record(f"Traefik restarted ({how}) during a pulumi up flip", name, status, command,
                 app.lost({**config, "bluegreen:productionSlot": after}))
    assert row["lost"] == "nothing", row
    assert fetch(app.ingress, PROD_HOST) == (200, after, VERSION[after])


def test_the_ingress_controller_down_while_a_promote_checks_prod(app):
    """`bluegreen promote --check-url` checks stage, flips, then checks prod through the ingress.
    Traefik is stopped when the flip's `pulumi up` starts and started again 1 s after it ends, so
    the check of prod meets an ingress that is not there. What the promote does then is recorded."""
    config = app.config()
    before = app.prod_slot()
    name = "fault: Traefik down while bluegreen promote checks prod"
    with counted(name, app.ingress, PROD_HOST, outage=True):
        promote = subprocess.Popen(app.tool.command("promote", "--check-url", "{url}/healthz"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=app.env)
        up = wait_until("the promote's pulumi up", lambda: pulumi_up_under(promote.pid), timeout=120, interval=0.05)
        traefik("stop")
        wait_until("the flip's pulumi up ends", lambda: not _alive(up), timeout=300, interval=0.05)
        time.sleep(1)
        traefik("start")
        out, err = promote.communicate(timeout=600)
        print(err)
        status = app.status()
        command = heal_or(app, status, no_command)
    row = record("Traefik down while bluegreen promote --check-url checks prod", name, status, command,
                 app.lost({**config, "bluegreen:productionSlot": app.prod_slot()}),
                 notes=promoted(promote.returncode, out))
    assert row["lost"] == "nothing", row
    print(f"promote exit {promote.returncode}; prod was {before}, is {app.prod_slot()}")


# How long the API server stays down, and from when: while Helm's upgrade runs (15 s, 40 s), which
# the provider's Helm client may wait out, or may not (the upgrade fails, its record stays
# pending-upgrade); or from the moment the flip's `pulumi up` starts, before the provider reached
# the cluster (the update fails). A failed flip's automatic rollback waits for the API server (up
# to 60 s) and clears a pending record itself.
API_OUTAGES = {"15 s": (15.0, True), "40 s": (40.0, True), "15 s from the update's start": (15.0, False)}


@pytest.mark.parametrize("outage", API_OUTAGES)
def test_the_api_server_stopped_in_the_middle_of_a_promote(app, outage):
    config = app.config()
    before = app.prod_slot()
    after = "green" if before == "blue" else "blue"
    name = f"fault: API server stopped {outage} during bluegreen promote"
    processes = control_plane_processes()
    with counted(name, app.ingress, PROD_HOST, outage=True):
        promote = subprocess.Popen(app.tool.command("promote"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=app.env)
        # The flip's `pulumi up` (after the promote's preview): stop the API server while Helm's
        # upgrade is under way, or, if it ends before that is seen, right after.
        wait_until("the promote's pulumi up", lambda: pulumi_up_under(promote.pid), timeout=120, interval=0.05)
        up = pulumi_up_under(promote.pid)
        seconds, during_helm = API_OUTAGES[outage]
        phase = "as the flip's pulumi up starts"
        deadline = time.monotonic() + (30 if during_helm else 0)
        while time.monotonic() < deadline:
            if app.helm_pending():
                phase = "Helm upgrade under way"
                break
            if not _alive(up):
                phase = "after the flip's pulumi up"
                break
            time.sleep(0.05)
        control_plane("stop-component", "kube-apiserver")
        stopped = time.monotonic()
        try:
            wait_until("kube-apiserver is down", lambda: control_plane_processes()["kube-apiserver"] is None,
                       timeout=10, interval=0.1)
            time.sleep(max(0.0, seconds - (time.monotonic() - stopped)))
        finally:
            control_plane("start-component", "kube-apiserver")
        out, err = promote.communicate(timeout=600)
        print(err)
        status = app.status()
        command = heal_or(app, status, lambda: recover_then_up(app))
    figures = e2e.REPORT[name]
    # The rest of the control plane outlived the outage (a controller manager that lost its leader
    # lease would have exited: no Endpoints would follow a flip any more).
    lost = app.lost({**config, "bluegreen:productionSlot": app.prod_slot()})
    lost += [f"{component} exited during the outage" for component, pid in control_plane_processes().items()
             if component != "kube-apiserver" and pid != processes[component]]
    assert app.prod_slot() in (before, after)
    row = record(f"API server stopped {outage} during bluegreen promote ({phase})", name, status, command, lost,
                 notes=promoted(promote.returncode, out))
    assert row["lost"] == "nothing", row
    assert figures["failed"] == 0, row  # the API server serves no request to prod
    # Flipped, or rolled back by itself; what it took otherwise is in the row. Not asserted: after a
    # long outage the controller manager's EndpointSlices can trail the Services for over 30 s (a
    # CI run, 2026-12-01, 40 s outage: the rollback moved the Service back, its endpoints stayed on
    # the new slot, and recover then pulumi up were taken), which no release command controls.
    assert command.startswith(("none", "bluegreen recover")), row
    print(f"promote ended with exit {promote.returncode}; prod is {app.prod_slot()} (was {before}, asked {after})")


def updated(code: int | None, output: list[str]) -> str:
    """What the plain `pulumi up` said: its exit code and its first error line."""
    errors = [line.strip() for line in "".join(output).splitlines() if line.strip().startswith("error:")]
    return f"pulumi up exit {code}" + (f": {errors[0][:200]}" if errors else "")


def promoted(code: int, out: str) -> str:
    """What the promote said: its exit code and the first line of its error."""
    error = (json.loads(out) if out.strip() else {}).get("error", "")
    return f"promote exit {code}" + (f": {error.splitlines()[0][:200]}" if error else "")


def control_plane_processes() -> dict[str, int | None]:
    """The pid of each process kwokctl started for the control plane (its pid files); None when it
    does not run."""
    pids = e2e.REPO_ROOT / ".state" / "cluster" / "clusters" / "bluegreen" / "pids"
    running = {f.stem: int(f.read_text().strip()) for f in sorted(pids.glob("*.pid"))}
    return {name: pid if _alive(pid) else None for name, pid in running.items()}


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def recover_then_up(app: App) -> str:
    """`bluegreen recover` (a Helm record left pending, the lock of an update that died, pending
    operations), then, where the cluster is still not what the stack config says, `pulumi up`: an
    update interrupted after Helm applied it leaves the Release's values in the state behind the
    cluster or ahead of it, and a refresh does not change them. Returns the commands it took."""
    code, printed = app.tool.run("recover")
    assert code == 0, printed
    done = ["bluegreen recover"]
    if app.status()[0] != 0:
        app.stack.up(on_output=print, color="never")
        done.append("pulumi up")
    return ", then ".join(done)


# How long the S3 server stays down: less than Pulumi's retries of a state write (11 tries, about
# 35 s), and until the update gives up.
S3_OUTAGES = {"30 s": 30.0, "until the update fails": 300.0}


@pytest.mark.parametrize("outage", S3_OUTAGES)
def test_the_state_backend_stopped_in_the_middle_of_a_pulumi_up_flip(app, outage):
    config = app.config()
    before, after = flip(app)
    name = f"fault: S3 state backend stopped ({outage}) during a pulumi up flip"
    with counted(name, app.ingress, PROD_HOST, outage=True):
        update = app.pulumi_up()
        wait_until("the flip's Helm upgrade is under way", app.helm_pending, timeout=60, interval=0.05)
        app.s3.stop()
        output: list[str] = []
        reader = threading.Thread(target=lambda: output.append(update.communicate()[0]))
        reader.start()
        reader.join(timeout=S3_OUTAGES[outage])
        assert not reader.is_alive() or S3_OUTAGES[outage] < 60, "the update neither ended nor failed in 300 s"
        app.s3.start()
        reader.join(timeout=300)
        print(output[0] if output else "")
        status = app.status()
        command = heal_or(app, status, lambda: recover_then_up(app))
    figures = e2e.REPORT[name]
    row = record(f"S3 state backend stopped ({outage}) during a pulumi up flip", name, status, command,
                 app.lost({**config, "bluegreen:productionSlot": after}), notes=updated(update.returncode, output))
    assert row["lost"] == "nothing", row
    assert figures["failed"] == 0, row  # the state backend serves no request to prod
    # The cluster serves the flip (status is clean); the ingress controller follows once its watch
    # of the API server has caught up, which can lag after this module's API server outages.
    wait_until("the ingress serves the flipped slot",
               lambda: fetch(app.ingress, PROD_HOST) == (200, after, VERSION[after]), timeout=90)
