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


def test_two_gloo_processes_stay_in_sync(tmp_path, tiny_data, tiny_vit):
    config = {
        "model": tiny_vit,
        "epochs": 1,
        "batch_size": 4,
        "precision": "fp32",
        "checkpoint_every": 100,
        "n_samples": 0,
        "optim": {"warmup_steps": 1},
    }
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "config": config,
                "out_dir": str(tmp_path / "ddp"),
                "labeled": str(tiny_data["labeled"]),
                "val": str(tiny_data["val"]),
                "report": str(tmp_path / "report.json"),
            }
        )
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(HERE / "run_training.py"),
            str(spec),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"report.rank{r}.json").read_text()) for r in (0, 1)]
    assert reports[0]["checksum"] == pytest.approx(reports[1]["checksum"], rel=1e-7)
    # 3 shards of 8 split 2:1 over the ranks -> each takes the shorter rank's 8 samples = 2 steps
    assert reports[0]["metrics"]["train/steps"] == reports[1]["metrics"]["train/steps"] == 2
    assert reports[0]["metrics"]["train/images_per_second"] > 0
    assert (tmp_path / "ddp" / CHECKPOINT_FILE).is_file()
