"""`bluegreen diff`: what the next update of the stack config would change in the cluster, object by
object (kind, namespace, name, and each field): the manifest Helm recorded for the deployed revision
against the checkout's chart rendered with the stack's current config. A preview of a Release shows
only its input values (pulumi-kubernetes#1701); this shows the objects, a chart edit in the
checkout included. A Secret's values are never shown, only a digest. Read-only."""

from __future__ import annotations

import argparse

from .. import manifests
from ..session import Failed, Session

NAME = "diff"
HELP = "what the next update changes in the cluster, object by object"
READ_ONLY = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(session: Session, args: argparse.Namespace) -> None:
    found = session.show_diff(session.diff_in_background({}))
    if found is None:
        raise Failed(f"the object diff cannot be worked out: {session.report['diffError']}")
    if not args.json:
        print(manifests.render_text(found), end="")
