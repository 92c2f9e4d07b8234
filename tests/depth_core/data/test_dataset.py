import weakref

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from depth_core.data import dataset as dataset_module
from depth_core.data.dataset import (
    MixedDataset,
    PseudoLabelDataset,
    PseudoLabelMismatchError,
    Segment,
    ShardDataset,
    load_arrays,
    rank_runs,
    worker_skips,
)
from depth_core.data.manifest import finalize_dataset
from depth_core.data.shards import build_sharded, shard_path, write_shard

N_LABELED, N_UNLABELED, SHARD = 23, 14, 4
H, W = 4, 5


def _labeled_shard(index, start, count):
    k = np.arange(start, start + count)
    depth = np.broadcast_to((1.0 + k)[:, None, None], (count, H, W)).astype(np.float32).copy()
    depth[:, 0, 0] = 0.0  # invalid corner
    depth[:, 0, 1] = np.nan
    mask = np.isfinite(depth) & (depth > 0)
    mask[:, 0, 2] = False  # valid number, masked out
    image = np.broadcast_to(
        (k % 256).astype(np.uint8)[:, None, None, None], (count, H, W, 3)
    ).copy()
    image[:, :, :, 1] = 255
    return {"id": np.array([f"l{i:03d}" for i in k]), "image": image, "depth": depth, "mask": mask}


def _unlabeled_shard(index, start, count):
    k = np.arange(start, start + count)
    image = np.broadcast_to(
        (k * 10 % 256).astype(np.uint8)[:, None, None, None], (count, H, W, 3)
    ).copy()
    return {"id": np.array([f"u{i:03d}" for i in k]), "image": image}


def _pseudo_shard(index, start, count):
    k = np.arange(start, start + count)
    disparity = np.broadcast_to((0.5 + k)[:, None, None], (count, H, W)).astype(np.float16).copy()
    disparity[:, 1, 1] = np.nan
    disparity[:, 1, 2] = 0.0
    disparity[:, 1, 3] = -1.0
    return {"id": np.array([f"u{i:03d}" for i in k]), "disparity": disparity}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    out = {}
    for name, n, make in (
        ("labeled", N_LABELED, _labeled_shard),
        ("unlabeled", N_UNLABELED, _unlabeled_shard),
        ("pseudo", N_UNLABELED, _pseudo_shard),
    ):
        build_sharded(root / name, n, SHARD, make, progress=False)
        finalize_dataset(root / name)
        out[name] = root / name
    return out


def _ids(dataset):
    return [sample["id"] for sample in dataset]


def test_labeled_sample_format(dirs):
    sample = next(iter(ShardDataset(dirs["labeled"], shuffle=False)))
    assert set(sample) == {"image", "disparity", "mask", "pseudo", "id"}
    assert sample["id"] == "l000" and sample["pseudo"] is False
    image, disparity, mask = sample["image"], sample["disparity"], sample["mask"]
    assert image.dtype == torch.float32 and image.shape == (3, H, W) and image.is_contiguous()
    assert 0.0 <= image.min() and image.max() <= 1.0 and image[1].eq(1.0).all()
    assert disparity.dtype == torch.float32 and disparity.shape == (H, W)
    assert mask.dtype == torch.bool and mask.shape == (H, W)
    assert not mask[0, :3].any() and mask.sum() == H * W - 3
    assert (disparity[~mask] == 0).all() and torch.allclose(disparity[mask], torch.tensor(1.0))


def test_order_is_deterministic_per_seed_and_epoch(dirs):
    natural = _ids(ShardDataset(dirs["labeled"], shuffle=False))
    assert natural == [f"l{i:03d}" for i in range(N_LABELED)]
    first = _ids(ShardDataset(dirs["labeled"], seed=1))
    assert first == _ids(ShardDataset(dirs["labeled"], seed=1))
    assert sorted(first) == natural and first != natural
    other_epoch = ShardDataset(dirs["labeled"], seed=1)
    other_epoch.set_epoch(1)
    assert sorted(_ids(other_epoch)) == natural and _ids(other_epoch) != first
    assert _ids(ShardDataset(dirs["labeled"], seed=2)) != first


@pytest.mark.parametrize("world_size,num_workers", [(1, 3), (2, 1), (2, 2), (3, 4)])
def test_ranks_and_workers_cover_every_sample_once(dirs, monkeypatch, world_size, num_workers):
    seen, lengths = [], []
    for rank in range(world_size):
        data = ShardDataset(dirs["labeled"], seed=5, rank=rank, world_size=world_size, epoch=2)
        rank_ids = []
        for worker in range(num_workers):
            monkeypatch.setattr(dataset_module, "_worker_layout", lambda w=worker: (w, num_workers))
            rank_ids += _ids(data)
        assert len(rank_ids) == len(data)
        lengths.append(len(rank_ids))
        seen += rank_ids
    assert sorted(seen) == [f"l{i:03d}" for i in range(N_LABELED)]
    assert max(lengths) - min(lengths) <= 1  # no rank waits for a longer one


def test_rank_runs_split_shards_at_the_boundaries():
    # three shards of 8 visited in order 2, 0, 1 over two ranks: 12 samples each
    assert rank_runs([8, 8, 8], [2, 0, 1], 2) == [
        [Segment(2, 0, 8), Segment(0, 0, 4)],
        [Segment(0, 4, 8), Segment(1, 0, 8)],
    ]
    assert rank_runs([5, 3], [0, 1], 1) == [[Segment(0, 0, 5), Segment(1, 0, 3)]]
    runs = rank_runs([4, 4, 4, 4, 3], [4, 3, 2, 1, 0], 3)  # 19 samples -> 6, 6, 7
    assert [sum(s.size for s in run) for run in runs] == [6, 6, 7]
    assert rank_runs([2], [0], 3) == [[], [Segment(0, 0, 1)], [Segment(0, 1, 2)]]


def test_augmentation_seeds_do_not_depend_on_the_number_of_ranks(dirs):
    def seeds(world_size):
        seen = {}

        def transform(sample):
            seen[sample["id"]] = sample["seed"]
            return sample

        for rank in range(world_size):
            list(
                ShardDataset(
                    dirs["labeled"], seed=3, rank=rank, world_size=world_size, transform=transform
                )
            )
        return seen

    single = seeds(1)
    assert len(single) == N_LABELED
    assert seeds(2) == single and seeds(3) == single


def test_dataloader_workers_and_resume(dirs):
    def loader_ids(skip, drop_last=False):
        data = ShardDataset(
            dirs["labeled"], seed=3, epoch=1, skip=skip, batch_size=3, drop_last=drop_last
        )
        loader = DataLoader(data, batch_size=3, num_workers=2, drop_last=drop_last)
        return [i for batch in loader for i in batch["id"]]

    full = loader_ids(0)
    assert sorted(full) == [f"l{i:03d}" for i in range(N_LABELED)]
    for skip in (3, 6, 9, 18, 21):
        assert loader_ids(skip) == full[skip:]
    dropped = loader_ids(0, drop_last=True)
    assert loader_ids(6, drop_last=True) == dropped[6:]


def test_resume_in_process_at_any_position(dirs):
    data = ShardDataset(dirs["labeled"], seed=4, shards_in_memory=2)
    data.set_epoch(3)
    full = _ids(data)
    for skip in (1, 7, 8, 22, 23):
        data.set_epoch(3, skip=skip)
        assert _ids(data) == full[skip:]
    data.set_epoch(3, skip=24)
    with pytest.raises(ValueError, match="exceeds"):
        _ids(data)


def test_worker_skips_replays_round_robin_batches():
    # worker 0 batches: 2, 2, 1; worker 1 batches: 2, 1 -> order w0 w1 w0 w1 w0
    assert worker_skips(2, [5, 3], batch_size=2) == ([2, 0], 1)
    assert worker_skips(4, [5, 3], batch_size=2) == ([2, 2], 0)
    assert worker_skips(7, [5, 3], batch_size=2) == ([4, 3], 0)
    assert worker_skips(8, [5, 3], batch_size=2) == ([5, 3], 1)
    assert worker_skips(6, [5, 3], batch_size=2, drop_last=True) == ([4, 2], 1)
    assert worker_skips(5, [9], batch_size=None) == ([5], 0)
    with pytest.raises(ValueError, match="batch_size"):
        worker_skips(2, [5, 3], batch_size=None)


def test_bounded_memory_only_k_shards_live(dirs, monkeypatch):
    state = {"live": 0, "max_live": 0, "reads": 0}
    real_read = dataset_module.read_shard

    def counting_read(path, keys=None):
        arrays = real_read(path, keys)
        state["reads"] += 1
        state["live"] += 1
        state["max_live"] = max(state["max_live"], state["live"])
        weakref.finalize(arrays["id"], lambda: state.__setitem__("live", state["live"] - 1))
        return arrays

    monkeypatch.setattr(dataset_module, "read_shard", counting_read)
    data = ShardDataset(dirs["labeled"], seed=0, shards_in_memory=2)
    count = 0
    for _ in data:
        count += 1
        assert state["live"] <= 2
    assert count == N_LABELED
    assert state["reads"] == 6  # each shard read exactly once
    assert state["max_live"] <= 2


def test_transform_hook_gets_a_reproducible_seed(dirs):
    seen = []

    def transform(sample):
        seen.append((sample["id"], sample["seed"]))
        sample = dict(sample)
        sample["image"] = sample["image"] * 0
        return sample

    data = ShardDataset(dirs["labeled"], seed=9, transform=transform)
    samples = list(data)
    assert all("seed" not in s for s in samples) and all(s["image"].eq(0).all() for s in samples)
    first = dict(seen)
    seen.clear()
    list(ShardDataset(dirs["labeled"], seed=9, transform=transform))
    assert dict(seen) == first and len(set(first.values())) == N_LABELED
    seen.clear()
    data.set_epoch(1)
    list(data)
    assert dict(seen) != first  # new epoch, new augmentations


def test_pseudo_label_dataset(dirs):
    data = PseudoLabelDataset(dirs["unlabeled"], dirs["pseudo"], shuffle=False)
    samples = list(data)
    assert [s["id"] for s in samples] == [f"u{i:03d}" for i in range(N_UNLABELED)]
    sample = samples[3]
    assert sample["pseudo"] is True and sample["disparity"].dtype == torch.float32
    # NaN and negative labels are masked; 0 is the teacher's "farthest" and stays a label.
    assert not sample["mask"][1, 1] and not sample["mask"][1, 3]
    assert sample["mask"][1, 2] and sample["disparity"][1, 2] == 0
    assert sample["mask"].sum() == H * W - 2
    assert torch.isfinite(sample["disparity"]).all() and sample["disparity"][1, 1] == 0
    assert sample["disparity"][1, 3] == 0
    expected = torch.full((H, W), 3.5)
    expected[1, 1:4] = 0.0
    assert torch.allclose(sample["disparity"], expected)
    assert torch.allclose(sample["image"], torch.full((3, H, W), 30 / 255))


def test_pseudo_label_mismatch_is_a_clear_error(dirs, tmp_path):
    bad = tmp_path / "bad_pseudo"
    build_sharded(bad, N_UNLABELED, SHARD, _pseudo_shard, progress=False)
    arrays = _pseudo_shard(1, 4, 4)
    arrays["id"][2] = "u999"
    write_shard(shard_path(bad, 1), arrays)
    finalize_dataset(bad)
    with pytest.raises(PseudoLabelMismatchError, match="shard-000001.npz.*u006.*u999"):
        PseudoLabelDataset(dirs["unlabeled"], bad)
    shard_path(bad, 3).unlink()
    with pytest.raises(PseudoLabelMismatchError, match=r"missing \[3\]"):
        PseudoLabelDataset(dirs["unlabeled"], bad)
    with pytest.raises(ValueError, match="not pseudo-labels"):
        PseudoLabelDataset(dirs["unlabeled"], dirs["labeled"])


def test_mixed_interleaves_at_ratio(dirs):
    labeled = ShardDataset(dirs["labeled"], seed=1)
    pseudo = PseudoLabelDataset(dirs["unlabeled"], dirs["pseudo"], seed=1)
    mixed = MixedDataset(labeled, pseudo, ratio=(1, 2))
    samples = list(mixed)
    flags = [s["pseudo"] for s in samples]
    assert flags[:6] == [False, True, True, False, True, True]
    pseudo_ids = [s["id"] for s in samples if s["pseudo"]]
    assert sorted(pseudo_ids) == [f"u{i:03d}" for i in range(N_UNLABELED)]  # one pass, each once
    assert len(samples) == mixed.num_samples() == N_UNLABELED + 7
    assert [s["id"] for s in MixedDataset(labeled, pseudo, ratio=(1, 2))] == [
        s["id"] for s in samples
    ]
    for skip in (1, 5, 12):
        mixed.set_epoch(0, skip=skip)
        assert [s["id"] for s in mixed] == [s["id"] for s in samples][skip:]

    # labeled cycles when it is the short stream
    many_labeled = list(MixedDataset(labeled, pseudo, ratio=(3, 1)))
    labeled_ids = [s["id"] for s in many_labeled if not s["pseudo"]]
    assert len(labeled_ids) == 3 * N_UNLABELED and len(set(labeled_ids)) == N_LABELED

    pseudo_only = list(MixedDataset(None, pseudo, ratio=(0, 1)))
    assert all(s["pseudo"] for s in pseudo_only) and len(pseudo_only) == N_UNLABELED
    labeled_only = list(MixedDataset(labeled, None, ratio=(1, 0)))
    assert not any(s["pseudo"] for s in labeled_only) and len(labeled_only) == N_LABELED
    with pytest.raises(ValueError, match="pseudo"):
        MixedDataset(labeled, None, ratio=(1, 2))


def test_mixed_with_dataloader_workers(dirs):
    labeled = ShardDataset(dirs["labeled"], seed=2)
    pseudo = PseudoLabelDataset(dirs["unlabeled"], dirs["pseudo"], seed=2)
    loader = DataLoader(
        MixedDataset(labeled, pseudo, ratio=(1, 2), batch_size=3), batch_size=3, num_workers=2
    )
    batches = list(loader)
    assert all(batch["pseudo"].tolist() == [False, True, True] for batch in batches[:-2])
    pseudo_ids = [i for b in batches for i, p in zip(b["id"], b["pseudo"].tolist()) if p]
    assert sorted(pseudo_ids) == [f"u{i:03d}" for i in range(N_UNLABELED)]
    full = [i for b in batches for i in b["id"]]
    resumed = DataLoader(
        MixedDataset(labeled, pseudo, ratio=(1, 2), batch_size=3, skip=9),
        batch_size=3,
        num_workers=2,
    )
    assert [i for b in resumed for i in b["id"]] == full[9:]


def test_mixed_pseudo_pass_is_split_exactly_across_ranks(dirs):
    seen, lengths = [], []
    for rank in range(2):
        common = {"seed": 4, "rank": rank, "world_size": 2}
        mixed = MixedDataset(
            ShardDataset(dirs["labeled"], **common),
            PseudoLabelDataset(dirs["unlabeled"], dirs["pseudo"], **common),
            ratio=(1, 2),
        )
        pseudo_ids = [s["id"] for s in mixed if s["pseudo"]]
        lengths.append(len(pseudo_ids))
        seen += pseudo_ids
    assert sorted(seen) == [f"u{i:03d}" for i in range(N_UNLABELED)] and lengths == [7, 7]


def test_load_arrays_and_kind_errors(dirs, tmp_path):
    arrays = load_arrays(dirs["labeled"])
    assert arrays["image"].shape == (N_LABELED, H, W, 3) and arrays["depth"].dtype == np.float32
    assert arrays["id"].tolist() == [f"l{i:03d}" for i in range(N_LABELED)]
    limited = load_arrays(dirs["labeled"], limit=6, keys=["id", "depth"])
    assert set(limited) == {"id", "depth"} and limited["id"].tolist()[-1] == "l005"
    with pytest.raises(ValueError, match="unlabeled"):
        ShardDataset(dirs["unlabeled"])
    assert (
        next(iter(ShardDataset(dirs["unlabeled"], require_depth=False, shuffle=False)))[
            "mask"
        ].sum()
        == 0
    )
    build_sharded(tmp_path / "unfinished", 4, 4, _labeled_shard, progress=False)
    with pytest.raises(ValueError, match="incomplete"):
        ShardDataset(tmp_path / "unfinished")
    assert len(list(ShardDataset(tmp_path / "unfinished", allow_incomplete=True))) == 4
