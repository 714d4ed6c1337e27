"""Helm's release records decoded, and the helm commands the tool runs (bluegreen/release/helm.py).

The commands run a recording `helm` put first on PATH: these tests hold the arguments and the
values file to what the tool ran before (cli.py); the chart tier runs `template` with the real
helm, the e2e tier `upgrade` and `rollback` against the local cluster."""

from __future__ import annotations

import base64
import gzip
import json
import os
import sys
import textwrap

import pytest

from bluegreen.release import helm
from bluegreen.release.helm import HelmError, decode_record, record_from_secret

RELEASE = {
    "name": "web", "namespace": "shop", "version": 7,
    "info": {"status": "deployed"},
    "chart": {"metadata": {"name": "bluegreen", "version": "1.0.0"}},
    "config": {"productionSlot": "green", "blue": {"enabled": True}},
    "manifest": "---\n# Source: bluegreen/templates/services.yaml\napiVersion: v1\nkind: Service\n",
    "hooks": [{"name": "web-test-stage", "manifest": "apiVersion: v1\nkind: Pod\n"}],
}


def secret_payload(release: dict, gzipped: bool = True) -> str:
    """`data.release` of Helm's Secret: the API's base64 of Helm's base64 of the gzipped JSON."""
    raw = json.dumps(release).encode()
    helm_encoded = base64.b64encode(gzip.compress(raw) if gzipped else raw)
    return base64.b64encode(helm_encoded).decode()


@pytest.mark.parametrize("gzipped", [True, False], ids=["gzip", "plain"])
def test_a_record_is_decoded(gzipped):
    record = decode_record(secret_payload(RELEASE, gzipped))
    assert (record.name, record.namespace, record.revision, record.status, record.chart) == (
        "web", "shop", 7, "deployed", "bluegreen-1.0.0")
    assert record.values == RELEASE["config"]
    assert record.manifest == RELEASE["manifest"]
    assert record.hooks == ("apiVersion: v1\nkind: Pod\n",)


def test_a_record_without_values_has_empty_ones():
    record = decode_record(secret_payload({**RELEASE, "config": None, "hooks": None}))
    assert (record.values, record.hooks) == ({}, ())


def test_a_record_from_its_secret():
    secret = {"metadata": {"name": "sh.helm.release.v1.web.v7"}, "data": {"release": secret_payload(RELEASE)}}
    assert record_from_secret(secret).revision == 7
    with pytest.raises(HelmError, match=r"^Secret sh.helm.release.v1.web.v7 has no data.release"):
        record_from_secret({"metadata": {"name": "sh.helm.release.v1.web.v7"}, "data": {}})


@pytest.mark.parametrize("payload, message", [
    ("not base64!", "Secret x is not a Helm release (base64, base64, gzip, JSON)"),
    (base64.b64encode(b"not base64!").decode(), "Secret x is not a Helm release (base64, base64, gzip, JSON)"),
    (base64.b64encode(base64.b64encode(b"\x1f\x8b\x08broken")).decode(), "Secret x is not a Helm release"),
    (base64.b64encode(base64.b64encode(b"{not json")).decode(), "Secret x is not a Helm release"),
    (base64.b64encode(base64.b64encode(b"[1]")).decode(), "Secret x is not a Helm release: its JSON is a list"),
])
def test_what_is_no_record_is_a_clear_error(payload, message):
    with pytest.raises(HelmError) as error:
        decode_record(payload, "Secret x")
    assert message in str(error.value)


# --- the commands ---------------------------------------------------------------------------


@pytest.fixture
def recording_helm(tmp_path, monkeypatch):
    """A `helm` first on PATH that records its arguments and the values file it was given, prints
    $FAKE_OUT, and exits with $FAKE_EXIT."""
    log = tmp_path / "calls.jsonl"
    script = tmp_path / "bin" / "helm"
    script.parent.mkdir()
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, sys
        args = sys.argv[1:]
        flag = next((a for a in ("-f", "--values") if a in args), None)
        values = json.load(open(args[args.index(flag) + 1])) if flag else None
        with open({str(log)!r}, "a") as out:
            out.write(json.dumps({{"args": args, "values": values}}) + "\\n")
        sys.stdout.write(os.environ.get("FAKE_OUT", ""))
        sys.stderr.write("helm said no\\n")
        sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
        """))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return calls


VALUES = {"productionSlot": "blue", "blue": {"enabled": True, "image": "shop/web:1"}}


def test_template_renders_without_hooks_with_the_values_as_a_json_file(recording_helm, monkeypatch):
    monkeypatch.setenv("FAKE_OUT", "---\nkind: Service\n")
    assert helm.template("/charts/bluegreen", "web", "shop", VALUES) == "---\nkind: Service\n"
    [call] = recording_helm()
    values_file = call["args"][call["args"].index("--values") + 1]
    assert call["args"] == ["template", "web", "/charts/bluegreen", "--namespace", "shop", "--values", values_file,
                            "--no-hooks"]
    assert call["values"] == VALUES
    assert not os.path.exists(values_file)  # removed afterwards
    helm.template("/charts/bluegreen", "web", "shop", VALUES, kube_version="1.34.3")
    assert recording_helm()[1]["args"][-2:] == ["--kube-version", "1.34.3"]


def test_template_failing_says_what_helm_said(recording_helm, monkeypatch):
    monkeypatch.setenv("FAKE_EXIT", "1")
    with pytest.raises(HelmError, match=r"^helm template web /charts/bluegreen failed \(exit 1\): helm said no$"):
        helm.template("/charts/bluegreen", "web", "shop", VALUES)


def test_upgrade_is_atomic_with_exactly_the_values_and_prints_to_stderr(recording_helm, monkeypatch, capfd):
    monkeypatch.setenv("FAKE_OUT", "Release \"web\" has been upgraded.\n")
    helm.upgrade("web", "/charts/bluegreen", "shop", VALUES, 300)
    [call] = recording_helm()
    values_file = call["args"][call["args"].index("-f") + 1]
    assert call["args"] == ["upgrade", "web", "/charts/bluegreen", "-n", "shop", "-f", values_file,
                            "--reset-values", "--wait", "--atomic", "--timeout", "300s"]
    assert call["values"] == VALUES
    out, err = capfd.readouterr()
    assert (out, "has been upgraded" in err) == ("", True)  # stdout carries only the tool's result
    monkeypatch.setenv("FAKE_EXIT", "1")
    with pytest.raises(HelmError, match=r"^helm upgrade web failed \(exit 1\)$"):
        helm.upgrade("web", "/charts/bluegreen", "shop", VALUES, 300)


def test_rollback_waits_for_the_revision_and_prints_to_stderr(recording_helm, monkeypatch, capfd):
    monkeypatch.setenv("FAKE_OUT", "Rollback was a success!\n")
    helm.rollback("web", 3, "shop", 120)
    assert recording_helm()[0]["args"] == ["rollback", "web", "3", "-n", "shop", "--wait", "--timeout", "120s"]
    out, err = capfd.readouterr()
    assert (out, "Rollback was a success" in err) == ("", True)
    monkeypatch.setenv("FAKE_EXIT", "2")
    with pytest.raises(HelmError, match=r"^helm rollback to v3 failed \(exit 2\)$"):
        helm.rollback("web", 3, "shop", 120)


def test_no_helm_on_path_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    for run in (lambda: helm.template("c", "web", "shop", {}), lambda: helm.upgrade("web", "c", "shop", {}, 30),
                lambda: helm.rollback("web", 1, "shop", 30)):
        with pytest.raises(HelmError, match=r"^helm is not on PATH; install Helm 3"):
            run()
