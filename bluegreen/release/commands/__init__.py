"""One module per release command. Each has NAME, HELP and `run(session, args)`, and where it takes
arguments of its own `add_arguments(parser)` (and `check_arguments(args)`, which refuses a combination
of them before anything is read); READ_ONLY = True for one that changes nothing (it
takes no lock). The CLI (cli.py) builds its parser and dispatches from COMMANDS."""

from . import deploy, diff, promote, recover, repair, retire, rollback, status

COMMANDS = {command.NAME: command for command in (status, diff, deploy, promote, rollback, retire, recover, repair)}
