"""Generated stack configs, valid and invalid (tests/generated.py), through the real __main__.py
under Pulumi mocks, as tests/mocks runs it. Each ends one of two ways:

- refused before any resource is registered, with every problem's key, what is allowed and a
  `Fix:`, naming each key the generator made bad (or that breaks a rule between keys, or a guard
  of the last update), and no traceback;
- or deployed, when nothing is wrong: the Release's values and the stack's outputs send prod to the
  production slot and stage to the other, and the values the chart turns into labels and hosts are
  ones Kubernetes takes.

`pytest --hypothesis-show-statistics` shows how the cases ended.
"""

from __future__ import annotations

import collections
import re

import pulumi
import pytest
from hypothesis import event, given

from tests import kube_rules
from tests.generated import ConfigCase, config_cases, generated
from tests.mocks.harness import RELEASE_TYPE, RecordingMocks, run_program

HEADER = re.compile(r"(\d+) problem\(s\) in the stack config; nothing was changed\.")
OUTCOMES: collections.Counter = collections.Counter()


@pytest.fixture(autouse=True)
def at_project_root(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)  # Pulumi runs programs from the project root


def run(case: ConfigCase) -> str:
    mocks = RecordingMocks(last_outputs=case.before)
    try:
        done = run_program(case.raw, mocks=mocks, secret_keys=case.secret_keys)
    except pulumi.RunError as error:
        return refused(case, str(error), mocks)
    return deployed(case, done)


def refused(case: ConfigCase, text: str, mocks: RecordingMocks) -> str:
    assert case.must_name, f"refused a config that must deploy ({case}):\n{text}"
    assert mocks.registered == [], "a resource was registered before the refusal"
    assert "Traceback" not in text
    lines = text.split("\n")
    header = HEADER.fullmatch(lines[0])
    assert header, text
    count = int(header[1])
    assert text.count("\n  Fix: ") == count and text.count("; allowed: ") >= count, text
    for key in case.must_name:
        assert re.search(rf"^- {re.escape(key)}[.\[ ]", text, re.MULTILINE), f"{key} is not named:\n{text}"
    event(f"refused: {len(case.must_name)} key(s) named" if len(case.must_name) < 3 else "refused: 3+ keys named")
    return "refused"


def deployed(case: ConfigCase, done) -> str:
    assert not case.must_name, f"deployed a config that must be refused for {sorted(case.must_name)}: {case}"
    meaning, prod = case.meaning, case.production_slot
    stage = "green" if prod == "blue" else "blue"
    values = done.release.inputs["values"]
    assert values["productionSlot"] == prod
    assert done.outputs["prodSelector"]["slot"] == prod and done.outputs["stageSelector"]["slot"] == stage
    assert done.outputs["images"] == {slot: meaning[slot]["image"] if meaning[slot]["enabled"] else None
                                      for slot in ("blue", "green")}
    for slot in ("blue", "green"):
        assert values[slot]["enabled"] == meaning[slot]["enabled"]
        assert kube_rules.label_value(values[slot]["version"]), f"{slot}.version {values[slot]['version']!r}"
    for host in (values["ingress"]["prodHost"], values["ingress"]["stageHost"]):
        assert kube_rules.dns_subdomain(host), host
    namespaces = done.of_type("kubernetes:core/v1:Namespace")
    assert len(namespaces) == (1 if meaning["createNamespace"] else 0)
    assert len(done.of_type(RELEASE_TYPE)) == 1
    event(f"deployed: routing {meaning['routing']}, stage {meaning['stageAccess']}")
    return "deployed"


@given(config_cases())
@generated(2000)
def test_a_generated_config_is_refused_with_its_keys_named_or_deploys_the_right_slots(case):
    OUTCOMES[run(case)] += 1


def test_the_generated_configs_end_both_ways():
    """The generator is not stuck on one side (runs after the property above)."""
    if not OUTCOMES:
        pytest.skip("the property did not run in this session")
    print(f"generated configs: {sum(OUTCOMES.values())} tried, {dict(OUTCOMES)}")  # shown with -s
    assert OUTCOMES["refused"] > 100 and OUTCOMES["deployed"] > 100, OUTCOMES
