"""Where a secret value shows up, for the secret scan (tests/e2e/test_secret_scan.py).

A value is found in plain text, in base64 at any alignment inside a longer encoded text (a
Kubernetes Secret's `data`, a dockerconfigjson's `auth`), and inside layers of base64 and gzip:
every base64-looking token is decoded (and gunzipped when it is gzip) and searched again, a few
layers deep, so Helm's release records (base64 -> base64 -> gzip -> JSON) and a dockerconfigjson
inside a Secret's data (base64 -> JSON -> base64 "user:password") are searched as what they hold.

    scan = Scan({"DB_PASSWORD": "bgscan-..."})
    scan.add("the Pulumi state", "stack.json", data)   # bytes; or add_tree(place, directory)
    scan.hits("the Pulumi state")                      # [Hit(place, item, secret, form)]
    scan.summary()                                     # places, bytes, hits per place
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Long enough that a token is a deliberate encoding, not a word (the values are 20+ characters).
_TOKEN = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")
MAX_DEPTH = 4


def encoded_forms(value: bytes) -> list[tuple[str, bytes]]:
    """The base64 text of `value` that any longer base64 text containing it must contain: the
    characters that depend on `value` alone, for each of the three alignments, in the standard and
    the URL-safe alphabet."""
    forms: list[tuple[str, bytes]] = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + value).rstrip(b"=")
        start = -(-8 * offset // 6)  # the first character whose bits are all the value's
        end = (8 * (offset + len(value))) // 6  # past the last such character
        core = encoded[start:end]
        forms.append((f"base64 (offset {offset})", core))
        urlsafe = core.replace(b"+", b"-").replace(b"/", b"_")
        if urlsafe != core:
            forms.append((f"base64url (offset {offset})", urlsafe))
    return forms


def decode_token(token: bytes) -> bytes | None:
    """A base64 (standard or URL-safe) token decoded, and gunzipped when that is gzip; None when it
    is no valid base64."""
    text = token.rstrip(b"=")
    text += b"=" * (-len(text) % 4)
    try:
        if b"-" in text or b"_" in text:
            decoded = base64.urlsafe_b64decode(text)
        else:
            decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return gunzip(decoded)


def gunzip(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return data
    return data


def helm_record(secret: dict) -> bytes:
    """The JSON of a Helm release record (Secret `sh.helm.release.v1.NAME.vN`, read from the API):
    data.release is base64 (the API's) of base64 (Helm's) of gzip."""
    return gzip.decompress(base64.b64decode(base64.b64decode(secret["data"]["release"])))


@dataclass(frozen=True)
class Hit:
    place: str
    item: str  # the file or object within the place
    secret: str  # the secret's name (never its value)
    form: str  # "plain", "base64 (offset 1)", "inside base64" ...


@dataclass
class Place:
    name: str
    items: int = 0
    bytes: int = 0
    hits: list[Hit] = field(default_factory=list)


class Scan:
    """Searches every item added for every value; items are searched when added and not kept."""

    def __init__(self, values: dict[str, str]):
        too_short = [name for name, value in values.items() if len(value) < 16]
        if too_short:
            raise ValueError(f"secret values {too_short} are shorter than 16 characters; allowed: 16 or more "
                             "(a short value would match by chance)")
        self.values = {name: value.encode() for name, value in values.items()}
        self._forms = {name: [("plain", value), *encoded_forms(value)] for name, value in self.values.items()}
        self.places: dict[str, Place] = {}

    def place(self, name: str) -> Place:
        return self.places.setdefault(name, Place(name))

    def add(self, place: str, item: str, data: bytes | str) -> list[Hit]:
        if isinstance(data, str):
            data = data.encode()
        found = self.place(place)
        found.items += 1
        found.bytes += len(data)
        hits = [Hit(place, item, secret, form) for secret, form in self._find(gunzip(data), 0)]
        found.hits.extend(hits)
        return hits

    def add_json(self, place: str, item: str, value: object) -> list[Hit]:
        return self.add(place, item, json.dumps(value, sort_keys=True))

    def add_tree(self, place: str, root: Path, skip: Iterable[Path] = (), newer_than: float | None = None) -> None:
        """Every regular file under `root` (symlinks not followed), but those under `skip`, and with
        `newer_than` only files modified since then. A place with no file still counts as searched."""
        self.place(place)
        skipped = [Path(s) for s in skip]
        for path in _files(Path(root)):
            if any(path == s or s in path.parents for s in skipped):
                continue
            try:
                if newer_than is not None and path.stat().st_mtime < newer_than:
                    continue
                data = path.read_bytes()
            except OSError:  # gone meanwhile (a temp file), or a socket
                continue
            self.add(place, str(path), data)

    def _find(self, data: bytes, depth: int) -> Iterator[tuple[str, str]]:
        for secret, forms in self._forms.items():
            for form, needle in forms:
                if needle in data:
                    yield secret, form if depth == 0 else f"{form}, inside {depth} layer(s) of base64/gzip"
                    break
        if depth >= MAX_DEPTH:
            return
        seen: set[bytes] = set()
        for match in _TOKEN.finditer(data):
            token = match.group()
            if token in seen:
                continue
            seen.add(token)
            decoded = decode_token(token)
            if decoded:
                yield from self._find(decoded, depth + 1)

    def hits(self, place: str | None = None) -> list[Hit]:
        return [h for p in self.places.values() if place in (None, p.name) for h in p.hits]

    def summary(self) -> list[str]:
        """One line a place: items and bytes searched, and the hits per secret."""
        lines = []
        for p in self.places.values():
            per_secret: dict[str, int] = {}
            for hit in p.hits:
                per_secret[hit.secret] = per_secret.get(hit.secret, 0) + 1
            hits = ", ".join(f"{name} {count}" for name, count in sorted(per_secret.items())) or "none"
            lines.append(f"{p.name}: {p.items} item(s), {p.bytes} bytes; hits: {hits}")
        return lines


def _files(root: Path) -> Iterator[Path]:
    if root.is_file() and not root.is_symlink():
        yield root
        return
    for directory, _, names in os.walk(root):  # os.walk does not follow symlinked directories
        for name in names:
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                yield path
