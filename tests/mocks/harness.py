"""Runs the real __main__.py under Pulumi mocks and records what it registers and exports."""

from __future__ import annotations

import json
import runpy
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import settings as runtime_settings

from tests.conftest import REPO_ROOT

RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"


class RecordingMocks(pulumi.runtime.Mocks):
    """Echo inputs back as outputs, like a provider would, and keep every registration. The
    program reads its own stack's outputs with the engine's builtin `pulumi:pulumi:readStackOutputs`
    function, which answers `last_outputs` (the last update's exports) here, as the engine does;
    those calls are kept in `reads`: a read changes nothing."""

    def __init__(self, last_outputs: dict | None = None) -> None:
        self.registered: list[pulumi.runtime.MockResourceArgs] = []
        self.reads: list[pulumi.runtime.MockCallArgs] = []
        self.last_outputs = last_outputs or {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.registered.append(args)
        outputs = dict(args.inputs)
        metadata = outputs.get("metadata")
        if isinstance(metadata, dict) and "name" not in metadata:  # the provider's autonaming
            outputs["metadata"] = {**metadata, "name": f"{args.name}-0a1b2c3d"}
        if args.typ == RELEASE_TYPE:
            outputs["status"] = {"revision": 1, "status": "deployed", "name": args.inputs["name"],
                                 "namespace": args.inputs["namespace"]}
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "pulumi:pulumi:readStackOutputs":
            self.reads.append(args)
            return {"name": args.args["name"], "outputs": self.last_outputs, "secretOutputNames": []}
        return {}


@dataclass
class ProgramRun:
    registered: list = field(default_factory=list)
    outputs: dict = field(default_factory=dict)

    def of_type(self, typ: str) -> list:
        return [r for r in self.registered if r.typ == typ]

    @property
    def release(self):
        (release,) = self.of_type(RELEASE_TYPE)
        return release


def run_program(config: dict[str, Any], stack: str = "staging", preview: bool = False,
                mocks: RecordingMocks | None = None, secret_keys: tuple[str, ...] = ()) -> ProgramRun:
    """Run __main__.py with this raw stack config (keys without the project prefix); `secret_keys`
    are the ones set with --secret.

    Pass `mocks` to inspect what was registered when the program raises.
    """
    runtime_settings.ROOT.set(None)  # a fresh root Stack, so exports of earlier runs don't leak in
    mocks = mocks or RecordingMocks()
    # "organization": what the engine names the organization of a stack in a file or S3 backend.
    pulumi.runtime.set_mocks(mocks, project="bluegreen", stack=stack, preview=preview, organization="organization")
    # The engine hands objects to programs as JSON text and scalars as text.
    pulumi.runtime.set_all_config({
        f"bluegreen:{key}": value if isinstance(value, str) else json.dumps(value)
        for key, value in config.items()
    }, secret_keys=[f"bluegreen:{key}" for key in secret_keys])
    run = ProgramRun(registered=mocks.registered)

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(REPO_ROOT / "__main__.py"), run_name="__main__")
        exports = runtime_settings.get_root_resource().outputs
        return pulumi.Output.from_input(exports).apply(run.outputs.update)

    program()
    return run
