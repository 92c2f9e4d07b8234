"""torchrun + DDP: two gloo processes on CPU train a few steps and stay in sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from depth_core import distributed as dist_utils
from depth_core.models.checkpoint import CHECKPOINT_FILE

HERE = Path(__file__).parent


def test_single_process_context(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    ctx = dist_utils.setup(torch.device("cpu"))
    assert not ctx.enabled and ctx.is_main and ctx.world_size == 1
    model = nn.Linear(2, 2)
    assert dist_utils.wrap(model, ctx, torch.device("cpu")) is model
    assert dist_utils.mean_across_ranks({"a": 1.5}, ctx, torch.device("cpu")) == {"a": 1.5}
    assert dist_utils.min_across_ranks([3, 4], ctx, torch.device("cpu")) == [3, 4]
    dist_utils.assert_in_sync(model, ctx, torch.device("cpu"))  # no-op


def test_parameter_checksum_sees_a_change():
    model = nn.Linear(3, 2)
    before = dist_utils.parameter_checksum(model)
    with torch.no_grad():
        model.weight[0, 0] += 1e-3
    assert not torch.equal(before, dist_utils.parameter_checksum(model))


def _torchrun_training(tmp_path: Path, spec: dict, nproc: int = 2) -> list[dict]:
    """Run run_training.py under torchrun (gloo on CPU) and return each rank's report."""
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(dict(spec, report=str(tmp_path / "report.json"))))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            str(HERE / "run_training.py"),
            str(spec_file),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((tmp_path / f"report.rank{r}.json").read_text()) for r in range(nproc)]


def _epochs(report: dict, steps_per_epoch: int) -> list[list[str]]:
    steps = report["step_ids"]
    return [
        [i for step in steps[e : e + steps_per_epoch] for i in step]
        for e in range(0, len(steps), steps_per_epoch)
    ]


def test_two_gloo_ranks_stay_in_sync_and_split_every_epoch_exactly(tmp_path, tiny_data, tiny_vit):
    """24 samples in 3 shards of 8 over 2 ranks of batch 4: 12 a rank, every sample once an epoch."""
    config = {
        "model": tiny_vit,
        "epochs": 2,
        "batch_size": 4,
        "precision": "fp32",
        "checkpoint_every": 100,
        "n_samples": 0,
        "optim": {"warmup_steps": 1},
    }
    spec = {
        "config": config,
        "out_dir": str(tmp_path / "ddp"),
        "labeled": str(tiny_data["labeled"]),
        "val": str(tiny_data["val"]),
    }
    reports = _torchrun_training(tmp_path, spec)
    assert reports[0]["checksum"] == pytest.approx(reports[1]["checksum"], rel=1e-7)
    assert [len(r["step_ids"]) for r in reports] == [6, 6]  # 3 steps an epoch on each rank
    assert reports[0]["metrics"]["train/steps"] == reports[1]["metrics"]["train/steps"] == 6
    assert reports[0]["metrics"]["train/images_per_second"] > 0
    assert (tmp_path / "ddp" / CHECKPOINT_FILE).is_file()
    everything = sorted(f"s{i:05d}" for i in range(24))
    per_rank = [_epochs(r, 3) for r in reports]
    for epoch in range(2):
        ids = [per_rank[0][epoch], per_rank[1][epoch]]
        assert not set(ids[0]) & set(ids[1])
        assert sorted(ids[0] + ids[1]) == everything
    assert per_rank[0][0] != per_rank[0][1]  # a fresh split and order every epoch


def test_student_epochs_cover_the_pseudo_labels_once_across_ranks(tmp_path, tiny_data, tiny_vit):
    """Mix 1:1 at batch 4: 12 pseudo-labelled images a rank, 2 per batch, 6 steps an epoch."""
    config = {
        "model": tiny_vit,
        "epochs": 1,
        "batch_size": 4,
        "precision": "fp32",
        "checkpoint_every": 100,
        "n_samples": 0,
        "mix": {"labeled": 1, "pseudo": 1},
        "optim": {"warmup_steps": 1},
    }
    spec = {
        "config": config,
        "out_dir": str(tmp_path / "ddp"),
        "labeled": str(tiny_data["labeled"]),
        "val": str(tiny_data["val"]),
        "pseudo": [str(tiny_data["unlabeled"]), str(tiny_data["pseudo"])],
    }
    reports = _torchrun_training(tmp_path, spec)
    assert reports[0]["checksum"] == pytest.approx(reports[1]["checksum"], rel=1e-7)
    pseudo = [[i for step in r["step_ids"] for i in step if i.startswith("u")] for r in reports]
    assert [len(p) for p in pseudo] == [12, 12]
    assert sorted(pseudo[0] + pseudo[1]) == sorted(f"u{i:05d}" for i in range(24))
