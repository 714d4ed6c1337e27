"""Generated `bluegreen` command lines (tests/generated.py: release_argv), valid and invalid,
through `cli.main` over the stack and cluster in memory (fake_world.py), from several points of a
release. Each must exit 0, 1 or 2 with a message, print valid JSON with --json, never a traceback
or an unexpected exception, never wait on a cluster that has settled, and a refusal (exit 2) must
leave the stack config as it was.

--check-url requests go only to a server on 127.0.0.1 (BLUEGREEN_INGRESS, as the README describes):
any other address is refused by this test, and counted as a failure.
`pytest --hypothesis-show-statistics` shows how the commands ended.
"""

from __future__ import annotations

import collections
import copy
import http.server
import json
import re
import shutil
import socket
import sys
import tempfile
import threading
import time

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.generated import generated, release_argv
from tests.unit.fake_world import V2, FakeCluster, FakeStack, install

# Points of a release to start from: stack config edits, each followed by an update.
STATES = {
    "blue live": [],
    "green staged": [{"green.enabled": True, "green.image": V2}],
    "promoted": [{"green.enabled": True, "green.image": V2}, {"productionSlot": "green"}],
    "old slot retired": [{"green.enabled": True, "green.image": V2}, {"productionSlot": "green"},
                         {"blue.enabled": False}],
    "old slot scaled to 0": [{"green.enabled": True, "green.image": V2}, {"productionSlot": "green"},
                             {"blue.replicas": 0}],
    "internal stage, staged": [{"stageAccess": "internal", "green.enabled": True, "green.image": V2}],
}
OUTCOMES: collections.Counter = collections.Counter()
UNEXPECTED = re.compile(r"FAILED: [A-Z][A-Za-z]*(Error|Exception|Expired)\b")


class Checks(http.server.BaseHTTPRequestHandler):
    """The ingress for --check-url: 2xx, but 503 for a path with "fail" (on prod only for
    "fail-on-prod", whose host is the prod host)."""

    def do_GET(self):
        host = self.headers.get("Host", "")
        failing = "fail-on-prod" in self.path and host.startswith("shop.") or "fail" in self.path.replace(
            "fail-on-prod", "")
        self.send_response(503 if failing else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def ingress():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Checks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class Clock:
    """time for the release tool's modules: sleeping advances a clock of its own, so a command that
    waits is seen (and a wait that would last a minute takes none)."""

    def __init__(self):
        self.now, self.slept = 0.0, 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds

    def __getattr__(self, name):
        return getattr(time, name)


def loopback_only(refused: list[str]):
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            refused.append(str(host))
            raise OSError(f"this test sends nothing to {host!r}")
        return real(host, *args, **kwargs)

    return getaddrinfo


def world(state: str) -> FakeStack:
    stack = FakeStack(FakeCluster())
    stack.up()
    for changes in STATES[state]:
        stack.up(changes)
    return stack


@given(st.sampled_from(sorted(STATES)), release_argv())
@generated(2000)
def test_a_generated_command_line_ends_with_a_message_and_a_refusal_changes_nothing(ingress, capsys, state, argv):
    stack = world(state)
    config, updates = copy.deepcopy(stack.config), len(stack.updates)
    clock, outside, scratch = Clock(), [], tempfile.mkdtemp(prefix="bluegreen-generated-")
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        install(patch, stack, scratch)  # this example's own journal and locks
        for name, module in list(sys.modules.items()):
            if name.startswith("bluegreen.release") and getattr(module, "time", None) is time:
                patch.setattr(module, "time", clock)
        patch.setattr(socket, "getaddrinfo", loopback_only(outside))
        patch.setenv("BLUEGREEN_INGRESS", ingress)
        try:
            code = cli_main(argv)
        except SystemExit as exit_:  # argparse's way out
            code = exit_.code
    shutil.rmtree(scratch, ignore_errors=True)
    out, err = capsys.readouterr()
    command = next((a for a in argv if not a.startswith("-")), "")
    where = f"bluegreen {' '.join(argv)} (from {state}) exited {code}:\n{err}\n{out}"
    assert "Traceback" not in err + out, where
    assert code in ((0, 1, 2, 3) if command == "status" else (0, 1, 2)), where
    assert (err + out).strip(), where
    assert not UNEXPECTED.search(err), where
    assert not outside, f"{where}\nsent to {outside}"
    assert clock.slept == 0, f"{where}\nwaited {clock.slept} s on a cluster that had settled"
    if "--json" in argv:
        result = json.loads(out)
        assert result["ok"] is (code == 0), where
        assert code == 0 or result["error"], where
        assert code != 2 or result.get("refused") is True, where
    if code == 2:
        assert (stack.config, len(stack.updates)) == (config, updates), f"{where}\na refusal changed the stack"
    if code == 0 and len(stack.updates) > updates:
        prod = stack.cluster.services["web-prod"]["spec"]["selector"]["slot"]
        assert prod == stack.config["productionSlot"], where
    OUTCOMES[(command, code)] += 1
    event(f"{command or '(none)'}: exit {code}")


def cli_main(argv: list[str]) -> int:
    from bluegreen.release import cli

    return cli.main(argv)


def test_the_generated_command_lines_end_every_way():
    """The generator reaches success, failure and refusal (runs after the property above)."""
    if not OUTCOMES:
        pytest.skip("the property did not run in this session")
    codes = collections.Counter(code for _, code in OUTCOMES.elements())
    print(f"generated command lines: {sum(codes.values())} tried, exit codes {dict(sorted(codes.items()))}, "
          f"by command {dict(sorted(OUTCOMES.items()))}")  # shown with -s
    assert codes[0] > 20 and codes[1] > 5 and codes[2] > 100, sorted(OUTCOMES.items())
