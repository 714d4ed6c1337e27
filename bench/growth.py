"""Cost growth: the program with 1, 8 and 32 BlueGreenApp components in one stack.

Twice: the program alone under Pulumi mocks (what our Python costs), and `pulumi preview` of a new
stack on the real engine (what a user waits for). The cost per extra app is the least-squares
slope over the three sizes.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import textwrap
import time

import pulumi
from pulumi.runtime import settings as runtime_settings

from bluegreen.component import BlueGreenApp, BlueGreenAppArgs

SIZES = (1, 8, 32)
IMAGE = "registry.example.com/shop/web:1.4.0"


def app_args(index: int) -> BlueGreenAppArgs:
    return BlueGreenAppArgs.from_config({"namespace": f"bg-growth-{index}", "blue": {"image": IMAGE},
                                         "prodHost": f"app{index}.example.com",
                                         "stageHost": f"stage.app{index}.example.com"})


class _EchoMocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        outputs = dict(args.inputs)
        if args.typ == "kubernetes:helm.sh/v3:Release":
            outputs["status"] = {"revision": 1, "status": "deployed"}
        return f"{args.name}-id", outputs

    def call(self, args):
        return {}


def program_under_mocks(apps: int, repeats: int = 5) -> float:
    """Median seconds to build `apps` components (settings parsed, resources registered)."""
    times = []
    for _ in range(repeats):
        runtime_settings.ROOT.set(None)
        pulumi.runtime.set_mocks(_EchoMocks(), project="bluegreen", stack="growth", preview=True)

        @pulumi.runtime.test
        def build():
            for index in range(apps):
                app = BlueGreenApp(f"app{index}", app_args(index))
            return app.release.urn

        started = time.perf_counter()
        build()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


PROJECT = """\
name: bluegreen-growth
runtime:
  name: python
  options:
    toolchain: pip
    virtualenv: {venv}
"""

MAIN = """\
import pulumi
from bench.growth import app_args
from bluegreen.component import BlueGreenApp

for index in range(int(pulumi.Config().require("apps"))):
    BlueGreenApp(f"app{index}", app_args(index))
"""


def preview_on_engine(apps: int, repo: str, env: dict) -> float:
    """Seconds of `pulumi preview` of a new stack holding `apps` components."""
    with tempfile.TemporaryDirectory(prefix="bluegreen-growth-") as project:
        with open(os.path.join(project, "Pulumi.yaml"), "w") as f:
            f.write(PROJECT.format(venv=os.path.join(repo, ".venv")))
        with open(os.path.join(project, "__main__.py"), "w") as f:
            f.write(textwrap.dedent(MAIN))
        run_env = {**env, "PYTHONPATH": repo}
        stack = f"growth-{apps}"

        def pulumi_cmd(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(["pulumi", *args, "--stack", stack], cwd=project, env=run_env,
                                  capture_output=True, text=True)

        pulumi_cmd("stack", "init")
        pulumi_cmd("config", "set", "apps", str(apps))
        started = time.perf_counter()
        done = pulumi_cmd("preview")
        seconds = time.perf_counter() - started
        pulumi_cmd("stack", "rm", "--yes", "--force")
        if done.returncode != 0:
            raise RuntimeError(f"pulumi preview with {apps} apps failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return seconds


def slope(points: dict[int, float]) -> float:
    xs, ys = list(points), list(points.values())
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)
