"""The Pulumi program: stack config -> BlueGreenApp -> stack outputs."""

import pulumi

from bluegreen.component import BlueGreenApp, BlueGreenAppArgs, last_update_outputs
from bluegreen.config import DEFAULTS, ConfigError, encrypted_keys, stack_config

config = stack_config()
try:
    # What the slots ran after the last update: prod may only get what a slot already ran.
    args = BlueGreenAppArgs.from_config(config)
    args.encrypted = encrypted_keys()
    last = last_update_outputs("slots", "secretDigests", "routing")
    args.deployed_slots = ({**last["slots"], "secretDigests": last["secretDigests"], "routing": last["routing"]}
                           if last["slots"] else None)
    app = BlueGreenApp(config.get("appName", DEFAULTS["appName"]), args)
except ConfigError as error:
    # RunError: the message alone, no traceback, and no resource registered.
    raise pulumi.RunError(str(error)) from None

for name, value in app.outputs.items():
    pulumi.export(name, value)
