"""One release command per stack at a time.

Two guards, because a team runs releases from several machines against one state backend:

- On this machine, a mutating command holds a lock file for the stack (`command_lock`, flock), so a
  second command is refused before it reads or changes anything, and is told which command holds
  the stack.
- Across machines, Pulumi's own stack lock, an object in the state backend. Before it changes
  anything, a command reads that lock where it can (`backend_locks`: file:// and s3:// backends,
  whose layout and lock content Pulumi's DIY backend defines) and is refused while another update
  holds it. Where it cannot look (Pulumi Cloud, gs://, azblob://), Pulumi's error at `up` is turned
  into `StackLocked` the same way, and the command puts back the config it had set.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import hmac
import http.client
import json
import os
import re
import socket
import sys
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator

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
    `up` is the check)."""
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
        return _s3_locks(url, suffixes, timeout)
    return None


def _s3_locks(url: urllib.parse.SplitResult, suffixes: tuple[str, ...], timeout: float) -> list[dict] | None:
    """List and read the lock objects with the S3 API (SigV4, credentials from the environment)."""
    key_id, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        return None  # profiles, SSO, instance roles: leave it to Pulumi's own check
    query = dict(urllib.parse.parse_qsl(url.query))
    region = query.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    bucket, prefix = url.netloc, url.path.strip("/")
    endpoint = urllib.parse.urlsplit(query.get("endpoint") or f"https://s3.{region}.amazonaws.com")
    if "://" not in (query.get("endpoint") or "://"):
        endpoint = urllib.parse.urlsplit("https://" + query["endpoint"])
    locks_prefix = f"{prefix}/.pulumi/locks/" if prefix else ".pulumi/locks/"
    client = _S3(endpoint, bucket, region, key_id, secret, os.environ.get("AWS_SESSION_TOKEN"), timeout)
    found = []
    for key in client.list(locks_prefix):
        rest = "/" + key[len(locks_prefix):]
        if key.endswith(".json") and rest.rsplit("/", 1)[0] + "/" in suffixes:
            body = client.get(key)
            with contextlib.suppress(ValueError):
                found.append({"url": f"s3://{bucket}/{key}", **json.loads(body)})
    return found


class _S3:
    """GET requests to one bucket, path-style, signed with AWS Signature Version 4."""

    def __init__(self, endpoint, bucket, region, key_id, secret, token, timeout):
        self.endpoint, self.bucket, self.region = endpoint, bucket, region
        self.key_id, self.secret, self.token, self.timeout = key_id, secret, token, timeout

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        while True:
            params = {"list-type": "2", "prefix": prefix, **({"continuation-token": token} if token else {})}
            token = None
            for element in ElementTree.fromstring(self._get(f"/{self.bucket}", params)).iter():
                tag = element.tag.rsplit("}", 1)[-1]  # without the XML namespace
                if tag == "Key" and element.text:
                    keys.append(element.text)
                elif tag == "NextContinuationToken" and element.text:
                    token = element.text
            if not token:
                return keys

    def get(self, key: str) -> bytes:
        return self._get(f"/{self.bucket}/{urllib.parse.quote(key)}", {})

    def _get(self, path: str, params: dict[str, str]) -> bytes:
        now = datetime.datetime.now(datetime.UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        host = self.endpoint.netloc
        query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                         for k, v in sorted(params.items()))
        headers = {"host": host, "x-amz-content-sha256": hashlib.sha256(b"").hexdigest(), "x-amz-date": stamp}
        if self.token:
            headers["x-amz-security-token"] = self.token
        signed = ";".join(sorted(headers))
        canonical = "\n".join(["GET", urllib.parse.quote(path, safe="/-_.~%"), query,
                               "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed,
                               headers["x-amz-content-sha256"]])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = f"AWS4{self.secret}".encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.key_id}/{scope}, SignedHeaders={signed}, "
                                    f"Signature={signature}")
        connection_type = http.client.HTTPSConnection if self.endpoint.scheme == "https" else http.client.HTTPConnection
        conn = connection_type(self.endpoint.hostname, self.endpoint.port, timeout=self.timeout)
        try:
            conn.request("GET", path + (f"?{query}" if query else ""), headers=headers)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise OSError(f"S3 GET {path}: HTTP {response.status}: {body[:200]!r}")
        return body


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
def command_lock(project_dir: str, stack: str, command: str) -> Iterator[None]:
    """Hold this machine's lock on (project, stack) for the block; refuse at once when another
    command holds it. The lock file says who holds it; the kernel drops the lock when the holder
    exits, however it exits."""
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
        f.seek(0)
        f.truncate()
        json.dump({"pid": os.getpid(), "command": command,
                   "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f)
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_holder(f) -> dict:
    try:
        f.seek(0)
        return json.loads(f.read() or "{}")
    except ValueError:
        return {}


def this_command() -> str:
    """This process's command line, for the lock file."""
    return "bluegreen " + " ".join(sys.argv[1:])
