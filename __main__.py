"""The Pulumi program: stack config -> BlueGreenApp -> stack outputs."""

import pulumi

from bluegreen.component import BlueGreenApp, BlueGreenAppArgs
from bluegreen.config import ConfigError, from_pulumi_config

try:
    settings = from_pulumi_config()
except ConfigError as error:
    # RunError: the message alone, no traceback, and no resource registered.
    raise pulumi.RunError(str(error)) from None

app = BlueGreenApp(settings.app_name, BlueGreenAppArgs(settings=settings))

pulumi.export("productionSlot", app.production_slot)
pulumi.export("stageSlot", app.stage_slot)
pulumi.export("prodSelector", app.prod_selector)
pulumi.export("stageSelector", app.stage_selector)
pulumi.export("images", {slot: app.plan.image(slot) for slot in ("blue", "green")})
pulumi.export("prodUrl", app.prod_url)
pulumi.export("stageUrl", app.stage_url)
pulumi.export("releaseName", app.release.name)
pulumi.export("namespace", app.release.namespace)
pulumi.export("revision", app.revision)
pulumi.export("status", app.status)
