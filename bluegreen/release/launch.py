"""The release tool's entry point (`bluegreen`, `python -m bluegreen`).

Before Python imports the tool (the Pulumi SDK, gRPC: about 0.15 s), it starts `pulumi version`,
which the Automation API runs before its first command and which takes as long again: the two
overlap, and a release command's update can start that much sooner (stacks.StackSession).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

_version: subprocess.Popen | None = None
_read: str | None = None  # its output, once read


def main(argv: list[str] | None = None) -> int:
    global _version
    if shutil.which("pulumi") and not {"-h", "--help"} & set(argv if argv is not None else sys.argv[1:]):
        _version = subprocess.Popen(["pulumi", "version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    text=True, env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"})
    from .cli import main as run

    return run(argv)


def pulumi_version() -> str | None:
    """What the `pulumi version` started at launch printed ("3.260.0"), read once (every stack a
    command opens asks); None when none was started here (the tool used as a library) or it failed."""
    global _read
    if _version is None:
        return None
    if _read is None:
        out, _ = _version.communicate()
        _read = out.strip().removeprefix("v") if _version.returncode == 0 and out.strip() else ""
    return _read or None
