"""The CUDA path: losses, training, pseudo-labels and checkpoints on a GPU match the CPU.

Skipped where no GPU is present (CI); run on a GPU machine with `pytest tests/depth_core`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depth_core.data.manifest import finalize_dataset
from depth_core.data.shards import list_shards, read_shard, shard_path, write_shard
from depth_core.losses import depth_loss
from depth_core.models import ModelConfig, build_model, load_checkpoint, save_checkpoint
from depth_core.pseudo_label import generate_pseudo_labels
from depth_core.training import TrainConfig, train
from tests.depth_core.training.conftest import make_dataset
from tests.helpers import TINY_VIT

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("method", ["lstsq", "median"])
def test_losses_match_the_cpu(method):
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(4, 48, 64, generator=g) + 0.1
    target = torch.rand(4, 48, 64, generator=g) + 0.1
    mask = torch.rand(4, 48, 64, generator=g) > 0.2
    cpu_total, cpu = depth_loss(pred, target, mask, method=method, return_parts=True)
    gpu_total, gpu = depth_loss(
        pred.cuda(), target.cuda(), mask.cuda(), method=method, return_parts=True
    )
    torch.testing.assert_close(gpu_total.cpu(), cpu_total, rtol=1e-4, atol=1e-5)
    for name in ("ssi", "gradient"):
        torch.testing.assert_close(gpu[name].cpu(), cpu[name], rtol=1e-4, atol=1e-5)


def test_bf16_training_on_cuda_learns_and_loads_on_cpu(tmp_path):
    labeled = make_dataset(tmp_path / "labeled", n=32, shard_size=16)
    val = make_dataset(tmp_path / "val", n=8, shard_size=8, seed=5, prefix="v")
    cfg = TrainConfig.model_validate(
        {
            "model": TINY_VIT,
            "epochs": 3,
            "batch_size": 8,
            "precision": "auto",
            "device": "cuda",
            "optim": {"warmup_steps": 2, "lr": 5e-4},
            "n_samples": 0,
            "checkpoint_every": 4,
        }
    )
    result = train(cfg, tmp_path / "run", [labeled], {"val": val})
    assert result.metrics["train/bf16"] == (1.0 if torch.cuda.is_bf16_supported() else 0.0)
    losses = [row["train/loss"] for row in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    model, _ = load_checkpoint(result.checkpoint, map_location="cpu")
    trained = result.model.state_dict()
    assert all(torch.equal(v, trained[k].cpu()) for k, v in model.state_dict().items())


def test_pseudo_labels_on_cuda_match_the_cpu(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    unlabeled = tmp_path / "unlabeled"
    for k in range(2):
        write_shard(
            shard_path(unlabeled, k),
            {
                "id": np.array([f"u{i}" for i in range(6 * k, 6 * k + 6)]),
                "image": images[6 * k : 6 * k + 6],
            },
        )
    finalize_dataset(unlabeled)
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "t.safetensors", build_model(ModelConfig(**TINY_VIT)))
    labels = {}
    for device, amp in (("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "auto")):
        out = tmp_path / f"{device}-{amp}"
        stats = generate_pseudo_labels(
            checkpoint,
            unlabeled,
            out,
            batch_size=5,
            device=device,
            amp=amp,
            flip_tta=True,
            progress=False,
        )
        assert stats["nan_count"] == 0 and stats["complete"] == 1
        labels[(device, amp)] = np.concatenate(
            [read_shard(p)["disparity"].astype(np.float32) for p in list_shards(out)]
        )
    np.testing.assert_allclose(labels["cuda", "fp32"], labels["cpu", "fp32"], atol=2e-3)
    # bf16 keeps about three significant digits; labels are scaled to a peak of 1
    np.testing.assert_allclose(labels["cuda", "auto"], labels["cpu", "fp32"], atol=3e-2)
