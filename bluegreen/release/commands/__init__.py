"""One module per release command. Each has NAME, HELP, `add_arguments(parser)` and
`run(session, args)`; the CLI (cli.py) builds its parser and dispatches from COMMANDS."""

from . import deploy, diff, promote, recover, repair, retire, rollback, status

COMMANDS = {command.NAME: command for command in (status, diff, deploy, promote, rollback, retire, recover, repair)}
