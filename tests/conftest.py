import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO_ROOT


def toolchain_tool(name: str, target: str) -> str:
    """Path of a tool from scripts/toolchain.sh, building it first when it is not cached."""
    import os
    import shutil
    import subprocess

    script = REPO_ROOT / "scripts" / "toolchain.sh"
    subprocess.run([str(script), target], check=True, stdout=subprocess.DEVNULL)
    tool_path = subprocess.run([str(script), "--print-path"], check=True, capture_output=True, text=True).stdout.strip()
    found = shutil.which(name, path=os.pathsep.join(p for p in (tool_path, os.environ.get("PATH", "")) if p))
    if not found:
        pytest.fail(f"{name} is not available after `scripts/toolchain.sh {target}`")
    return found


@pytest.fixture(scope="session")
def helm() -> str:
    return toolchain_tool("helm", "helm")


def cached_tool(name: str, what_is_missing: str) -> str:
    """A tool on PATH or in the tool cache, not built here (`make test` builds it first, within its
    budget): when it is missing, the tests that use it are skipped with the reason in pytest's
    summary, or fail under BLUEGREEN_REQUIRE_E2E=1, like the e2e tier's tools."""
    import os
    import shutil
    import subprocess

    tool_path = subprocess.run([str(REPO_ROOT / "scripts" / "toolchain.sh"), "--print-path"], check=True,
                               capture_output=True, text=True).stdout.strip()
    found = shutil.which(name, path=os.pathsep.join(p for p in (tool_path, os.environ.get("PATH", "")) if p))
    if not found:
        reason = f"{name} not built: {what_is_missing} (scripts/toolchain.sh {name})"
        if os.environ.get("BLUEGREEN_REQUIRE_E2E"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
def kube_score() -> str:
    """kube-score (`scripts/toolchain.sh chart`)."""
    return cached_tool("kube-score", "the chart's kube-score checks did not run")


@pytest.fixture(scope="session")
def vegeta() -> str:
    """vegeta, the load generator of bench/traffic.py (`scripts/toolchain.sh e2e`): the tests that
    send or count requests (the e2e modules whose steps are counted) use this fixture."""
    return cached_tool("vegeta", "no load can be sent, so the tests that count requests did not run")


def build_wheel(directory: pathlib.Path) -> pathlib.Path:
    """The package's wheel, built (offline) from a copy of its sources, so that the checkout gets
    no build/ or egg-info from it."""
    import shutil
    import subprocess
    import sys

    source = directory / "source"
    source.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "pyproject.toml", source)
    shutil.copytree(REPO_ROOT / "bluegreen", source / "bluegreen",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(directory), str(source)], check=True, capture_output=True)
    (wheel,) = directory.glob("bluegreen-*.whl")
    return wheel
