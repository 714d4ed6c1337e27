"""Tier 3: kube-score over the rendered chart, in every mode it renders in (scenarios.CHART_MODES).

No CRITICAL finding is allowed. The chart leaves out a few checks on purpose, with kube-score's own
annotation (kube-score/ignore on the object); each is a decision listed, with its reason, in the
README's "kube-score: deliberate decisions" table, and run without the annotations, kube-score
finds nothing else (an ignored check would hide every finding of that check, not only the one
decided on).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass

import pytest

from tests.chart.render import KUBE_VERSION, Manifest, template
from tests.conftest import REPO_ROOT
from tests.scenarios import CHART_MODES, ChartMode

CRITICAL, WARNING = 1, 5  # kube-score's grades
IGNORE = "kube-score/ignore"
# What each decided-on check may still find when its annotation is off: (check, comment summary).
DECIDED = {
    "container-resources": "CPU limit is not set",
    "container-image-pull-policy": "ImagePullPolicy is not set to Always",
    "deployment-has-host-podantiaffinity": "Deployment does not have a host podAntiAffinity set",
    "pod-networkpolicy": "The pod does not have a matching NetworkPolicy",
    "service-targets-pod": "The services selector does not match any pods",
    "container-security-context-readonlyrootfilesystem": "The pod has a container with a writable root filesystem",
}


@dataclass(frozen=True)
class Finding:
    object: str  # "Deployment/web-blue"
    check: str
    grade: int
    summary: str

    def __str__(self) -> str:
        grade = {CRITICAL: "CRITICAL", WARNING: "WARNING"}.get(self.grade, self.grade)
        return f"[{grade}] {self.object}: {self.check}: {self.summary}"


def score(kube_score: str, manifest_yaml: str, *flags: str) -> list[Finding]:
    """kube-score's CRITICAL and WARNING findings (each comment of a failed check) over manifests."""
    done = subprocess.run([kube_score, "score", "--kubernetes-version", "v" + KUBE_VERSION.rsplit(".", 1)[0],
                           "--output-format", "json", *flags, "-"], input=manifest_yaml, capture_output=True,
                          text=True)
    assert done.stdout, done.stderr  # exit status 1 means "found something": the findings tell what
    findings = []
    for obj in json.loads(done.stdout):
        name = f"{obj['type_meta']['kind']}/{obj['object_meta']['name']}"
        for check in obj["checks"]:
            if check["skipped"] or check["grade"] > WARNING:
                continue
            for comment in check["comments"] or [{"summary": ""}]:
                findings.append(Finding(name, check["check"]["id"], check["grade"], comment["summary"]))
    return findings


def rendered(helm: str, mode: ChartMode) -> tuple[str, Manifest]:
    manifest = template(helm, mode.values)
    return "\n---\n".join(json.dumps(o) for o in manifest.objects), manifest


def ignored(manifest: Manifest) -> dict[str, set[str]]:
    """Per object, the checks its kube-score/ignore annotation names."""
    return {f"{o['kind']}/{o['metadata']['name']}": set(filter(None, o["metadata"].get("annotations", {})
                                                              .get(IGNORE, "").split(",")))
            for o in manifest.objects}


def documented_decisions() -> set[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### kube-score: deliberate decisions", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([a-z-]+)`", section, re.MULTILINE))


@pytest.mark.parametrize("mode", CHART_MODES, ids=lambda m: m.name)
def test_kube_score_finds_nothing_critical(helm, kube_score, mode):
    text, _ = rendered(helm, mode)
    critical = [str(f) for f in score(kube_score, text) if f.grade == CRITICAL]
    assert not critical, "\n".join(critical)


@pytest.mark.parametrize("mode", CHART_MODES, ids=lambda m: m.name)
def test_ignored_checks_hide_only_the_decided_findings(helm, kube_score, mode):
    text, manifest = rendered(helm, mode)
    decisions = ignored(manifest)
    for finding in score(kube_score, text, "--disable-ignore-checks-annotations"):
        assert finding.check in decisions[finding.object] or finding.grade == WARNING, finding
        if finding.check in decisions[finding.object]:
            assert DECIDED.get(finding.check) == finding.summary, f"the annotation also hides: {finding}"


def test_every_ignored_check_is_a_documented_decision(helm):
    used = set().union(*(set().union(*ignored(template(helm, m.values)).values()) for m in CHART_MODES))
    assert used == set(DECIDED) == documented_decisions()


def test_a_decision_is_dropped_where_it_does_not_apply(helm):
    """No annotation outlives its reason: with a CPU limit, Always and a NetworkPolicy, kube-score
    checks all of it (the anti-affinity warning stays: topology spread is the chart's answer)."""
    modes = {m.name: m for m in CHART_MODES}
    two_slots = ignored(template(helm, modes["green-staged"].values))
    assert two_slots["Deployment/web-blue"] == set(DECIDED) - {"pod-networkpolicy", "service-targets-pod",
                                                                "container-security-context-readonlyrootfilesystem"}
    assert two_slots["Service/web-stage"] == set()  # stage has pods
    assert ignored(template(helm, modes["blue-live"].values))["Service/web-stage"] == {"service-targets-pod"}
    for name, check in (("cpu-limit", "container-resources"), ("pull-always", "container-image-pull-policy")):
        for obj, checks in ignored(template(helm, modes[name].values)).items():
            assert check not in checks, (name, obj)
    off = ignored(template(helm, modes["network-policy-off"].values))
    pods = {obj: checks for obj, checks in off.items() if obj.split("/")[0] in ("Deployment", "Pod")}
    assert len(pods) == 3 and all("pod-networkpolicy" in checks for checks in pods.values())
