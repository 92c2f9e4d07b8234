"""pseudo_labels under torchrun: ranks label whole shards r::W, and the dataset they make does not
depend on the world size (one process, 2 ranks on one node, 2 nodes through the c10d rendezvous,
3 ranks on 2 shards), resumes across world sizes, and fails whole when one rank fails."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from depth_core.models import ModelConfig, build_model, save_checkpoint
from orchestration.commands.stage import LAUNCHER_ENV
from tests.depth_core.training.conftest import make_dataset
from tests.helpers import REPO, TINY_VIT, write_smoke_params

pytestmark = pytest.mark.slow

TORCHRUN = "torchrun --standalone --nproc_per_node {n}"


# A teacher slow enough (about 5 ms an image) that a kill lands while shards remain.
SLOWER_VIT = {**TINY_VIT, "img_size": 224, "backbone_kwargs": {"depth": 12, "embed_dim": 192, "num_heads": 3}}  # fmt: skip


def _project(root: Path, n_images: int, shard_size: int, model: dict = TINY_VIT) -> Path:
    """A lineage root holding only what pseudo_labels reads: a teacher and unlabeled shards."""
    make_dataset(root / "data" / "unlabeled", n_images, shard_size, kind="unlabeled")
    torch.manual_seed(0)
    save_checkpoint(root / "models/teacher/model.safetensors", build_model(ModelConfig(**model)))
    params = yaml.safe_load(write_smoke_params(root / "params.yaml").read_text())
    params["device"] = "cpu"
    params["pseudo_labels"] = {"batch_size": 3, "amp": "fp32", "flip_tta": False, "scales": [1.0]}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def _env(launcher: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", LAUNCHER_ENV)}
    env.update(OMP_NUM_THREADS="1", DEPTH_DISTILL_TRACKING="off", PYTHONPATH=str(REPO))
    if launcher:
        env[LAUNCHER_ENV] = launcher
    return env


def _command(root: Path) -> list[str]:
    return [sys.executable, "-m", "orchestration.cli", "stage", "pseudo_labels", "--root",
            str(root), "--params", str(root / "params.yaml")]  # fmt: skip


def _label(root: Path, launcher: str | None = None, check: bool = True):
    proc = subprocess.run(
        _command(root), env=_env(launcher), capture_output=True, text=True, timeout=300, check=False
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _tree(root: Path) -> dict[str, bytes]:
    """Every file of the pseudo-label output, by relative path: equal trees give equal DVC
    directory hashes (DVC hashes the sorted relative paths and each file's md5)."""
    out = root / "data" / "pseudo_labels"
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    """Five shards (an uneven split over 2 ranks) labelled by one process."""
    root = _project(tmp_path_factory.mktemp("one"), n_images=18, shard_size=4)
    _label(root)
    tree = _tree(root)
    assert "summary.json" in tree and len([k for k in tree if k.startswith("shards/")]) == 5
    return tree


def test_two_ranks_on_one_node_make_the_same_bytes(tmp_path, reference):
    root = _project(tmp_path, n_images=18, shard_size=4)
    proc = _label(root, TORCHRUN.format(n=2))
    assert "torch.distributed.run" in proc.stderr or "torchrun" in proc.stderr
    assert _tree(root) == reference


def test_two_nodes_through_the_rendezvous_make_the_same_bytes(tmp_path, reference):
    root = _project(tmp_path, n_images=18, shard_size=4)
    port = _free_port()
    agents = [
        subprocess.Popen(
            _command(root),
            env=_env(
                f"torchrun --nnodes 2 --nproc_per_node 1 --node_rank {node} --rdzv_backend c10d "
                f"--rdzv_endpoint 127.0.0.1:{port} --rdzv_id pseudo"
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in (0, 1)
    ]
    for agent in agents:
        _, err = agent.communicate(timeout=300)
        assert agent.returncode == 0, err[-3000:]
    assert _tree(root) == reference


def test_more_ranks_than_shards(tmp_path):
    one = _project(tmp_path / "one", n_images=7, shard_size=4)  # 2 shards
    _label(one)
    three = _project(tmp_path / "three", n_images=7, shard_size=4)
    _label(three, TORCHRUN.format(n=3))
    assert _tree(three) == _tree(one)


def test_a_killed_two_rank_run_resumes_with_one_rank(tmp_path):
    one = _project(tmp_path / "one", n_images=80, shard_size=4, model=SLOWER_VIT)
    _label(one)
    root = _project(tmp_path / "killed", n_images=80, shard_size=4, model=SLOWER_VIT)
    shards = root / "data" / "pseudo_labels" / "shards"
    run = subprocess.Popen(
        _command(root),
        env=_env(TORCHRUN.format(n=2)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not list(shards.glob("shard-*.npz")) and run.poll() is None:
        assert time.monotonic() < deadline, "no shard was written"
        time.sleep(0.005)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    done = len(list(shards.glob("shard-*.npz")))
    assert 1 <= done < 20, f"{done} of 20 shards at the kill: not mid-way"
    assert not (root / "data" / "pseudo_labels" / "summary.json").exists()
    _label(root)  # one process finishes what two ranks started
    assert _tree(root) == _tree(one)


def test_a_failing_rank_fails_the_run_naming_rank_and_shard(tmp_path):
    root = _project(tmp_path, n_images=18, shard_size=4)
    broken = root / "data" / "unlabeled" / "shards" / "shard-000001.npz"  # rank 1's first shard
    broken.write_bytes(b"not a shard")
    proc = _label(root, TORCHRUN.format(n=2), check=False)
    assert proc.returncode != 0
    assert "rank 1: PseudoLabelError: shard 1 (" in proc.stderr, proc.stderr[-3000:]
    assert not (root / "data" / "pseudo_labels" / "summary.json").exists()
    assert not (root / "metrics" / "pseudo_labels.json").exists()
