"""The Pulumi program: stack config -> BlueGreenApp -> stack outputs."""

import pulumi

from bluegreen.component import BlueGreenApp, BlueGreenAppArgs
from bluegreen.config import DEFAULTS, ConfigError, stack_config

config = stack_config()
try:
    app = BlueGreenApp(config.get("appName", DEFAULTS["appName"]), BlueGreenAppArgs.from_config(config))
except ConfigError as error:
    # RunError: the message alone, no traceback, and no resource registered.
    raise pulumi.RunError(str(error)) from None

for name, value in app.outputs.items():
    pulumi.export(name, value)
