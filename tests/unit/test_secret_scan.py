"""The secret scan's search (tests/e2e/secret_scan.py): it must find a value in every form a
Kubernetes Secret, Helm or a dockerconfigjson gives it, and nothing else."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from tests.e2e.secret_scan import Scan, encoded_forms, helm_record

VALUE = "bgscan-db-0123456789abcdef"
OTHER = "bgscan-other-fedcba9876543210"


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def found(data: bytes | str) -> list[str]:
    scan = Scan({"DB_PASSWORD": VALUE, "OTHER": OTHER})
    return sorted({hit.secret for hit in scan.add("place", "item", data)})


@pytest.mark.parametrize("prefix", ["", "x", "xy", "xyz", "{\"a\": \"", "pad" * 7])
def test_base64_of_a_longer_text_holding_the_value_is_found_at_any_alignment(prefix):
    assert found(f"data: {b64(prefix + VALUE + ' and after')}\n") == ["DB_PASSWORD"]


def test_plain_text_and_url_safe_base64_are_found():
    assert found(f"... {VALUE} ...") == ["DB_PASSWORD"]
    url_safe = base64.urlsafe_b64encode(b"\xfb\xff" + VALUE.encode()).decode()
    assert found(url_safe) == ["DB_PASSWORD"]


def test_a_dockerconfigjson_in_a_secret_is_searched_through_both_encodings():
    auth = b64(f"ci:{VALUE}")  # the password only inside base64("user:password")
    config = json.dumps({"auths": {"registry.example.com": {"username": "ci", "auth": auth}}})
    secret = {"data": {".dockerconfigjson": b64(config)}}
    assert VALUE not in json.dumps(secret) and found(json.dumps(secret)) == ["DB_PASSWORD"]


def test_a_helm_release_record_is_decoded_and_searched():
    release = {"name": "web", "config": {"stageAuth": {"password": VALUE}}}
    stored = b64(b64(gzip.compress(json.dumps(release).encode())))  # Helm's base64, then the API's
    secret = {"metadata": {"name": "sh.helm.release.v1.web.v3"}, "data": {"release": stored}}
    assert json.loads(helm_record(secret)) == release
    assert found(json.dumps(secret)) == ["DB_PASSWORD"]  # also without decoding it first
    assert found(gzip.compress(json.dumps(release).encode())) == ["DB_PASSWORD"]  # a .gz file


def test_no_hit_without_the_value():
    text = json.dumps({"data": {"x": b64("bgscan-db-0123456789abcdeX")}, "plain": VALUE[:-1]})
    assert found(text) == []
    assert found(b64(gzip.compress(b"nothing here " * 50))) == []


def test_encoded_forms_are_what_base64_of_the_value_contains():
    for offset in range(3):
        encoded = base64.b64encode(b"q" * offset + VALUE.encode() + b"tail")
        assert any(form in encoded for _, form in encoded_forms(VALUE.encode())), offset


def test_summary_counts_places_bytes_and_hits_per_secret(tmp_path):
    scan = Scan({"DB_PASSWORD": VALUE})
    (tmp_path / "a.txt").write_text(f"{VALUE}\n")
    (tmp_path / "b.txt").write_text("clean\n")
    (tmp_path / "link").symlink_to(tmp_path / "a.txt")  # symlinks are not followed
    scan.add_tree("files", tmp_path)
    scan.add("empty", "x", "")
    assert scan.summary() == [f"files: 2 item(s), {len(VALUE) + 1 + 6} bytes; hits: DB_PASSWORD 1",
                              "empty: 1 item(s), 0 bytes; hits: none"]
    assert [(h.item.rsplit("/", 1)[-1], h.form) for h in scan.hits("files")] == [("a.txt", "plain")]


def test_a_short_value_is_refused():
    with pytest.raises(ValueError, match="shorter than 16 characters"):
        Scan({"PIN": "1234"})
