"""Who holds a stack: Pulumi's lock error read back, the locks in a file:// or s3:// state backend, and the
lock of a command on this machine."""

from __future__ import annotations

import hmac
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import xml.sax.saxutils
from types import SimpleNamespace

import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pulumi import automation as auto

from bluegreen.release import locks
from bluegreen.release.stacks import StackSession


def lock_error(host: str, pid: int) -> str:
    return ("error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or "
            "delete the lock file with `pulumi cancel`.\n"
            f"  file:///state/.pulumi/locks/organization/shop/dev/ab12.json: created by alice@{host} (pid {pid}) "
            "at 2026-11-27T10:00:00Z")


def test_a_lock_held_by_a_release_command_on_this_machine_names_that_command():
    # A bluegreen command whose `pulumi up` holds the lock: the child is what Pulumi records.
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; "
                               "subprocess.run(['sleep', '30'])", "-m", "bluegreen", "deploy", "shop/web:2"])
    try:
        for _ in range(100):
            children = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()
            if children:
                break
            subprocess.run(["sleep", "0.05"])
        error = locks.pulumi_lock_error(lock_error(socket.gethostname(), int(children[0])), "dev")
    finally:
        parent.kill()
        parent.wait()
    assert error is not None
    assert "-m bluegreen deploy shop/web:2" in str(error) and f"(pid {children[0]})" in str(error)


def test_a_lock_whose_process_is_gone_is_called_stale():
    dead = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 100000
    error = locks.pulumi_lock_error(lock_error(socket.gethostname(), dead), "dev")
    assert f"pid {dead}, no longer running (a stale lock)" in str(error)
    assert "`bluegreen recover` clears the lock" in str(error)


def test_other_errors_are_not_locks():
    assert locks.pulumi_lock_error("error: update failed: context deadline exceeded", "dev") is None


def test_the_stack_session_turns_pulumis_lock_error_into_stack_locked():
    session = StackSession.__new__(StackSession)
    session.name = "dev"

    def locked_up(**_):
        raise auto.CommandError(auto.CommandResult(stdout="", stderr=lock_error("elsewhere", 7), code=255))

    with pytest.raises(locks.StackLocked, match="pid 7 on elsewhere"):
        session._run("up", locked_up)



def test_the_lock_in_a_file_backend_is_read_where_pulumi_writes_it(tmp_path):
    lock_dir = tmp_path / "state" / ".pulumi" / "locks" / "organization" / "bluegreen" / "dev"
    lock_dir.mkdir(parents=True)
    (lock_dir / "9f1c.json").write_text('{"pid": 4242, "username": "ci", "hostname": "build-7", '
                                        '"timestamp": "2026-11-27T10:00:00Z"}')
    (tmp_path / "state" / ".pulumi" / "locks" / "organization" / "bluegreen" / "prod").mkdir()
    found = locks.backend_locks(f"file://{tmp_path}/state", "bluegreen", "dev")
    assert [(lock["pid"], lock["hostname"]) for lock in found] == [(4242, "build-7")]
    assert locks.backend_locks(f"file://{tmp_path}/state", "bluegreen", "prod") == []
    assert locks.backend_locks("https://api.pulumi.com", "bluegreen", "dev") is None  # not readable here
    assert "pid 4242 on build-7 (another machine)" in str(locks.held_by(found, "dev"))


# --- an s3:// backend, read with boto3 from a fake S3 on 127.0.0.1 --------------------------------

LOCK = {"pid": 4242, "username": "ci", "hostname": "build-7", "timestamp": "2026-11-27T10:00:00Z"}
KEY_ID, SECRET = "AKIDBLUEGREENTEST", "bluegreen-test-secret"


class FakeS3(http.server.ThreadingHTTPServer):
    """ListObjectsV2 (path-style, `page` keys a page), GetObject and STS AssumeRole, on 127.0.0.1.
    A request must carry a valid AWS Signature V4 by one of `keys` ({key id: (secret, session token)}),
    checked with botocore's own signer; otherwise 403, as S3 answers."""

    def __init__(self, objects: dict[str, bytes], keys: dict[str, tuple[str, str | None]], page: int = 2):
        super().__init__(("127.0.0.1", 0), _FakeS3Handler)
        self.objects, self.keys, self.page = objects, keys, page
        self.requests: list[tuple[str, str, str]] = []  # (key id, region signed for, path)
        self.assumed: list[str] = []  # role ARNs

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeS3:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _FakeS3Handler(http.server.BaseHTTPRequestHandler):
    server: FakeS3
    AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request, "
                      r"SignedHeaders=([^,]+), Signature=(\w+)")

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        signer = self._signer()
        if signer is None:
            return self._reply(403, "<Error><Code>SignatureDoesNotMatch</Code></Error>")
        url = urllib.parse.urlsplit(self.path)
        bucket, _, key = urllib.parse.unquote(url.path).lstrip("/").partition("/")
        self.server.requests.append((*signer, self.path))
        if bucket != "pulumi-state":
            return self._reply(404, "<Error><Code>NoSuchBucket</Code></Error>")
        if key:
            if key not in self.server.objects:
                return self._reply(404, "<Error><Code>NoSuchKey</Code></Error>")
            return self._reply(200, self.server.objects[key].decode())
        query = dict(urllib.parse.parse_qsl(url.query))
        keys = sorted(k for k in self.server.objects if k.startswith(query.get("prefix", "")))
        start = int(query.get("continuation-token", "0"))
        page, more = keys[start:start + self.server.page], start + self.server.page < len(keys)
        contents = "".join(f"<Contents><Key>{xml.sax.saxutils.escape(k)}</Key><Size>1</Size></Contents>" for k in page)
        token = f"<NextContinuationToken>{start + self.server.page}</NextContinuationToken>" if more else ""
        self._reply(200, f'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>{bucket}</Name>'
                         f"<KeyCount>{len(page)}</KeyCount><IsTruncated>{str(more).lower()}</IsTruncated>"
                         f"{contents}{token}</ListBucketResult>")

    def do_POST(self) -> None:  # STS AssumeRole: credentials for the role, signed for by a known key
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        form = dict(urllib.parse.parse_qsl(body.decode()))
        if self._signer(body) is None or form.get("Action") != "AssumeRole":
            return self._reply(403, "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>")
        self.server.assumed.append(form["RoleArn"])
        self.server.keys["ASIAROLE"] = ("role-secret", "role-token")
        self._reply(200, '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
                         "<Credentials><AccessKeyId>ASIAROLE</AccessKeyId><SecretAccessKey>role-secret</SecretAccessKey>"
                         "<SessionToken>role-token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>"
                         f"</Credentials><AssumedRoleUser><Arn>{form['RoleArn']}</Arn><AssumedRoleId>x</AssumedRoleId>"
                         "</AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>")

    def _signer(self, body: bytes = b"") -> tuple[str, str] | None:
        """The key id that signed this request and the region it signed for, when its signature is right."""
        match = self.AUTH.fullmatch(self.headers.get("Authorization", ""))
        if not match or match[1] not in self.server.keys:
            return None
        key_id, region, service, signed, signature = match.groups()
        secret, token = self.server.keys[key_id]
        if self.headers.get("X-Amz-Security-Token") != token:
            return None
        request = AWSRequest(method=self.command, url=f"http://{self.headers['Host']}{self.path}", data=body,
                             headers={name: self.headers[name] for name in signed.split(";")})
        request.context["timestamp"] = self.headers["X-Amz-Date"]
        signer = (S3SigV4Auth if service == "s3" else SigV4Auth)(Credentials(key_id, secret, token), service, region)
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        return (key_id, region) if hmac.compare_digest(expected, signature) else None

    def _reply(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """No AWS settings of this machine's: no credentials, no profile files, no instance metadata
    (169.254.169.254 is never asked), so that only what a test sets counts."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def lock_objects() -> dict[str, bytes]:
    """Pulumi's bookkeeping under prefix `team/`: locks on dev (two) and prod, and other files."""
    locks = "team/.pulumi/locks/organization/bluegreen"
    return {f"{locks}/dev/9f1c.json": json.dumps(LOCK).encode(),
            f"{locks}/dev/a07b.json": json.dumps({**LOCK, "pid": 4343}).encode(),
            f"{locks}/prod/77aa.json": json.dumps({**LOCK, "pid": 1}).encode(),
            f"{locks}/dev/notes.txt": b"not a lock",
            "team/.pulumi/stacks/bluegreen/dev.json": b"{}"}


def backend(s3: FakeS3, **params: str) -> str:
    query = urllib.parse.urlencode({"endpoint": s3.endpoint, "use_path_style": "true", **params})
    return f"s3://pulumi-state/team?{query}"


def test_the_lock_in_an_s3_backend_is_read_with_credentials_from_the_environment(aws_env):
    aws_env.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    with FakeS3(lock_objects(), {KEY_ID: (SECRET, None)}, page=1) as s3:
        found = locks.backend_locks(backend(s3, region="eu-west-1"), "bluegreen", "dev")
        assert locks.backend_locks(backend(s3, region="eu-west-1"), "bluegreen", "staging") == []
    assert sorted(lock["pid"] for lock in found) == [4242, 4343]  # from two pages of the listing
    assert found[0]["url"] == "s3://pulumi-state/team/.pulumi/locks/organization/bluegreen/dev/9f1c.json"
    assert "pid 4242 on build-7 (another machine)" in str(locks.held_by(found, "dev"))
    assert {(key_id, region) for key_id, region, _ in s3.requests} == {(KEY_ID, "eu-west-1")}
    # 4 objects under the locks prefix, 1 a page: 4 pages a listing; 2 locks read.
    assert sum("list-type=2" in path for _, _, path in s3.requests) == 8
    assert sum(path.endswith(".json") for _, _, path in s3.requests) == 2


@pytest.mark.parametrize("how", ["AWS_PROFILE", "profile="])
def test_credentials_come_from_a_profile(aws_env, tmp_path, how):
    (tmp_path / "credentials").write_text(f"[team]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"
                                          "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = x\n")
    (tmp_path / "config").write_text("[profile team]\nregion = eu-central-1\n")
    aws_env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    aws_env.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    with FakeS3(lock_objects(), {KEY_ID: (SECRET, None)}) as s3:
        if how == "AWS_PROFILE":
            aws_env.setenv("AWS_PROFILE", "team")
            url = backend(s3)
        else:
            url = backend(s3, profile="team")
        found = locks.backend_locks(url, "bluegreen", "dev")
    assert sorted(lock["pid"] for lock in found) == [4242, 4343]
    assert {(key_id, region) for key_id, region, _ in s3.requests} == {(KEY_ID, "eu-central-1")}  # the profile's


def test_a_wrong_secret_is_refused_by_s3_and_said_so(aws_env):
    aws_env.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with FakeS3(lock_objects(), {KEY_ID: (SECRET, None)}) as s3, pytest.raises(OSError) as error:
        locks.backend_locks(backend(s3), "bluegreen", "dev")
    assert str(error.value).startswith(f"s3://pulumi-state at {s3.endpoint}: ")
    assert "SignatureDoesNotMatch" in str(error.value) and "ListObjectsV2" in str(error.value)


def test_a_role_in_the_url_is_assumed_first(aws_env):
    aws_env.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    role = "arn:aws:iam::123456789012:role/pulumi-state-reader"
    with FakeS3(lock_objects(), {KEY_ID: (SECRET, None)}) as s3:
        aws_env.setenv("AWS_ENDPOINT_URL_STS", s3.endpoint)  # STS is the fake too: 127.0.0.1 only
        found = locks.backend_locks(backend(s3, role=role, region="eu-west-1"), "bluegreen", "dev")
    assert sorted(lock["pid"] for lock in found) == [4242, 4343]
    assert s3.assumed == [role]
    assert {key_id for key_id, _, _ in s3.requests} == {"ASIAROLE"}  # S3 was read as the role


def test_an_unreachable_endpoint_is_a_clear_error_and_the_session_says_pulumi_checks(aws_env, capsys):
    aws_env.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"s3://pulumi-state?endpoint=http://127.0.0.1:{port}&use_path_style=true&region=us-east-1"
    with pytest.raises(OSError, match=f'^s3://pulumi-state at http://127.0.0.1:{port}: Could not connect to the '
                                      f'endpoint URL: "http://127.0.0.1:{port}/pulumi-state'):
        locks.backend_locks(url, "bluegreen", "dev", timeout=2)
    # What a release command makes of it: a line, and Pulumi's own lock check at `up` instead.
    session = StackSession.__new__(StackSession)
    session.name = "dev"
    project = SimpleNamespace(name="bluegreen")
    session.stack = SimpleNamespace(workspace=SimpleNamespace(project_settings=lambda: project))
    aws_env.setenv("PULUMI_BACKEND_URL", url)
    assert session.locks() is None
    said = capsys.readouterr().err
    assert said.startswith(f"==> could not read the stack's lock in s3://pulumi-state (s3://pulumi-state at "
                           f"http://127.0.0.1:{port}: Could not connect to the endpoint URL: "), said
    assert said.rstrip().endswith("); Pulumi will check it") and "Traceback" not in said


def test_no_credentials_at_all_is_a_clear_error(aws_env):
    with FakeS3(lock_objects(), {KEY_ID: (SECRET, None)}) as s3, pytest.raises(OSError) as error:
        locks.backend_locks(backend(s3), "bluegreen", "dev")
    assert str(error.value) == f"s3://pulumi-state at {s3.endpoint}: Unable to locate credentials"
    assert s3.requests == []


@pytest.mark.parametrize(("query", "message"), [
    ("use_path_style=yes", "the backend URL's parameter use_path_style is 'yes'; allowed: true, false"),
    ("s3ForcePathStyle=1&colour=blue", "the backend URL's parameter colour='blue' is unknown; allowed: region, "),
    ("role=pulumi-reader", "the backend URL's parameter role is 'pulumi-reader'; allowed: an IAM role ARN (arn:...)"),
    ("request_checksum_calculation=never", "the backend URL's parameter request_checksum_calculation is 'never'; "
                                           "allowed: when_supported, when_required"),
])
def test_a_backend_url_pulumi_would_not_take_is_refused_before_any_request(aws_env, query, message):
    with pytest.raises(ValueError) as error:
        locks.backend_locks(f"s3://pulumi-state?{query}", "bluegreen", "dev")
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(("query", "client", "config"), [
    ("", {}, {}),
    # The e2e tier's versitygw URL, and the same with the SDK v1 names Pulumi still takes.
    ("endpoint=http://127.0.0.1:9000&use_path_style=true&region=us-east-1",
     {"endpoint_url": "http://127.0.0.1:9000"}, {"s3": {"addressing_style": "path"}}),
    ("endpoint=minio:9000&disableSSL=true&s3ForcePathStyle=true",
     {"endpoint_url": "http://minio:9000", "use_ssl": False}, {"s3": {"addressing_style": "path"}}),
    ("endpoint=minio:9000", {"endpoint_url": "https://minio:9000"}, {}),
    ("endpoint=https://s3.example.com&hostname_immutable=true", {"endpoint_url": "https://s3.example.com"},
     {"s3": {"addressing_style": "path"}}),
    ("use_path_style=false&dualstack=true&fips=1&accelerate=T",
     {}, {"use_dualstack_endpoint": True, "use_fips_endpoint": True, "s3": {"use_accelerate_endpoint": True}}),
    ("response_checksum_validation=WHEN_REQUIRED&awssdk=v2&ssetype=aws:kms&kmskeyid=k&rate_limiter_capacity=5",
     {}, {"response_checksum_validation": "when_required"}),
])
def test_the_parameters_of_pulumis_s3_urls_become_boto3_settings(query, client, config):
    settings = locks.s3_backend(f"s3://pulumi-state/team/a?{query}")
    assert (settings.bucket, settings.prefix) == ("pulumi-state", "team/a")
    assert (settings.client, settings.config) == (client, config)


def test_profile_role_and_anonymous_from_the_url():
    settings = locks.s3_backend("s3://b?profile=team&region=eu-west-1&role=arn:aws:iam::1:role/r&anonymous=true")
    assert (settings.profile, settings.region, settings.role, settings.anonymous) == (
        "team", "eu-west-1", "arn:aws:iam::1:role/r", True)
    # Without them, boto3's own chain: AWS_PROFILE, AWS_REGION, the profile's region, ...
    assert (locks.s3_backend("s3://b").profile, locks.s3_backend("s3://b").region) == (None, None)


def test_a_file_backend_never_imports_boto3(tmp_path):
    # The release tool as deploy runs it, reading a file:// backend's locks; then an s3:// one.
    code = ("import sys; import bluegreen.release.cli; from bluegreen.release import locks\n"
            f"locks.backend_locks('file://{tmp_path}', 'bluegreen', 'dev')\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore'}))\n"
            "try:\n    locks.backend_locks('s3://b?endpoint=http://127.0.0.1:1&region=x', 'bluegreen', 'dev', 1)\n"
            "except OSError:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore'}))\n")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_EC2_METADATA_DISABLED": "true"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "['boto3', 'botocore']"]


def test_the_command_lock_says_when_its_previous_holder_let_go(tmp_path):
    """So that a command that read the state before it got the lock knows whether another command
    may have changed the state meanwhile (cli._one_at_a_time)."""
    with locks.command_lock(str(tmp_path), "dev", "bluegreen deploy") as released:
        assert released is None  # no holder before
        let_go = time.time()
    with locks.command_lock(str(tmp_path), "dev", "bluegreen promote") as released:
        assert released is not None and released >= let_go
