"""`make dagster` stops its whole process tree on SIGTERM and Ctrl-C: nothing is orphaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO

SCRIPT = REPO / "scripts" / "run-process-group.sh"

# Like `dagster dev`: ignores SIGTERM, runs servers; one of them ignores SIGINT and SIGTERM too.
_TREE = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
stubborn = "import signal, time; [signal.signal(s, signal.SIG_IGN) for s in (2, 15)]; time.sleep(300)"
children = [subprocess.Popen(["sleep", "300"]), subprocess.Popen([sys.executable, "-c", stubborn])]
print(" ".join(str(c.pid) for c in children), flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited already
        return stat.read().split()[2] != "Z"


def _default_stop_signals() -> None:
    """As from a terminal: a test run started in the background inherits SIGINT ignored, and a
    shell cannot trap a signal ignored on entry, so the runner would never see Ctrl-C."""
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, signal.SIG_DFL)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_runner_stops_every_process_of_the_tree(stop):
    runner = subprocess.Popen(
        [str(SCRIPT), sys.executable, "-c", _TREE],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "STOP_GRACE_SECONDS": "1"},
        start_new_session=True,  # signals meant for the test runner's group stay out
        preexec_fn=_default_stop_signals,  # noqa: PLW1509 - this test forks from one thread
    )
    pids = [int(p) for p in runner.stdout.readline().split()]
    time.sleep(0.3)  # the stubborn child has set its handlers
    assert pids and all(_alive(p) for p in pids)
    runner.send_signal(stop)
    assert runner.wait(timeout=30) != 0
    deadline = time.time() + 5
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "orphaned processes survived the runner"


def test_make_dagster_runs_dagster_dev_under_the_runner():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ndagster:", 1)[1].split("\n\n", 1)[0]
    assert "exec scripts/run-process-group.sh $(BIN)/dagster dev" in recipe
