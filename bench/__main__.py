"""`make bench` (python -m bench): the same release flipped five ways on the local cluster's real
node, counted in requests: `pulumi up`, `bluegreen promote`, the article's `helm upgrade
--reuse-values`, `kubectl patch` of the Services (the floor) and Argo Rollouts (the peer); then
where a `pulumi up` flip's time goes, and how the program's cost grows with the number of apps.

Runs in the README's environment (source scripts/activate) on the local cluster, started here if
it is not running and stopped again. The methods run on the same app, hosts and load; those on the
`bench` stack (`pulumi up`, the release tool and its --baseline) take turns flip by flip, the others
run one after the other: a `bench` stack in bg-bench, a plain-helm release in bg-bench-helm, a Rollout in
bg-bench-argo, each removed before the next (Argo's controller and CRDs too). Prints a table and
writes bench/results/bench-<time>.json. A tool, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import yaml

from bench import argo, argo_features, breakdown, counts, flips, growth, timeline
from bluegreen.config import parse
from bluegreen.release.kube import KubeClient
from bluegreen.values import chart_values

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STACK, NS, HELM_NS = "bench", "bg-bench", "bg-bench-helm"
# The demo app (scripts/images/), imported into the local node: real pods serve each flip. Every
# method runs the same release: OLD serves prod, NEW is up behind stage; a "promote" flip sends
# prod to NEW, a "rollback" flip back to OLD. Blue runs OLD, green NEW.
OLD, NEW = "bluegreen.local/demo:1.0.0", "bluegreen.local/demo:2.0.0"
NEWER = "bluegreen.local/demo:3.0.0"  # a third version, for Argo's feature checks
VERSION = {OLD: "1.0.0", NEW: "2.0.0"}
SLOT_OF = {OLD: "blue", NEW: "green"}
PROD_HOST, STAGE_HOST = "shop.bench.example.com", "stage.shop.bench.example.com"
CONFIG = {"namespace": NS, "prodHost": PROD_HOST, "stageHost": STAGE_HOST, "ingressClass": "traefik",
          "blue.enabled": "true", "blue.image": OLD, "green.enabled": "true", "green.image": NEW}


@dataclass
class Method:
    """How one method sends prod to a version (`flip`), and what it does untimed before that
    (`prepare`: only Argo, whose idle version is not kept at rest behind stage)."""
    name: str
    flip: Callable[[str, str], flips.Commands]  # (kind, image) -> the flip's commands
    prepare: Callable[[str, str], None] = lambda kind, image: None


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10,
                        help="flips per method, alternating promote and rollback (an even number, "
                             "so each method ends where it started); default 10")
    parser.add_argument("--skip-growth", action="store_true", help="without the program's cost growth")
    parser.add_argument("--skip-features", action="store_true", help="without the checks of Argo's options")
    parser.add_argument("--only", action="append", choices=PHASES, help="run only these phases (repeatable)")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also flip with the release tool of another checkout (e.g. `git worktree add DIR REV`), "
                             "on the same stack and load: a before/after in one run")
    args = parser.parse_args()
    if args.runs < 2 or args.runs % 2:
        parser.error(f"--runs {args.runs}: allowed: an even number, 2 or more (promote, rollback, ...)")
    env = dict(os.environ)
    if env.get("BLUEGREEN_CLUSTER", "local") != "local":
        raise SystemExit("bench: KUBECONFIG names your own cluster; the bench runs only on the local "
                         "cluster (make cluster-up), as its load goes to 127.0.0.1 only. "
                         "Unset KUBECONFIG and source scripts/activate again.")
    cluster = os.path.join(REPO, "scripts", "cluster.sh")
    started_here = subprocess.run([cluster, "status"], capture_output=True).returncode != 0
    if started_here and subprocess.run([cluster, "up"], env=env).returncode != 0:
        subprocess.run([cluster, "down"], env=env)
        raise SystemExit("bench: error: scripts/cluster.sh up failed (its output is above)")
    try:
        results = measure(args, env)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:  # KubeError is a RuntimeError
        raise SystemExit(f"bench: error: {error}") from None
    finally:
        if started_here:
            subprocess.run([cluster, "down"], env=env)
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    picture = _timelines(results) if results["flips"] else None
    path = _write(results)
    _print_table(results)
    print(f"\nfull results: {path}" + (f"\nthe switch, pictured: {picture}" if picture else ""))
    return 0


def measure(args: argparse.Namespace, env: dict) -> dict:
    ingress = subprocess.run([os.path.join(REPO, "scripts", "ingress", "traefik.sh"), "url"], capture_output=True,
                             text=True, check=True).stdout.strip()
    kube = KubeClient()
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs_per_method": args.runs,
                     "load_rps": flips.RATE, "flips": {}}
    for name in args.only or PHASES:
        PHASES[name](args, env, kube, ingress, results)
    if not args.skip_growth and not args.only:
        results["growth"] = {"program_under_mocks_s": {}, "pulumi_preview_s": {}}
        for apps in growth.SIZES:
            say(f"==> growth: {apps} app(s)")
            results["growth"]["program_under_mocks_s"][apps] = round(growth.program_under_mocks(apps), 4)
            results["growth"]["pulumi_preview_s"][apps] = round(growth.preview_on_engine(apps, REPO, env), 3)
        for key in ("program_under_mocks_s", "pulumi_preview_s"):
            results["growth"][key.replace("_s", "_per_extra_app_s")] = round(growth.slope(results["growth"][key]), 4)
    _ratios(results["flips"])
    return results


def flip_all(method: Method, ingress: str, runs: int) -> dict:
    return flip_side_by_side([method], ingress, runs)[method.name]


def flip_side_by_side(methods: list[Method], ingress: str, runs: int) -> dict[str, dict]:
    """`runs` flips of each method on the same release, alternating promote and rollback; several
    methods take turns, a promote and a rollback each (A A B B C C A A ...), so that what else the
    machine does meanwhile weighs on each of them alike. Then, per method, a traced promote and
    rollback: the processes each starts and the API server's requests each makes."""
    say(f"==> {runs} flips{' each, taking turns' if len(methods) > 1 else ''}: {', '.join(m.name for m in methods)}")
    flips.wait_serving(ingress, PROD_HOST, VERSION[OLD])
    measured: dict[str, list] = {method.name: [] for method in methods}
    for _ in range(runs // 2):
        for method in methods:
            for kind, image in (("promote", NEW), ("rollback", OLD)):
                method.prepare(kind, image)
                f = flips.flip(ingress, PROD_HOST, method.name, kind, VERSION[image], method.flip(kind, image))
                measured[method.name].append(f)
                failures = f" {f.failures} at {f.failed_at_s} s" if f.failed else ""
                whose = f"  ({method.name})" if len(methods) > 1 else ""
                say(f"    {kind:8} -> {f.version}: switched {f.switch_s:5.2f} s, command {f.command_s:5.2f} s, "
                    f"{f.sent} requests, {f.failed} failed{failures}{whose}")
    summaries = {}
    for method in methods:
        summary = summaries[method.name] = flips.summarize(measured[method.name])
        if counts.available():  # one more promote and rollback, traced: the processes each starts
            summary["processes"] = {}
            for kind, image in (("promote", NEW), ("rollback", OLD)):
                method.prepare(kind, image)
                summary["processes"][kind] = counts.count(method.flip(kind, image))
                flips.wait_serving(ingress, PROD_HOST, VERSION[image])
            say(f"    processes per flip ({method.name}): {summary['processes']}")
        summary["api_requests"] = {}  # one more promote and rollback: the API server's requests each made
        for kind, image in (("promote", NEW), ("rollback", OLD)):
            method.prepare(kind, image)
            summary["api_requests"][kind] = counts.api_requests(method.flip(kind, image))
            flips.wait_serving(ingress, PROD_HOST, VERSION[image])
        say(f"    API server requests per flip ({method.name}): {summary['api_requests']}")
    return summaries


def pulumi_phase(args: argparse.Namespace, env: dict, kube: KubeClient, ingress: str, results: dict) -> None:
    """`pulumi up` and `bluegreen promote/rollback` on a `bench` stack, then where one `pulumi up`
    flip's time goes."""
    say("==> bench stack: both slots deployed, prod on blue")
    pulumi = ["pulumi", "--non-interactive"]
    # `stack init` selects the new stack; put the user's selection back at the end.
    selected = subprocess.run([*pulumi, "stack", "--show-name"], env=env, cwd=REPO, capture_output=True, text=True)
    subprocess.run([*pulumi, "stack", "init", STACK], env=env, cwd=REPO, capture_output=True)
    cleanup: list[Callable[[], None]] = []
    try:
        for key, value in {**CONFIG, "productionSlot": "blue"}.items():
            run([*pulumi, "config", "set", "--path", key, value, "--stack", STACK], env)
        run([*pulumi, "up", "--yes", "--skip-preview", "--stack", STACK], env)

        def up(kind: str, image: str) -> flips.Commands:
            return flips.in_order(
                flips.shell([*pulumi, "config", "set", "productionSlot", SLOT_OF[image], "--stack", STACK], env, REPO),
                flips.shell([*pulumi, "up", "--yes", "--skip-preview", "--stack", STACK], env, REPO))

        def tool(kind: str, image: str) -> flips.Commands:
            return flips.shell([sys.executable, "-m", "bluegreen", kind, "--stack", STACK], env, REPO)

        methods = [Method("pulumi up", up), Method("bluegreen promote/rollback", tool)]
        if args.baseline:
            methods.append(_baseline_method(args.baseline, env, cleanup))
        results["flips"].update(flip_side_by_side(methods, ingress, args.runs))

        say("==> `bluegreen --help` and `bluegreen status`, as a loop would run them")
        results["cli"] = _cli_times(env, 5)

        say("==> where the time of one `pulumi up` flip goes (engine log, -v=9)")
        run([*pulumi, "config", "set", "productionSlot", "green", "--stack", STACK], env)
        results["breakdown"] = breakdown.breakdown([*pulumi, "up", "--yes", "--skip-preview", "--stack", STACK],
                                                   env, REPO)
    finally:
        for undo in cleanup:
            undo()
        say("==> removing the bench stack")
        run([*pulumi, "destroy", "--yes", "--stack", STACK], env)
        run([*pulumi, "stack", "rm", "--yes", STACK], env)
        if selected.returncode == 0:
            subprocess.run([*pulumi, "stack", "select", selected.stdout.strip()], env=env, cwd=REPO,
                           capture_output=True)


def _baseline_method(directory: str, env: dict, cleanup: list[Callable[[], None]]) -> Method:
    """The release tool of another checkout, run as that checkout runs it: its own venv and program
    (so its program runs in its process, as this checkout's does), on the same stack: the stack's
    config file is linked into it for the run."""
    base = os.path.abspath(directory)
    revision = subprocess.run(["git", "-C", base, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip() or base
    python = os.path.join(base, ".venv", "bin", "python")
    if not os.path.exists(python):
        raise RuntimeError(f"--baseline {directory}: no .venv there (run `make venv` in it first)")
    stack_file = os.path.join(base, f"Pulumi.{STACK}.yaml")
    if not os.path.lexists(stack_file):
        os.symlink(os.path.join(REPO, f"Pulumi.{STACK}.yaml"), stack_file)
        cleanup.append(lambda: os.remove(stack_file))

    def flip(kind: str, image: str) -> flips.Commands:
        return flips.shell([python, "-m", "bluegreen", kind, "--stack", STACK, "--project-dir", base], env, base)

    return Method(f"bluegreen before ({revision})", flip)


def helm_phase(args: argparse.Namespace, env: dict, kube: KubeClient, ingress: str, results: dict) -> None:
    """The article's `helm upgrade --reuse-values`, and the floor: `kubectl patch` of both Services."""
    say("==> the same release with plain helm")
    values = _chart_values(HELM_NS, {"blue": {"image": OLD}, "green": {"enabled": True, "image": NEW}})
    try:
        run(["helm", "upgrade", "--install", "web", "./bluegreen/chart", "-n", HELM_NS, "--create-namespace",
             "-f", values, "--reset-values", "--wait", "--timeout", "120s"], env)

        def helm(kind: str, image: str) -> flips.Commands:
            return flips.shell(["helm", "upgrade", "web", "./bluegreen/chart", "-n", HELM_NS, "--reuse-values",
                                "--set", f"productionSlot={SLOT_OF[image]}"], env, REPO)

        def patch(kind: str, image: str) -> flips.Commands:
            prod, stage = SLOT_OF[image], SLOT_OF[OLD if image == NEW else NEW]
            return flips.in_order(*[
                flips.shell(["kubectl", "patch", "service", f"web-{role}", "-n", HELM_NS, "--type", "merge", "-p",
                             json.dumps({"spec": {"selector": {"slot": slot}}})], env, REPO)
                for role, slot in (("prod", prod), ("stage", stage))])

        for method in (Method("helm upgrade --reuse-values", helm), Method("kubectl patch (floor)", patch)):
            results["flips"][method.name] = flip_all(method, ingress, args.runs)
    finally:
        say("==> removing the helm release")
        run(["helm", "uninstall", "web", "-n", HELM_NS, "--wait", "--ignore-not-found"], env)
        kube.request("DELETE", f"/api/v1/namespaces/{HELM_NS}")


def argo_phase(args: argparse.Namespace, env: dict, kube: KubeClient, ingress: str, results: dict) -> None:
    """Argo Rollouts blue-green: the controller started here, the chart's pods as a Rollout,
    `kubectl argo rollouts promote` for a promotion, `undo` for a rollback."""
    kubeconfig = env["KUBECONFIG"]
    log = os.path.join(REPO, ".state", "rollouts-controller.log")
    say(f"==> Argo Rollouts {argo.tool_dir(REPO).rsplit('-', 1)[1]}: CRDs, controller (log: {log})")
    controller = argo.Controller(REPO, kubeconfig, log)
    try:
        with controller:
            rendered = _render(argo.NAMESPACE, {"blue": {"image": OLD}})
            manifests = argo.rollout_manifests(rendered, (OLD, NEW))
            argo.apply(kubeconfig, manifests)
            argo.wait_for(kube, "Healthy")
            say("    idle for 10 s (controller usage)")
            idle_from = time.time()
            time.sleep(10)
            idle = controller.usage(idle_from, time.time())
            container = argo.container_name(manifests)

            def bring_up(kind: str, image: str) -> None:
                if kind == "promote":  # the new version behind preview, as our deploy puts it behind stage
                    run(argo.plugin("set", "image", argo.NAME, f"{container}={image}"), env)
                    argo.wait_for(kube, "Paused")

            # A rollback to the old version while it is still up (scaleDownDelaySeconds) is a "fast
            # rollback" in Argo: `undo` alone switches prod, with no pause to promote.
            def promote(kind: str, image: str) -> flips.Commands:
                return flips.shell(argo.plugin("promote" if kind == "promote" else "undo", argo.NAME), env, REPO)

            name = "argo rollouts promote/undo"
            results["flips"][name] = flip_all(Method(name, promote, bring_up), ingress, args.runs)
            during = [controller.usage(f["started"], f["ended"]) for f in results["flips"][name]["flips"]]
            results["argo_controller"] = {
                "idle": idle,
                "during_flips": {"cpu_percent_median": round(statistics.median(d["cpu_percent"] for d in during), 1),
                                 "cpu_percent_max": max(d["cpu_percent"] for d in during),
                                 "rss_mb_max": max(d["rss_mb_max"] for d in during)},
            }
            if not args.skip_features:
                say("==> Argo's blue-green options, tried on the running controller")
                test_pod = next(doc for doc in rendered if doc["kind"] == "Pod")
                argo.apply(kubeconfig, argo_features.analysis_templates(test_pod))
                peer = argo_features.Peer(kube, kubeconfig, ingress, (PROD_HOST, STAGE_HOST),
                                          {**VERSION, NEWER: "3.0.0"})
                results["argo_features"] = argo_features.check_all(peer, OLD, NEW, NEWER, say)
    finally:
        say("==> removing the Rollout, the controller's CRDs")
        kube.request("DELETE", f"/api/v1/namespaces/{argo.NAMESPACE}")
        _wait_gone(kube, f"/api/v1/namespaces/{argo.NAMESPACE}")
        controller.remove_crds()


def _cli_times(env: dict, runs: int) -> dict:
    """Median seconds of `bluegreen --help` and `bluegreen status` (the bench stack), whole processes."""
    seconds = {}
    for name, command in (("--help", ["--help"]), ("status", ["status", "--stack", STACK])):
        times = []
        for _ in range(runs):
            started = time.monotonic()
            subprocess.run([sys.executable, "-m", "bluegreen", *command], env=env, cwd=REPO, capture_output=True)
            times.append(time.monotonic() - started)
        seconds[name] = round(statistics.median(times), 3)
    return {"runs": runs, "seconds": seconds}


PHASES: dict[str, Callable[..., None]] = {"pulumi": pulumi_phase, "helm": helm_phase, "argo": argo_phase}


def _chart_values(namespace: str, slots: dict) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as values:
        raw = {"namespace": namespace, "prodHost": PROD_HOST, "stageHost": STAGE_HOST, **slots}
        # The chart's stage check (its `helm test` pod, Argo's analysis Job) runs the demo image:
        # the node has no registry to pull its default image from.
        json.dump({**chart_values(parse(raw)), "tests": {"image": OLD, "command": ["/app", "check"]}}, values)
    return values.name


def _render(namespace: str, slots: dict) -> list[dict]:
    done = subprocess.run(["helm", "template", "web", "./bluegreen/chart", "-n", namespace,
                           "-f", _chart_values(namespace, slots)], cwd=REPO, capture_output=True, text=True,
                          check=True)
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _wait_gone(kube: KubeClient, path: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while kube.get(path) and time.monotonic() < deadline:
        time.sleep(0.5)


def run(command: list[str], env: dict) -> None:
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def _ratios(table: dict) -> None:
    """Each method's median switch against helm's and the floor's, and the guard's cost: a guarded
    command against the bare `pulumi up` flip it guards; each where its methods ran (--only)."""
    def median(name: str) -> float | None:
        return table.get(name, {}).get("switch_s", {}).get("median")

    helm, floor, bare = median("helm upgrade --reuse-values"), median("kubectl patch (floor)"), median("pulumi up")
    for row in table.values():
        if helm and floor:
            row["vs_helm"] = round(row["switch_s"]["median"] / helm, 2)
            row["vs_floor"] = round(row["switch_s"]["median"] / floor, 2)
        if bare and "promote_switch_s" in row:
            row["promote_vs_pulumi_up"] = round(row["promote_switch_s"]["median"] / bare, 2)
            row["rollback_vs_pulumi_up"] = round(row["rollback_switch_s"]["median"] / bare, 2)


def _timelines(results: dict) -> str | None:
    """One picture: each method's promote flip of median switch time, responses per 100 ms."""
    chosen = {}
    for method, row in results["flips"].items():
        promotes = sorted((f for f in row["flips"] if f["kind"] == "promote"), key=lambda f: f["switch_s"])
        if promotes:
            chosen[method] = promotes[len(promotes) // 2]
    if not chosen:
        return None
    path = os.path.join(REPO, "bench", "results", f"timeline-{time.strftime('%Y%m%d-%H%M%S')}.png")
    return timeline.draw(chosen, path, f"One promotion per method (the median one), {results['load_rps']:.0f} "
                                       "requests/s to the prod host")


def _write(results: dict) -> str:
    folder = os.path.join(REPO, "bench", "results")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    return path


def _print_table(results: dict) -> None:
    def span(s: dict) -> str:
        return f"{s['median']:5.2f} ({s['min']:.2f}-{s['max']:.2f})" if s else "-"

    print(f"\nProd flips, {results['runs_per_method']} per method alternating promote and rollback, "
          f"{results['load_rps']:.0f} requests/s to the prod host through the ingress.")
    print("Seconds from the command's start: median (min-max). gap = switched minus command returned.")
    print(f"{'method':28} {'switched':>18} {'promote':>18} {'rollback':>18} {'command returned':>18} "
          f"{'gap':>6} {'requests':>9} {'failed':>7} {'x helm':>7} {'x floor':>8} {'promote x up':>13} "
          f"{'rollback x up':>14} {'pulumi/python processes':>24}")
    for method, row in results["flips"].items():
        processes = " ".join(f"{kind} {c['pulumi_processes']}/{c['python_processes']}"
                             for kind, c in row.get("processes", {}).items()) or "-"
        print(f"{method:28} {span(row['switch_s']):>18} {span(row['promote_switch_s']):>18} "
              f"{span(row['rollback_switch_s']):>18} {span(row['command_s']):>18} {row['gap_s']['median']:6.2f} "
              f"{row['sent']:>9} {row['failed']:>7} {row.get('vs_helm', '-'):>7} {row.get('vs_floor', '-'):>8} "
              f"{row.get('promote_vs_pulumi_up', '-'):>13} {row.get('rollback_vs_pulumi_up', '-'):>14} {processes:>24}")
    print("\nAPI server requests per flip (all, of them discovery and OpenAPI reads), promote and rollback:")
    for method, row in results["flips"].items():
        print(f"  {method:28} " + "; ".join(f"{kind} {c['all']} ({c['discovery']} discovery, {c['openapi']} OpenAPI)"
                                            for kind, c in row.get("api_requests", {}).items()))
    if "cli" in results:
        print("\n`bluegreen` as a loop would run it, seconds (median of "
              f"{results['cli']['runs']}): " + ", ".join(f"{k} {v:.2f}" for k, v in results["cli"]["seconds"].items()))
    if "argo_controller" in results:
        usage = results["argo_controller"]
        print(f"\nArgo Rollouts controller (host process): idle {usage['idle']['cpu_percent']}% CPU, "
              f"{usage['idle']['rss_mb_max']} MB resident; during flips {usage['during_flips']['cpu_percent_median']}% "
              f"CPU (max {usage['during_flips']['cpu_percent_max']}%), {usage['during_flips']['rss_mb_max']} MB. "
              "bluegreen runs nothing in the cluster.")
    for row in results.get("argo_features", []):
        if row is results["argo_features"][0]:
            print("\nArgo Rollouts' blue-green options, tried on the running controller:")
        print(f"  {row['option']}: {row['observed']}")
    if "breakdown" in results:
        detail = results["breakdown"]
        print(f"\nOne `pulumi up` flip, {detail['total_s']:.2f} s in all (with -v=9 logging):")
        for phase, seconds in detail["phases_s"].items():
            print(f"  {phase:40} {seconds:6.3f} s")
        print(f"  {'(provider start, inside program run)':40} {detail['provider_start_s (inside program run)']:6.3f} s")
    if "growth" in results:
        grow = results["growth"]
        print("\nCost growth by number of BlueGreenApp components in one stack:")
        print(f"  {'apps':>5} {'program under mocks':>20} {'pulumi preview':>15}")
        for apps in growth.SIZES:
            print(f"  {apps:>5} {grow['program_under_mocks_s'][apps]:>19.3f}s {grow['pulumi_preview_s'][apps]:>14.2f}s")
        print(f"  per extra app: {grow['program_under_mocks_per_extra_app_s'] * 1000:.1f} ms under mocks, "
              f"{grow['pulumi_preview_per_extra_app_s'] * 1000:.0f} ms in pulumi preview")


if __name__ == "__main__":
    sys.exit(main())
