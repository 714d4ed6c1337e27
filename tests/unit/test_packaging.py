"""The package as another project installs it: a wheel with the chart inside, and runtime
dependencies that match what this repo pins (requirements.txt, scripts/versions.env)."""

from __future__ import annotations

import re
import tomllib
import zipfile

from tests.conftest import REPO_ROOT, build_wheel


def pins() -> dict[str, str]:
    found = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            found[name.strip().lower()] = version.strip()
    return found


def test_runtime_dependencies_admit_the_pinned_versions():
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lower = dict(re.match(r"^([A-Za-z0-9_.-]+)>=([0-9.]+)", spec).groups() for spec in declared)
    pinned = pins()
    # The Pulumi SDKs: the lowest version allowed is the one this repo builds its CLI and plugin for;
    # the kubernetes client: the one the release tool is tested with. Every pinned runtime dependency
    # is declared with its pin as the lowest version.
    assert {"pulumi", "pulumi-kubernetes", "kubernetes"} <= lower.keys()
    for name, version in lower.items():
        if name.lower() in pinned:
            assert version == pinned[name.lower()], (name, version, pinned[name.lower()])


def test_the_wheel_carries_the_chart_and_its_dependencies(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    chart = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "bluegreen" / "chart").rglob("*") if p.is_file()}
    assert chart <= names, chart - names
    requires = {line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")}
    assert {"pulumi<4,>=3.260.0", "pulumi-kubernetes<5,>=4.25.0", "kubernetes<37,>=36.0.3", "PyYAML>=6",
            "boto3<2,>=1.44.8"} <= requires, requires
    assert "bluegreen/component.py" in names and "bluegreen/release/cli.py" in names
