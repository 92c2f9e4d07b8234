"""Tiny datasets and models so training tests run in seconds on two CPU cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from depth_core.data.manifest import finalize_dataset
from depth_core.data.shards import shard_path, write_shard
from tests.helpers import TINY_VIT


def scene_arrays(n: int, size: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """Ground-plane-like scenes: depth grows towards the top row, brightness follows depth."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(1.0, 0.0, size, dtype=np.float32)[:, None]
    tilt = rng.uniform(0.5, 2.0, size=(n, 1, 1)).astype(np.float32)
    depth = (1.0 + 4.0 * rows[None] * tilt) * np.ones((n, size, size), np.float32)
    mask = np.ones_like(depth, dtype=bool)
    mask[:, :2] = False  # a strip of invalid "sky"
    depth[~mask] = 0.0
    shade = np.where(mask, 1.0 / np.maximum(depth, 1e-3), 0.1)
    noise = rng.uniform(0.0, 0.15, size=(n, size, size, 3))
    image = np.clip((shade[..., None] * 0.8 + noise) * 255, 0, 255).astype(np.uint8)
    return {"image": image, "depth": depth, "mask": mask}


def make_dataset(
    root: Path,
    n: int,
    shard_size: int,
    kind: str = "labeled",
    size: int = 32,
    seed: int = 0,
    prefix: str = "s",
) -> Path:
    """A complete sharded dataset directory (labeled, or unlabeled = images only)."""
    arrays = scene_arrays(n, size, seed)
    for k, start in enumerate(range(0, n, shard_size)):
        stop = min(n, start + shard_size)
        shard = {
            "id": np.array([f"{prefix}{i:05d}" for i in range(start, stop)]),
            "image": arrays["image"][start:stop],
        }
        if kind == "labeled":
            shard["depth"] = arrays["depth"][start:stop]
            shard["mask"] = arrays["mask"][start:stop]
        write_shard(shard_path(root, k), shard)
    finalize_dataset(root, parameters={"test": True})
    return root


def make_pseudo(root: Path, unlabeled: Path, seed: int = 1) -> Path:
    """Pseudo-labels for `unlabeled` without a teacher: the scenes' true disparity, float16."""
    from depth_core.data.shards import list_shards, read_shard

    offset = 0
    for path in list_shards(unlabeled):
        ids = read_shard(path, ["id"])["id"]
        n = len(ids)
        arrays = scene_arrays(offset + n, seed=seed)
        disparity = np.where(arrays["mask"], 1.0 / np.maximum(arrays["depth"], 1e-3), 0.0)[offset:]
        write_shard(
            root / "shards" / path.name, {"id": ids, "disparity": disparity.astype(np.float16)}
        )
        offset += n
    finalize_dataset(root)
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_data")
    labeled = make_dataset(root / "labeled", n=24, shard_size=8)
    val = make_dataset(root / "val", n=6, shard_size=6, seed=5, prefix="v")
    unlabeled = make_dataset(
        root / "unlabeled", n=24, shard_size=8, kind="unlabeled", seed=1, prefix="u"
    )
    pseudo = make_pseudo(root / "pseudo", unlabeled, seed=1)
    return {"labeled": labeled, "val": val, "unlabeled": unlabeled, "pseudo": pseudo}


@pytest.fixture
def tiny_vit() -> dict:
    return dict(TINY_VIT)


@pytest.fixture(autouse=True)
def one_thread():
    """Two shared cores: one intra-op thread avoids oversubscription stalls (10x slower steps)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
