"""A full disk: the write fails with one line naming the file, what was there stays, nothing
half-written remains, and once space is freed a rerun succeeds (resuming where it can).

The disk is a small tmpfs filled up (as root); where mounting is not allowed, the failing
step runs under RLIMIT_FSIZE instead (SIGXFSZ ignored, so a write fails with EFBIG).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from depth_core.data.shards import build_sharded, list_shards, read_shard
from depth_core.models import ModelConfig, build_model, load_checkpoint, save_checkpoint
from depth_core.training.checkpointing import STATE_FILE, load_train_state, save_train_state
from tests.helpers import REPO

resource = pytest.importorskip("resource")

DISK_BYTES = 4 << 20
# A 4-block ViT narrower than TINY_VIT: its checkpoint (~260 KB) fits the tiny disk.
SMALL_VIT = {
    "backbone": "vit_tiny_patch16_224",
    "features": 8,
    "img_size": 32,
    "backbone_kwargs": {"depth": 4, "embed_dim": 16, "num_heads": 1},
}
# Runs in the child: the step that meets the full disk, its error as one line on stdout.
_PRELUDE = """
import sys
from pathlib import Path
def main():
{body}
try:
    main()
except Exception as error:
    print(f"{{type(error).__name__}}: {{error}}")
    sys.exit(3)
"""


def small_model(seed: int):
    torch.manual_seed(seed)
    return build_model(ModelConfig(**SMALL_VIT))


def make_shard(index: int, start: int, count: int) -> dict[str, np.ndarray]:
    """200 KB per shard: more than the room a filled disk or the file size limit leaves."""
    return {"x": np.full((count, 50_000), index, dtype=np.float32)}


class FullDisk:
    """`path`, a folder on which `child` runs a step with (nearly) no room left."""

    def __init__(self, path: Path, mounted: bool):
        self.path, self.mounted = path, mounted

    def child(self, body: str, *args, room: int = 0) -> subprocess.CompletedProcess:
        """Run `body` (the lines of a function) in a Python child that has `room` bytes left to
        write, then free the space again."""
        filler = self.path / "filler"
        if self.mounted:
            _fill(filler, room)
        code = _PRELUDE.format(body="\n".join(f"    {line}" for line in body.splitlines()))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            return subprocess.run(
                [sys.executable, "-c", code, *map(str, args)],
                check=False,
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                preexec_fn=None if self.mounted else lambda: _limit_file_size(max(room, 4096)),
            )
        finally:
            filler.unlink(missing_ok=True)


def _fill(filler: Path, room: int) -> None:
    """Take all free space on filler's filesystem but `room` bytes."""
    stats = os.statvfs(filler.parent)
    left = stats.f_bavail * stats.f_frsize - room
    chunk = b"\0" * (1 << 16)
    try:
        with open(filler, "wb") as handle:
            while left > 0:
                left -= handle.write(chunk[: min(len(chunk), left)])
    except OSError:
        pass


def _limit_file_size(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the default action would kill the child
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def _mount_tmpfs(path: Path) -> bool:
    if os.geteuid() != 0:
        return False
    try:
        command = ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(path)]
        done = subprocess.run(command, check=False, capture_output=True, timeout=30)
        return done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "disk"
    path.mkdir()
    mounted = _mount_tmpfs(path)
    try:
        yield FullDisk(path, mounted)
    finally:
        if mounted:
            _unmount(path)


def _unmount(path: Path) -> None:
    done = subprocess.run(["umount", str(path)], check=False, capture_output=True)
    if done.returncode:  # busy: this process still has the MLflow store open
        subprocess.run(["umount", "-l", str(path)], check=True)


def _one_line_naming(result: subprocess.CompletedProcess, target) -> str:
    assert result.returncode == 3, result.stdout + result.stderr[-3000:]
    line = result.stdout.strip()
    assert "\n" not in line and line.startswith("DiskFull: no space left to write ")
    assert str(target) in line
    return line


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if p.name.endswith(".tmp"))


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_shard_build_on_a_full_disk_names_the_shard_and_resumes_once_freed(disk):
    dataset = disk.path / "labeled"
    build_sharded(dataset, 4, 1, make_shard, shard_indices=[0, 1], progress=False)
    before = _contents(dataset)

    result = disk.child(
        "from depth_core.data.shards import build_sharded\n"
        "from tests.reliability.test_full_disk import make_shard\n"
        "build_sharded(sys.argv[1], 4, 1, make_shard, progress=False)",
        dataset,
    )
    _one_line_naming(result, dataset / "shards" / "shard-000002.npz")
    assert _contents(dataset) == before, "the finished shards must stay as they were"
    assert _temps(dataset) == []

    stats = build_sharded(dataset, 4, 1, make_shard, progress=False)
    assert (stats.written, stats.skipped) == (2, 2), "the rerun resumes at the failed shard"
    assert [int(read_shard(p)["x"][0, 0]) for p in list_shards(dataset)] == [0, 1, 2, 3]


def test_a_checkpoint_on_a_full_disk_keeps_the_previous_one(disk):
    path = disk.path / "model.safetensors"
    save_checkpoint(path, small_model(0))
    before = path.read_bytes()

    result = disk.child(
        "from tests.reliability.test_full_disk import small_model\n"
        "from depth_core.models import save_checkpoint\n"
        "save_checkpoint(sys.argv[1], small_model(1))",
        path,
    )
    _one_line_naming(result, path)
    assert path.read_bytes() == before
    assert _temps(disk.path) == []

    save_checkpoint(path, small_model(1))
    loaded, _ = load_checkpoint(path)
    expected = small_model(1).state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in loaded.state_dict().items())


def test_a_training_state_on_a_full_disk_keeps_the_last_resume_point(disk):
    """The model file of step 2 still fits, its train_state.pt (optimizer moments) does not."""
    folder = disk.path / "checkpoints"
    save_train_state(folder, small_model(0), {"step": 1, "optimizer": torch.zeros(250_000)})
    state_before = (folder / STATE_FILE).read_bytes()
    model_before = (folder / "model-step00000001.safetensors").read_bytes()

    result = disk.child(
        "import torch\n"
        "from tests.reliability.test_full_disk import small_model\n"
        "from depth_core.training.checkpointing import save_train_state\n"
        "save_train_state(Path(sys.argv[1]), small_model(1), "
        '{"step": 2, "optimizer": torch.ones(250_000)})',
        folder,
        room=512 << 10,
    )
    _one_line_naming(result, folder / STATE_FILE)
    assert (folder / STATE_FILE).read_bytes() == state_before
    assert (folder / "model-step00000001.safetensors").read_bytes() == model_before
    assert _temps(folder) == []
    assert load_train_state(folder)[0]["step"] == 1, "resume still finds the last checkpoint"

    save_train_state(folder, small_model(1), {"step": 2, "optimizer": torch.ones(250_000)})
    state, _ = load_train_state(folder)
    assert state["step"] == 2 and torch.equal(state["optimizer"], torch.ones(250_000))


def test_an_onnx_export_on_a_full_disk_fails_in_one_line_and_keeps_the_old_file(tmp_path, disk):
    from depth_core.export import export_checkpoint

    checkpoint = save_checkpoint(tmp_path / "student.safetensors", small_model(0))
    output = disk.path / "student.onnx"
    output.write_bytes(b"the previous export")

    result = disk.child(
        "from orchestration.cli import main\n"
        'argv = ["export", "--checkpoint", sys.argv[1], "--output", sys.argv[2], "--fixed-size"]\n'
        "sys.exit(main(argv))",
        checkpoint,
        output,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [errors[-1]] and "Traceback" not in result.stderr
    assert errors[0].startswith(f"error: no space left to write {output}")
    assert output.read_bytes() == b"the previous export"
    assert _temps(disk.path) == []

    report = export_checkpoint(checkpoint, output, dynamic=False)
    assert output.stat().st_size == report.bytes > 1000


def test_an_mlflow_store_on_a_full_disk_fails_in_one_line_and_logs_again_once_freed(
    tmp_path, disk, monkeypatch
):
    if not disk.mounted:
        pytest.skip("needs a tmpfs (root): under RLIMIT_FSIZE sqlite says 'disk I/O error'")
    from mlflow.tracking import MlflowClient

    from orchestration.tracking import stage_run

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "DEPTH_DISTILL_TRACKING"):
        monkeypatch.delenv(name, raising=False)
    artifact = tmp_path / "history.json"
    artifact.write_text("[]" + " " * 100_000)
    with stage_run(disk.path, "teacher", "teacher", "key", "cli") as run:
        run.log_metrics({"loss": 1.0}, step=0)
    store = disk.path / "mlflow.db"

    started = time.monotonic()
    result = disk.child(
        "from orchestration.tracking import stage_run\n"
        'with stage_run(Path(sys.argv[1]), "student", "student", "key", "cli") as run:\n'
        '    run.log_metrics({"loss": 0.5}, step=0)\n'
        "    run.log_artifact(Path(sys.argv[2]))",
        disk.path,
        artifact,
    )
    assert time.monotonic() - started < 60, "a full store must fail, not hang"
    line = _one_line_naming(result, disk.path)
    assert "MLflow" in line and "SQL" not in result.stdout + result.stderr
    with sqlite3.connect(store) as db:
        assert db.execute("pragma integrity_check").fetchall() == [("ok",)]

    with stage_run(disk.path, "student", "student", "key", "cli") as run:
        run.log_metrics({"loss": 0.25}, step=1)
        run.log_artifact(artifact)
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    runs = client.search_runs([client.get_experiment_by_name("depth-distill").experiment_id])
    finished = {r.data.tags["stage"]: r for r in runs if r.info.status == "FINISHED"}
    assert finished["student"].data.metrics == {"loss": 0.25}
    assert finished["teacher"].data.metrics == {"loss": 1.0}
    assert [a.path for a in client.list_artifacts(finished["student"].info.run_id)] == [
        "history.json"
    ]
