"""One release command per stack at a time.

Two guards, because a team runs releases from several machines against one state backend:

- On this machine, a mutating command holds a lock file for the stack (`command_lock`, flock), so a
  second command is refused before it reads or changes anything, and is told which command holds
  the stack.
- Across machines, Pulumi's own stack lock, an object in the state backend. Before it changes
  anything, a command reads that lock where it can (`backend_locks`: file:// and s3:// backends,
  whose layout and lock content Pulumi's DIY backend defines; S3 through boto3, with its credential
  chain and the parameters of Pulumi's s3:// URLs) and is refused while another update holds it.
  Where it cannot look (Pulumi Cloud, gs://, azblob://, an S3 backend that does not answer), Pulumi's
  error at `up` is turned into `StackLocked` the same way; the command had changed nothing (its
  config edits live in a copy of the config file until its update succeeds).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# Pulumi's words for "another update holds this stack": the DIY backends' (file, s3, gs, azblob)
# and Pulumi Cloud's.
_PULUMI_LOCKED = ("the stack is currently locked", "Another update is currently in progress")
# DIY backends list each lock as "  URL: created by USER@HOST (pid N) at TIME".
_LOCK_LINE = re.compile(r"^\s*(?P<url>\S+): created by (?P<user>[^@\s]+)@(?P<host>\S+) \(pid (?P<pid>\d+)\) "
                        r"at (?P<at>\S+)", re.MULTILINE)


class StackLocked(Exception):
    """Another update or release command holds the stack; nothing was changed by this one."""


def pulumi_lock_error(message: str, stack: str) -> StackLocked | None:
    """A StackLocked for Pulumi's error text when it says the stack is locked, else None."""
    if not any(words in message for words in _PULUMI_LOCKED):
        return None
    locks = [{"url": m["url"], "username": m["user"], "hostname": m["host"], "pid": m["pid"], "timestamp": m["at"]}
             for m in _LOCK_LINE.finditer(message)]
    if not locks:  # Pulumi Cloud names no lock file
        return StackLocked(f"stack {stack} is locked by another update (see the stack's activity in Pulumi "
                           "Cloud). Wait for it to finish, then run this command again.")
    return held_by(locks, stack)


def backend_locks(backend_url: str, project: str, stack: str, timeout: float = 10.0) -> list[dict] | None:
    """The Pulumi locks on `stack` in a DIY state backend, each {"url", "username", "hostname",
    "pid", "timestamp"}; None when this backend cannot be read here (then Pulumi's own error at
    `up` is the check). OSError when an s3:// backend does not answer or refuses (unreachable,
    no credentials, access denied), ValueError when its URL has a parameter Pulumi would not take."""
    url = urllib.parse.urlsplit(backend_url)
    suffixes = (f"/organization/{project}/{stack}/", f"/{stack}/")  # project-scoped, then legacy layout
    if url.scheme == "file":
        # file:///abs/path, or file://~/path (Pulumi expands the ~)
        root = os.path.join(os.path.expanduser(urllib.parse.unquote(url.netloc + url.path)), ".pulumi", "locks")
        found = []
        for directory, _, files in os.walk(root):
            for name in files:
                path = os.path.join(directory, name)
                key = "/" + os.path.relpath(path, root).replace(os.sep, "/")
                if name.endswith(".json") and key.rsplit("/", 1)[0] + "/" in suffixes:
                    with contextlib.suppress(OSError, ValueError), open(path) as f:
                        found.append({"url": path, **json.load(f)})
        return found
    if url.scheme == "s3":
        return _s3_locks(backend_url, suffixes, timeout)
    return None


# Pulumi's s3:// backend URLs: s3://BUCKET[/PREFIX][?PARAMETERS]. Pulumi hands them to gocloud.dev's
# s3blob (AWS SDK for Go v2), after renaming the SDK v1 ones (disableSSL; an endpoint without a
# scheme). Every parameter it takes is accepted here; those that matter only when writing (server-side
# encryption, upload checksums, the client's rate limit, the SDK choice) are not used for reading.
_S3_FLAGS = ("use_path_style", "s3ForcePathStyle", "hostname_immutable", "disable_https", "disableSSL",
             "dualstack", "fips", "accelerate", "anonymous")
_S3_CHECKSUMS = ("request_checksum_calculation", "response_checksum_validation")
_S3_WRITE_ONLY = ("awssdk", "ssetype", "kmskeyid", "rate_limiter_capacity")
S3_URL_PARAMETERS = ("region", "endpoint", "profile", "role", *_S3_FLAGS, *_S3_CHECKSUMS, *_S3_WRITE_ONLY)
# Go's strconv.ParseBool, which reads those flags.
_GO_BOOLEANS = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
                **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False)}


@dataclass(frozen=True)
class S3Backend:
    """How to read an s3:// backend: its bucket and prefix, and boto3's settings for its URL."""

    bucket: str
    prefix: str
    profile: str | None = None  # None: boto3's chain (environment, AWS_PROFILE, SSO, instance role)
    region: str | None = None  # None: boto3's (AWS_REGION, the profile's)
    role: str | None = None  # an IAM role to assume first (STS)
    client: dict[str, Any] = field(default_factory=dict)  # boto3 client(): endpoint_url, use_ssl
    config: dict[str, Any] = field(default_factory=dict)  # botocore Config()
    anonymous: bool = False

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}" + (f" at {self.client['endpoint_url']}" if "endpoint_url" in self.client else "")


def s3_backend(backend_url: str) -> S3Backend:
    """The settings of an s3:// backend URL; ValueError naming the parameter, its value and what is
    allowed when Pulumi would not take it."""
    url = urllib.parse.urlsplit(backend_url)
    query = {key: values[0] for key, values in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
    for key, value in query.items():
        if key not in S3_URL_PARAMETERS:
            raise ValueError(f"the backend URL's parameter {key}={value!r} is unknown; allowed: "
                             + ", ".join(S3_URL_PARAMETERS))
    flags = {}
    for key in _S3_FLAGS:
        if key in query:
            if query[key] not in _GO_BOOLEANS:
                raise ValueError(f"the backend URL's parameter {key} is {query[key]!r}; allowed: true, false")
            flags[key] = _GO_BOOLEANS[query[key]]
    client: dict[str, Any] = {}
    config: dict[str, Any] = {}
    plain_http = flags.get("disable_https", flags.get("disableSSL", False))
    if query.get("endpoint"):
        endpoint = query["endpoint"]
        client["endpoint_url"] = endpoint if "://" in endpoint else ("http://" if plain_http else "https://") + endpoint
    if plain_http:
        client["use_ssl"] = False
    s3: dict[str, Any] = {}
    if flags.get("use_path_style", flags.get("s3ForcePathStyle")) or flags.get("hostname_immutable"):
        s3["addressing_style"] = "path"
    if flags.get("accelerate"):
        s3["use_accelerate_endpoint"] = True
    if s3:
        config["s3"] = s3
    if flags.get("dualstack"):
        config["use_dualstack_endpoint"] = True
    if flags.get("fips"):
        config["use_fips_endpoint"] = True
    for key in _S3_CHECKSUMS:
        if key in query:
            if query[key].lower() not in ("when_supported", "when_required"):
                raise ValueError(f"the backend URL's parameter {key} is {query[key]!r}; allowed: when_supported, "
                                 "when_required")
            config[key] = query[key].lower()
    role = query.get("role") or None
    if role is not None and not role.startswith("arn:"):
        raise ValueError(f"the backend URL's parameter role is {role!r}; allowed: an IAM role ARN (arn:...)")
    return S3Backend(url.netloc, url.path.strip("/"), query.get("profile") or None, query.get("region") or None, role,
                     client, config, flags.get("anonymous", False))


def _s3_locks(backend_url: str, suffixes: tuple[str, ...], timeout: float) -> list[dict]:
    """List and read the lock objects with boto3, which is imported here only: a file:// backend
    never loads it."""
    backend = s3_backend(backend_url)
    try:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as error:
        raise OSError(f"{error.name} is not installed (pip install boto3)") from None
    config = Config(connect_timeout=timeout, read_timeout=timeout,
                    retries={"mode": "standard", "total_max_attempts": 2}, **backend.config,
                    **({"signature_version": UNSIGNED} if backend.anonymous else {}))
    locks_prefix = f"{backend.prefix}/.pulumi/locks/" if backend.prefix else ".pulumi/locks/"
    found = []
    try:
        session = boto3.session.Session(profile_name=backend.profile, region_name=backend.region)
        if backend.role:
            assumed = session.client("sts", config=config).assume_role(
                RoleArn=backend.role, RoleSessionName="bluegreen")["Credentials"]
            session = boto3.session.Session(aws_access_key_id=assumed["AccessKeyId"],
                                            aws_secret_access_key=assumed["SecretAccessKey"],
                                            aws_session_token=assumed["SessionToken"], region_name=session.region_name)
        s3 = session.client("s3", config=config, **backend.client)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=backend.bucket, Prefix=locks_prefix):
            for key in (item["Key"] for item in page.get("Contents", [])):
                rest = "/" + key[len(locks_prefix):]
                if key.endswith(".json") and rest.rsplit("/", 1)[0] + "/" in suffixes:
                    body = s3.get_object(Bucket=backend.bucket, Key=key)["Body"].read()
                    with contextlib.suppress(ValueError):
                        found.append({"url": f"s3://{backend.bucket}/{key}", **json.loads(body)})
    except (BotoCoreError, ClientError) as error:  # unreachable, no credentials, access denied, ...
        raise OSError(f"{backend.where}: {error}") from None
    return found


def held_by(locks: list[dict], stack: str) -> StackLocked:
    holders = [f"{lock['url']}, taken by {lock.get('username')}@{lock.get('hostname')} at {lock.get('timestamp')}: "
               + describe(int(lock.get("pid") or 0), lock.get("hostname")) for lock in locks]
    return StackLocked(f"stack {stack} is locked by another update:\n" + "\n".join(f"- {h}" for h in holders)
                       + "\nWait for it to finish, then run this command again. If its process is gone "
                       "(killed, machine lost), `bluegreen recover` clears the lock.")


def alive_here(lock: dict) -> bool:
    """The lock's holder is a process that still runs on this machine."""
    here = lock.get("hostname") in (socket.gethostname(), socket.getfqdn())
    return here and _cmdline(int(lock.get("pid") or 0)) is not None


def describe(pid: int, host: str | None = None) -> str:
    """What process `pid` is: the bluegreen command it serves, else its command line."""
    if host and host not in (socket.gethostname(), socket.getfqdn()):
        return f"pid {pid} on {host} (another machine)"
    chain: list[str] = []
    current = pid
    while current > 1 and len(chain) < 10:
        command = _cmdline(current)
        if command is None:
            break
        chain.append(command)
        current = _parent(current)
    if not chain:
        return f"pid {pid}, no longer running (a stale lock)"
    release = next((c for c in chain if " -m bluegreen " in f" {c} " or c.split(" ")[0].endswith("/bluegreen")),
                   None)
    return f"`{release or chain[0]}` (pid {pid})"


def _cmdline(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part) or None


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


@contextlib.contextmanager
def command_lock(project_dir: str, stack: str, command: str) -> Iterator[float | None]:
    """Hold this machine's lock on (project, stack) for the block; refuse at once when another
    command holds it. The lock file says who holds it; the kernel drops the lock when the holder
    exits, however it exits. The block is given when the previous holder let go (time.time()),
    None when that is not known (no holder before, or one that was killed)."""
    directory = os.path.join(tempfile.gettempdir(), f"bluegreen-locks-{os.getuid()}")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    key = hashlib.sha256(f"{os.path.realpath(project_dir)}\0{stack}".encode()).hexdigest()[:16]
    path = os.path.join(directory, f"{stack}-{key}.lock")
    with open(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(f)
            raise StackLocked(
                f"stack {stack} is busy: {holder.get('command', 'another bluegreen command')} "
                f"(pid {holder.get('pid', '?')}, started {holder.get('started', '?')}) is running on it "
                f"on this machine (lock {path}). Wait for it to finish, then run this command again."
            ) from None
        released = _read_holder(f).get("released")
        _write(f, {"pid": os.getpid(), "command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        try:
            yield released if isinstance(released, (int, float)) else None
        finally:
            _write(f, {"released": time.time()})
            fcntl.flock(f, fcntl.LOCK_UN)


def _write(f, record: dict) -> None:
    f.seek(0)
    f.truncate()
    json.dump(record, f)
    f.flush()


def _read_holder(f) -> dict:
    try:
        f.seek(0)
        return json.loads(f.read() or "{}")
    except ValueError:
        return {}


def this_command() -> str:
    """This process's command line, for the lock file."""
    return "bluegreen " + " ".join(sys.argv[1:])
