"""scripts/toolchain.sh and scripts/activate with tools the user already has: nothing is built, and
the project's stand-in language host never shadows an installed Pulumi's own.

Fakes stand in for the installed tools (a `pulumi` that reports a version, a provider in a Pulumi
plugin cache); the tool cache is empty, so any build would show in the output (and take minutes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPTS = REPO_ROOT / "scripts"
VERSIONS = dict(line.split("=", 1) for line in (SCRIPTS / "versions.env").read_text().splitlines()
                if "=" in line and not line.startswith("#"))


def fake(bin_dir: Path, name: str, output: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(0o755)


@pytest.fixture
def installed(tmp_path) -> dict[str, str]:
    """An environment with the user's own pulumi (newer than the pin), helm, and the provider in
    Pulumi's plugin cache, and an empty tool cache."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    major, minor, patch = VERSIONS["PULUMI_VERSION"].split(".")
    fake(bin_dir, "pulumi", f"v{major}.{int(minor) + 5}.{patch}")
    fake(bin_dir, "helm", f"v{VERSIONS['HELM_VERSION']}")
    plugin = tmp_path / "pulumi-home" / "plugins" / f"resource-kubernetes-v{VERSIONS['PULUMI_KUBERNETES_VERSION']}"
    plugin.mkdir(parents=True)
    fake(plugin, "pulumi-resource-kubernetes", "provider")
    # Only the fakes and the system's own tools (go, python3): not the tools of a shell that ran
    # `source scripts/activate`, as `make test` does.
    system = [os.path.dirname(shutil.which(tool) or "") for tool in ("go", "python3")] + ["/usr/bin", "/bin"]
    return {**os.environ, "PATH": ":".join([str(bin_dir), *system]), "PULUMI_HOME": str(tmp_path / "pulumi-home"),
            "BLUEGREEN_CACHE": str(tmp_path / "cache"), "KUBECONFIG": str(tmp_path / "my-kubeconfig")}


def toolchain(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPTS / "toolchain.sh"), *args], capture_output=True, text=True, env=env, timeout=60)


def test_users_own_tools_are_used_and_nothing_is_built(installed, tmp_path):
    done = toolchain("for-user", env=installed)
    assert done.returncode == 0, done.stderr
    assert "building" not in done.stderr, done.stderr
    assert f"pulumi: using yours, found on PATH: {tmp_path}/bin/pulumi (v3." in done.stderr
    assert "langhost: not needed" in done.stderr and "runs its own language host" in done.stderr
    assert "found in Pulumi's plugin cache" in done.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*"))


def test_an_older_pulumi_is_not_used(installed, tmp_path):
    fake(tmp_path / "bin", "pulumi", "v3.1.0")
    # A zero budget: what would be built is reported as skipped, and nothing is built.
    done = toolchain("--budget-minutes", "0", "pulumi", env=installed)
    assert "SKIPPING pulumi" in done.stderr, done.stderr


def test_the_stand_in_language_host_is_never_on_path(installed, tmp_path):
    # A cache holding every tool dir, the stand-in host's included (keyed by its sources' hash).
    cache = tmp_path / "cache" / "tools"
    langhost = Path(toolchain("--print-dir", "langhost", env=installed).stdout.strip())
    assert langhost.parent == cache and langhost.name.startswith(f"langhost-{VERSIONS['PULUMI_VERSION']}-")
    for tool_dir in (langhost, cache / f"helm-{VERSIONS['HELM_VERSION']}"):
        (tool_dir / "bin").mkdir(parents=True)
    fake(langhost / "bin", "pulumi-language-python", "stand-in")
    printed = toolchain("--print-path", env=installed).stdout.strip().split(":")
    assert str(cache / f"helm-{VERSIONS['HELM_VERSION']}" / "bin") in printed
    assert not any("langhost" in entry for entry in printed), printed
    # scripts/activate (with the user's own kubeconfig) leaves the user's pulumi first and finds no host of ours.
    shell = subprocess.run(["bash", "-c", "source scripts/activate && command -v pulumi && "
                            "{ command -v pulumi-language-python || echo none; } && echo $BLUEGREEN_CLUSTER"],
                           capture_output=True, text=True, env=installed, cwd=REPO_ROOT)
    pulumi, host, cluster = shell.stdout.split()
    assert (pulumi, host, cluster) == (f"{tmp_path}/bin/pulumi", "none", "user"), shell.stdout + shell.stderr


def test_a_failed_build_step_leaves_no_cached_tool(installed, tmp_path):
    # A `go` whose module download fails but whose install still "succeeds" (writes the binary):
    # helm's build must stop at the failed step, not cache what the later step left.
    fake_go = tmp_path / "bin" / "go"
    fake_go.write_text('#!/bin/sh\ncase "$*" in\n  *"mod download"*) echo "refused" >&2; exit 1 ;;\n'
                       '  install*) mkdir -p "$GOBIN" && printf "#!/bin/sh\\n" > "$GOBIN/helm"'
                       ' && chmod +x "$GOBIN/helm" ;;\n'
                       'esac\n')
    fake_go.chmod(0o755)
    (tmp_path / "bin" / "helm").unlink()  # not installed: it must be built
    done = toolchain("helm", env=installed)
    assert done.returncode != 0 and "building helm" in done.stderr and "failed" in done.stderr, done.stderr
    assert not (tmp_path / "cache" / "tools" / f"helm-{VERSIONS['HELM_VERSION']}").exists()


def test_groups(installed, tmp_path):
    # Nothing installed: with a zero budget every tool of a group is reported skipped, in order.
    for name in ("pulumi", "helm"):
        (tmp_path / "bin" / name).unlink()
    env = {**installed, "PULUMI_HOME": str(tmp_path / "empty-pulumi-home")}
    local = "helm pulumi langhost kubernetes-provider kwok etcd kube traefik traefik-crds gateway-api"
    expected = {
        "chart": "helm kube-score",
        "for-local": local,
        "for-user": "helm pulumi langhost kubernetes-provider",
        "e2e": f"{local} vegeta versitygw kube-router",
        "bench": f"{local} vegeta versitygw kube-router argo-rollouts",
        "all": f"helm kube-score {local.removeprefix('helm ')} vegeta versitygw argo-rollouts kube-router",
    }
    for group, tools in expected.items():
        done = toolchain("--budget-minutes", "0", group, env=env)
        assert done.returncode == 0, done.stderr
        assert f"SKIPPED (not built, see above): {tools}\n" in done.stderr, (group, done.stderr)


def test_versitygw_and_argo_rollouts_on_path_are_used_at_the_pinned_version_only(installed, tmp_path):
    bin_dir = tmp_path / "bin"
    vgw, argo = VERSIONS["VERSITYGW_VERSION"], VERSIONS["ARGO_ROLLOUTS_VERSION"]
    # What the real binaries print (`versitygw --version`, `rollouts-controller --version`,
    # `kubectl-argo-rollouts version --short`) for a build outside git.
    fake(bin_dir, "versitygw", f"Version  : v{vgw}\nBuild    : norev\nBuildTime: none")
    fake(bin_dir, "rollouts-controller", f"v{argo}+unknown")
    fake(bin_dir, "kubectl-argo-rollouts", f"kubectl-argo-rollouts: v{argo}+unknown")
    done = toolchain("--budget-minutes", "0", "versitygw", "argo-rollouts", env=installed)
    assert done.returncode == 0, done.stderr
    assert f"versitygw: using yours, found on PATH: {bin_dir}/versitygw" in done.stderr, done.stderr
    assert f"argo-rollouts: using yours, found on PATH: {bin_dir}/rollouts-controller" in done.stderr, done.stderr
    assert "SKIPPING" not in done.stderr, done.stderr
    # Another version (one that only starts like the pin, too), or a plugin of another version.
    fake(bin_dir, "versitygw", f"Version  : v{vgw}1\nBuild    : norev")
    fake(bin_dir, "kubectl-argo-rollouts", f"kubectl-argo-rollouts: v{argo}0+unknown")
    done = toolchain("--budget-minutes", "0", "versitygw", "argo-rollouts", env=installed)
    assert "SKIPPED (not built, see above): versitygw argo-rollouts\n" in done.stderr, done.stderr


# A tool's version output, as a release build prints it, with {v} for its version.
VERSION_OUTPUT = {
    "kube-score": ("KUBE_SCORE_VERSION", "kube-score version: {v}, commit: abc123, built: 2025-01-01"),
    "kube-router": ("KUBE_ROUTER_VERSION", "Running kube-router version v{v}, built on 2026-01-01, go1.26.8"),
    "vegeta": ("VEGETA_VERSION", "Version: v{v}\nCommit: \nRuntime: go1.26.8 linux/amd64\nDate: 2026-01-01T00:00:00Z"),
}


@pytest.mark.parametrize("tool", VERSION_OUTPUT)
def test_a_tool_on_path_is_used_at_the_pinned_version_only(installed, tmp_path, tool):
    key, output = VERSION_OUTPUT[tool]
    version = VERSIONS[key]
    fake(tmp_path / "bin", tool, output.format(v=version))
    done = toolchain("--budget-minutes", "0", tool, env=installed)
    assert f"{tool}: using yours, found on PATH: {tmp_path}/bin/{tool}" in done.stderr, done.stderr
    fake(tmp_path / "bin", tool, output.format(v=f"{version}1"))
    done = toolchain("--budget-minutes", "0", tool, env=installed)
    assert f"SKIPPED (not built, see above): {tool}\n" in done.stderr, done.stderr


def test_a_pulumi_installed_after_we_built_one_wins(installed, tmp_path):
    """A user who built our pulumi earlier and then installed their own: theirs runs, ours (and
    its stand-in host) stays off PATH."""
    ours = tmp_path / "cache" / "tools" / f"pulumi-{VERSIONS['PULUMI_VERSION']}" / "bin"
    ours.mkdir(parents=True)
    fake(ours, "pulumi", f"v{VERSIONS['PULUMI_VERSION']}")
    fake(ours, "pulumi-language-python", "stand-in")
    done = toolchain("pulumi", "langhost", env=installed)
    assert f"pulumi: using yours, found on PATH: {tmp_path}/bin/pulumi" in done.stderr, done.stderr
    assert "langhost: not needed" in done.stderr
    assert str(ours) not in toolchain("--print-path", env=installed).stdout
    # Without theirs, ours is used again.
    (tmp_path / "bin" / "pulumi").unlink()
    assert str(ours) in toolchain("--print-path", env=installed).stdout
    assert f"pulumi {VERSIONS['PULUMI_VERSION']} cached" in toolchain("pulumi", env=installed).stderr


def test_the_language_hosts_cache_entry_follows_its_sources(installed, tmp_path):
    """An edited language host gets a new cache entry (rebuilt), not the old binary."""
    repo = tmp_path / "repo"
    shutil.copytree(SCRIPTS, repo / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    script = str(repo / "scripts" / "toolchain.sh")

    def entry() -> str:
        done = subprocess.run([script, "--print-dir", "langhost"], capture_output=True, text=True, env=installed,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    before = entry()
    assert before == toolchain("--print-dir", "langhost", env=installed).stdout.strip()  # same sources
    with open(repo / "scripts" / "langhost" / "main.go", "a") as f:
        f.write("\n// an edit\n")
    after = entry()
    assert after != before and after.startswith(before[:before.rindex("-") + 1])
