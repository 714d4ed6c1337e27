"""The Pulumi program: stack config -> BlueGreenApp -> stack outputs."""

import pulumi

from bluegreen.component import BlueGreenApp, BlueGreenAppArgs, last_update_outputs
from bluegreen.config import DEFAULTS, ConfigError, encrypted_keys, stack_config

config = stack_config()
try:
    # What the slots ran after the last update: prod may only get what a slot already ran.
    last = last_update_outputs("slots", "secretDigests", "routing")
    before = ({**last["slots"], "secretDigests": last["secretDigests"], "routing": last["routing"]}
              if last["slots"] else None)
    # The stack config goes to the component as it is: config.parse reads it.
    app = BlueGreenApp(config.get("appName", DEFAULTS["appName"]),
                       BlueGreenAppArgs(config=config, encrypted=encrypted_keys(), deployed_slots=before))
except ConfigError as error:
    # RunError: the message alone, no traceback, and no resource registered.
    raise pulumi.RunError(str(error)) from None

for name, value in app.outputs.items():
    pulumi.export(name, value)
