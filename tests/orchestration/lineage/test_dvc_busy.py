"""DVC's lock on paths, as a runner outside DVC reads it: live other DVC processes only."""

from __future__ import annotations

import json
import os
import subprocess

from orchestration.lineage.dvc_busy import RWLOCK, dvc_users


def _write(root, lock: dict) -> None:
    (root / RWLOCK).parent.mkdir(parents=True, exist_ok=True)
    (root / RWLOCK).write_text(json.dumps(lock))


def test_live_writers_and_readers_of_the_paths_are_named(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        info = {"pid": sleeper.pid, "cmd": "dvc repro teacher"}
        _write(
            tmp_path,
            {
                "write": {str(tmp_path / "models/teacher"): info},
                "read": {str(tmp_path / "data/labeled/train"): [info]},
            },
        )
        users = dvc_users(tmp_path, ["models/teacher", "data/labeled/train", "data/other"])
        assert users == [
            f"dvc repro teacher (pid {sleeper.pid}) writes models/teacher",
            f"dvc repro teacher (pid {sleeper.pid}) reads data/labeled/train",
        ]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert dvc_users(tmp_path, ["models/teacher"]) == [], "a dead holder blocks nobody"


def test_the_dvc_process_running_this_one_is_no_other_user(tmp_path):
    mine = {"pid": os.getppid(), "cmd": "dvc repro teacher"}
    _write(tmp_path, {"write": {str(tmp_path / "models/teacher"): mine}})
    assert dvc_users(tmp_path, ["models/teacher"]) == []


def test_no_lock_file_or_a_torn_one_is_no_user(tmp_path):
    assert dvc_users(tmp_path, ["models/teacher"]) == []
    (tmp_path / RWLOCK).parent.mkdir(parents=True)
    (tmp_path / RWLOCK).write_text('{"write": {"/x": ')
    assert dvc_users(tmp_path, ["models/teacher"]) == []
