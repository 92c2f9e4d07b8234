"""kill -9 of a stage holding its output lock: the next run starts at once, and what the killed
one was writing (hidden temporaries of atomic_io) is removed by the next writer into its folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from depth_core import atomic_io
from depth_core.atomic_io import atomic_directory, atomic_write, replaced_directory
from orchestration.lineage.locks import output_lock
from tests.helpers import REPO

# A stage: holds its lock, then is half-way through writing a file and two folders.
_STAGE = """
import sys, time
from contextlib import ExitStack
from pathlib import Path
from depth_core.atomic_io import atomic_directory, atomic_path, replaced_directory
from orchestration.lineage.locks import output_lock
root = Path(sys.argv[1])
with output_lock(root, "teacher", "dvc"), ExitStack() as writes:
    temp = writes.enter_context(atomic_path(root / "out" / "model.safetensors"))
    temp.write_bytes(b"half a checkpoint")
    folder = writes.enter_context(atomic_directory(root / "out" / "samples"))
    (folder / "0.png").write_bytes(b"half a picture")
    report = writes.enter_context(replaced_directory(root / "out" / "report"))
    (report / "index.md").write_text("half a report")
    print("writing", flush=True)
    time.sleep(120)
"""

# A stage whose data loader forked a worker: the worker outlives a kill -9 of the stage.
_STAGE_WITH_WORKER = """
import multiprocessing, sys, time
from pathlib import Path
from orchestration.lineage.locks import output_lock
with output_lock(Path(sys.argv[1]), "teacher", "dvc"):
    worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(120,))
    worker.start()
    print(worker.pid, flush=True)
    time.sleep(120)
"""

# Writes one file slowly: publishes "from the slow writer" once a line arrives on stdin.
_SLOW_WRITER = """
import sys
from pathlib import Path
from depth_core.atomic_io import atomic_path
with atomic_path(Path(sys.argv[1])) as temp:
    temp.write_text("from the slow writer")
    print(temp.name, flush=True)
    sys.stdin.readline()
"""


def _start(code: str, *args) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reaped, as by dvc or the shell that started it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _hidden(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_the_next_run_after_a_kill_starts_at_once_and_cleans_what_was_half_written(tmp_path):
    out = tmp_path / "out"
    old_report = atomic_write(out / "report" / "index.md", "the previous report")
    proc, said = _start(_STAGE, tmp_path)
    assert said == "writing"
    _kill(proc)
    assert len(_hidden(out)) == 3, "the killed stage left its three temporaries"

    started = time.monotonic()
    with output_lock(tmp_path, "teacher", "cli"):
        assert time.monotonic() - started < 1.0, "no waiting for the dead holder"
        atomic_write(out / "model.safetensors", b"a whole checkpoint")
        with atomic_directory(out / "samples") as folder:
            (folder / "0.png").write_bytes(b"a whole picture")
        with replaced_directory(out / "report") as folder:
            (folder / "index.md").write_text("the new report")
    assert _hidden(out) == []
    assert (out / "model.safetensors").read_bytes() == b"a whole checkpoint"
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["0.png"]
    assert old_report.read_text() == "the new report"


def test_a_forked_worker_outliving_a_killed_stage_does_not_keep_its_lock(tmp_path):
    proc, worker = _start(_STAGE_WITH_WORKER, tmp_path)
    worker = int(worker)
    try:
        _kill(proc)
        assert _alive(worker), "the worker must still run for this test to mean anything"
        with output_lock(tmp_path, "teacher", "cli"):
            pass
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_temporaries_of_live_writers_and_other_machines_are_kept(tmp_path):
    target = tmp_path / "model.safetensors"
    slow, slow_temp = _start(_SLOW_WRITER, target)
    dead, _ = _start("print(flush=True)")
    dead.wait()
    other_host = "0" * 6 if atomic_io._HOST != "0" * 6 else "1" * 6
    foreign = tmp_path / f".{target.name}.{dead.pid}-{other_host}.0123abcd.tmp"
    foreign.write_bytes(b"another machine's write")
    try:
        atomic_write(target, b"from this writer")
        assert (tmp_path / slow_temp).exists(), "a live writer's temporary must survive"
        assert foreign.exists(), "a pid of another machine says nothing about this one"
    finally:
        slow.communicate("done\n", timeout=30)
    assert slow.returncode == 0
    assert target.read_text() == "from the slow writer"  # the live writer finished normally


def test_the_next_writer_into_the_folder_sweeps_it(tmp_path, monkeypatch):
    """Any write into the folder removes every dead writer's temporary there (a killed stage's
    other outputs included), again whenever the folder changed behind this process's back, and
    never lists it for a write that follows this process's own: writing thousands of files
    into one folder stays linear."""
    proc, _ = _start(_STAGE, tmp_path)
    _kill(proc)
    out = tmp_path / "out"
    assert len(_hidden(out)) == 3
    atomic_write(out / "model.onnx", b"x")
    assert _hidden(out) == []
    dead, _ = _start("print(flush=True)")
    dead.wait()
    later = out / f".model.onnx.{dead.pid}-{atomic_io._HOST}.0123abcd.tmp"
    later.write_bytes(b"left by a writer killed since")
    atomic_write(out / "model.onnx", b"y")
    assert _hidden(out) == []
    listed = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p=".": listed.append(p) or scandir(p))
    for i in range(20):
        atomic_write(out / f"map{i}.npy", b"z")
    assert listed == [], "the folder was listed again though only this process wrote to it"
