"""An S3 state backend for e2e tests: versitygw on 127.0.0.1 over a directory of this machine (each
bucket a subdirectory, each object a file), started, stopped and started again on the same port."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.e2e.conftest import wait_until

BUCKET = "pulumi-state"
KEY, SECRET = "bluegreen-e2e", "bluegreen-e2e-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class S3Server:
    """versitygw serving `data` (the bucket BUCKET is `data/BUCKET`) on 127.0.0.1:port."""

    def __init__(self, data: Path, env: dict, log: Path):
        self.data, self.env, self.log = data, env, log
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        (data / BUCKET).mkdir(parents=True, exist_ok=True)

    @property
    def bucket(self) -> Path:
        return self.data / BUCKET

    def backend_env(self) -> dict[str, str]:
        """What a Pulumi CLI (and the release tool) needs to keep its state in the bucket."""
        return {
            "PULUMI_BACKEND_URL": f"s3://{BUCKET}?endpoint=http://127.0.0.1:{self.port}&use_path_style=true"
                                  "&region=us-east-1",
            "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1",
            # Credentials come from the environment only: no profile files, no instance metadata.
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                ["versitygw", "--port", f"127.0.0.1:{self.port}", "--quiet", "posix", str(self.data)],
                env={**self.env, "ROOT_ACCESS_KEY": KEY, "ROOT_SECRET_KEY": SECRET},
                stdout=log, stderr=subprocess.STDOUT)
        wait_until("versitygw listens", lambda: listening(self.port), timeout=30, interval=0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None
        wait_until("versitygw's port is closed", lambda: not listening(self.port), timeout=10, interval=0.1)

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
