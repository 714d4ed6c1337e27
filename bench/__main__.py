"""`make bench` (python -m bench): how fast a promotion is, against the article's helm flow and
the kubectl floor, and how the program's cost grows with the number of apps.

Runs in the README's environment (source scripts/activate): the local cluster, the repo's project
with a `bench` stack in namespace bg-bench, and an identical plain-helm release in bg-bench-helm.
Prints a table and writes bench/results/bench-<time>.json. A tool, not a test: nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from bench import breakdown, flips, growth
from bluegreen.config import parse
from bluegreen.release.checks import Names
from bluegreen.release.kube import KubeClient
from bluegreen.values import chart_values

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STACK, NS, HELM_NS = "bench", "bg-bench", "bg-bench-helm"
# The demo app (scripts/images/), imported into the local node: real pods serve each flip.
V1, V2 = "bluegreen.local/demo:1.0.0", "bluegreen.local/demo:2.0.0"
CONFIG = {"namespace": NS, "prodHost": "shop.bench.example.com", "stageHost": "stage.shop.bench.example.com",
          "ingressClass": "traefik",
          "blue.enabled": "true", "blue.image": V1, "green.enabled": "true", "green.image": V2}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="flips per method (alternating), default 10")
    parser.add_argument("--skip-growth", action="store_true", help="only the flip measurements")
    parser.add_argument("--keep", action="store_true", help="leave the bench stack and release in place")
    args = parser.parse_args()
    env = dict(os.environ)
    if env.get("BLUEGREEN_CLUSTER", "local") == "local":
        subprocess.run([os.path.join(REPO, "scripts", "cluster.sh"), "up"], check=True, env=env)
    kube = KubeClient()
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs_per_method": args.runs}

    say("==> bench stack: both slots deployed, prod on blue")
    pulumi = ["pulumi", "--non-interactive"]
    # `stack init` selects the new stack; put the user's selection back at the end.
    selected = subprocess.run([*pulumi, "stack", "--show-name"], env=env, cwd=REPO, capture_output=True, text=True)
    subprocess.run([*pulumi, "stack", "init", STACK], env=env, cwd=REPO, capture_output=True)
    for key, value in CONFIG.items():
        run([*pulumi, "config", "set", "--path", key, value, "--stack", STACK], env)
    run([*pulumi, "config", "set", "productionSlot", "blue", "--stack", STACK], env)
    run([*pulumi, "up", "--yes", "--skip-preview", "--stack", STACK], env)
    say("==> the same release with plain helm")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as values:
        raw = {"namespace": HELM_NS, "prodHost": CONFIG["prodHost"], "stageHost": CONFIG["stageHost"],
               "blue": {"image": V1}, "green": {"enabled": True, "image": V2}}
        json.dump(chart_values(parse(raw)), values)
    run(["helm", "upgrade", "--install", "web", "./bluegreen/chart", "-n", HELM_NS, "--create-namespace",
         "-f", values.name, "--reset-values", "--wait", "--timeout", "120s"], env)

    pulumi_names, helm_names = Names(NS, "web"), Names(HELM_NS, "web")
    methods = {
        "pulumi up": (pulumi_names, lambda slot: [
            flips.shell([*pulumi, "config", "set", "productionSlot", slot, "--stack", STACK], env, REPO),
            flips.shell([*pulumi, "up", "--yes", "--skip-preview", "--stack", STACK], env, REPO)]),
        "bluegreen promote": (pulumi_names, lambda slot: [
            flips.shell([sys.executable, "-m", "bluegreen", "promote", "--stack", STACK], env, REPO)]),
        "helm upgrade --reuse-values": (helm_names, lambda slot: [
            flips.shell(["helm", "upgrade", "web", "./bluegreen/chart", "-n", HELM_NS, "--reuse-values",
                         "--set", f"productionSlot={slot}"], env, REPO)]),
        "kubectl patch (floor)": (helm_names, lambda slot: [
            flips.shell(["kubectl", "patch", "service", f"web-{role}", "-n", HELM_NS, "--type", "merge", "-p",
                         json.dumps({"spec": {"selector": {"slot": chosen}}})], env, REPO)
            for role, chosen in (("prod", slot), ("stage", "blue" if slot == "green" else "green"))]),
    }
    results["flips"] = {}
    for method, (names, commands) in methods.items():
        say(f"==> {args.runs} flips: {method}")
        measured = []
        for index in range(args.runs):
            target = "green" if index % 2 == 0 else "blue"
            steps = commands(target)
            measured.append(flips.flip(kube, names, method, target, _run_all(steps)))
            say(f"    -> {target}: switch {measured[-1].switch_s:.2f} s, command {measured[-1].command_s:.2f} s, "
                f"{measured[-1].polls} polls, {measured[-1].empty_polls} empty")
        results["flips"][method] = flips.summarize(measured)
        if method == "bluegreen promote" and args.runs % 2:
            flips.shell([sys.executable, "-m", "bluegreen", "promote", "--stack", STACK], env, REPO)()
    _ratios(results["flips"])

    say("==> where the time of one `pulumi up` flip goes (engine log, -v=9)")
    current = subprocess.run([*pulumi, "config", "get", "productionSlot", "--stack", STACK], env=env, cwd=REPO,
                             capture_output=True, text=True).stdout.strip()
    run([*pulumi, "config", "set", "productionSlot", "green" if current == "blue" else "blue", "--stack", STACK], env)
    results["breakdown"] = breakdown.breakdown([*pulumi, "up", "--yes", "--skip-preview", "--stack", STACK], env, REPO)

    if not args.skip_growth:
        results["growth"] = {"program_under_mocks_s": {}, "pulumi_preview_s": {}}
        for apps in growth.SIZES:
            say(f"==> growth: {apps} app(s)")
            results["growth"]["program_under_mocks_s"][apps] = round(growth.program_under_mocks(apps), 4)
            results["growth"]["pulumi_preview_s"][apps] = round(growth.preview_on_engine(apps, REPO, env), 3)
        for key in ("program_under_mocks_s", "pulumi_preview_s"):
            results["growth"][key.replace("_s", "_per_extra_app_s")] = round(growth.slope(results["growth"][key]), 4)

    if not args.keep:
        say("==> cleaning up")
        run([*pulumi, "destroy", "--yes", "--stack", STACK], env)
        run([*pulumi, "stack", "rm", "--yes", STACK], env)
        run(["helm", "uninstall", "web", "-n", HELM_NS, "--wait"], env)
        kube.request("DELETE", f"/api/v1/namespaces/{HELM_NS}")
    if selected.returncode == 0:
        subprocess.run([*pulumi, "stack", "select", selected.stdout.strip()], env=env, cwd=REPO, capture_output=True)
    path = _write(results)
    _print_table(results)
    print(f"\nfull results: {path}")
    return 0


def run(command: list[str], env: dict) -> None:
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def _run_all(steps: list) -> Callable[[], None]:
    """One flip's commands, run in order when the flip starts (bound now, not to the loop variable)."""
    def run_steps() -> None:
        for step in steps:
            step()
    return run_steps


def _ratios(table: dict) -> None:
    helm = table["helm upgrade --reuse-values"]["switch_s"]["median"]
    floor = table["kubectl patch (floor)"]["switch_s"]["median"]
    for row in table.values():
        row["vs_helm"] = round(row["switch_s"]["median"] / helm, 2)
        row["vs_floor"] = round(row["switch_s"]["median"] / floor, 2)


def _write(results: dict) -> str:
    folder = os.path.join(REPO, "bench", "results")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    return path


def _print_table(results: dict) -> None:
    def span(s: dict) -> str:
        return f"{s['median']:6.2f} ({s['min']:.2f}-{s['max']:.2f})"

    print(f"\nFlip latency, {results['runs_per_method']} alternating flips each: median (min-max) seconds")
    print(f"{'method':30} {'until prod switched':>22} {'until command returned':>24} {'x helm':>7} {'x floor':>8}"
          f" {'polls':>6} {'empty':>6} {'not-ready':>9} {'same-slot window':>22}")
    for method, row in results["flips"].items():
        print(f"{method:30} {span(row['switch_s']):>22} {span(row['command_s']):>24} {row['vs_helm']:>7} "
              f"{row['vs_floor']:>8} {row['polls']:>6} {row['empty_polls']:>6} {row['not_ready_polls']:>9} "
              f"{span(row['same_slot_s']):>22}")
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
