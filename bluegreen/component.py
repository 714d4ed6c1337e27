"""BlueGreenApp: validated settings -> a Namespace and a helm.v3.Release of the bundled chart.

The component only wires decisions made elsewhere (config.py, slots.py, values.py) into resources.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass

import pulumi
from pulumi_kubernetes.helm.v3 import Release

from .config import Settings
from .slots import SlotPlan, plan
from .values import CHART_DIR, chart_values

# Helm keeps one Secret per revision; without a cap they pile up for ever.
MAX_HISTORY = 10
# The provider plugin version the pulumi-kubernetes package asks for (its resources pin it too).
PROVIDER_VERSION = importlib.metadata.version("pulumi-kubernetes")


@dataclass
class BlueGreenAppArgs:
    settings: Settings
    """The validated stack config (bluegreen.config.parse / from_pulumi_config)."""


class BlueGreenApp(pulumi.ComponentResource):
    """Two slots of one app behind a prod and a stage Service, as one Helm release."""

    release: Release
    plan: SlotPlan
    production_slot: str
    stage_slot: str
    prod_selector: dict
    stage_selector: dict
    prod_url: str
    stage_url: str
    revision: pulumi.Output[int | None]  # ReleaseStatus.revision is Optional: None if Helm reported none
    status: pulumi.Output[str]

    def __init__(self, name: str, args: BlueGreenAppArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:index:BlueGreenApp", name, {}, opts)
        settings = args.settings
        self.plan = plan(settings)

        depends_on = []
        if settings.create_namespace:
            # Our own namespace enforces Pod Security "restricted", which the chart's pods meet,
            # and `pulumi destroy` removes it again.
            depends_on.append(RestrictedNamespace(f"{name}-namespace", settings.namespace,
                                                  pulumi.ResourceOptions(parent=self)))

        self.release = Release(
            f"{name}-release",
            # An explicit name: an auto-named release would rename every Service it owns.
            name=settings.app_name,
            namespace=settings.namespace,
            chart=chart_path(),
            values=chart_values(settings),
            max_history=MAX_HISTORY,
            # A failed upgrade (pods never ready, timeout) is rolled back by Helm to the last good
            # revision, and resources it created are removed: prod keeps serving the old slot.
            atomic=True,
            cleanup_on_fail=True,
            # Await readiness (Helm's --wait) so `pulumi up` ends only when the slots are Available.
            skip_await=False,
            timeout=settings.helm_timeout_seconds,
            # Stack config is the source of truth: values set behind Pulumi's back are not kept.
            reset_values=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )

        self.production_slot = self.plan.production
        self.stage_slot = self.plan.stage
        self.prod_selector = self.plan.prod_selector
        self.stage_selector = self.plan.stage_selector
        self.prod_url = settings.url("prod")
        self.stage_url = settings.url("stage")
        self.revision = self.release.status.apply(lambda s: s.revision)
        self.status = self.release.status.apply(lambda s: s.status)
        self.register_outputs({
            "productionSlot": self.production_slot,
            "stageSlot": self.stage_slot,
            "prodSelector": self.prod_selector,
            "stageSelector": self.stage_selector,
            "revision": self.revision,
            "status": self.status,
        })


class RestrictedNamespace(pulumi.CustomResource):
    """A kubernetes:core/v1:Namespace labelled to enforce Pod Security "restricted".

    The same resource pulumi_kubernetes.core.v1.Namespace registers (type, inputs, provider
    version), declared here because importing core.v1 loads every core type: 0.2 s of each
    `pulumi up`, a tenth of a flip (see bench/).
    """

    def __init__(self, name: str, namespace: str, opts: pulumi.ResourceOptions):
        metadata = {"name": namespace, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "app.kubernetes.io/managed-by": "pulumi",
        }}
        opts = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(version=PROVIDER_VERSION), opts)
        super().__init__("kubernetes:core/v1:Namespace", name,
                         {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata, "spec": None, "status": None},
                         opts)


def chart_path() -> str:
    """The chart's path relative to the working directory (the project root under Pulumi).

    Stored in the Release's inputs: an absolute path would show a spurious diff on every other
    machine or checkout (pulumi-kubernetes issue 2573).
    """
    relative = os.path.relpath(CHART_DIR, os.getcwd())
    # "./" keeps Helm from reading "bluegreen/chart" as chart "chart" of a repo named "bluegreen".
    return relative if relative.startswith("..") else "./" + relative
