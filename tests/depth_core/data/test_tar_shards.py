"""Tar-backed datasets: index, decode, stream, pseudo-label pairing and skipped members."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depth_core.data import dataset as dataset_module
from depth_core.data.dataset import (
    PseudoLabelDataset,
    PseudoLabelMismatchError,
    ShardDataset,
    load_arrays,
)
from depth_core.data.input_shards import input_shards
from depth_core.data.manifest import finalize_dataset, read_manifest, read_summary
from depth_core.data.preview import contact_sheet
from depth_core.data.shards import shard_path, write_shard
from depth_core.data.tar_indexer import (
    expand_urls,
    scan_tars,
    validation_keys,
    write_tar_dataset,
)
from depth_core.data.tar_shards.decode import decode_image
from depth_core.data.tar_shards.index import DecodeSpec, read_tar_index
from tests.depth_core.data.tar_fixtures import (
    encode,
    photo,
    photo_tars,
    rgbd_tars,
    truncate,
    write_tar,
)

SPEC = DecodeSpec(24, 32)


def index_photos(tmp_path, n_tars=3, per_tar=3, spec=SPEC):
    photo_tars(tmp_path / "tars", n_tars, per_tar)
    pattern = str(tmp_path / "tars" / f"photos-{{000000..{n_tars - 1:06d}}}.tar")
    result = scan_tars(pattern, "unlabeled", spec, progress=False)
    write_tar_dataset(tmp_path / "unlabeled", result)
    return tmp_path / "unlabeled", result


def test_brace_patterns_and_lists_expand_in_order():
    assert expand_urls("/d/x-{000..002}.tar") == ["/d/x-000.tar", "/d/x-001.tar", "/d/x-002.tar"]
    assert expand_urls(["/a.tar", "/b-{1..2}.tar"]) == ["/a.tar", "/b-1.tar", "/b-2.tar"]


def test_index_lists_every_tar_and_key_and_no_pixels(tmp_path):
    dataset, _ = index_photos(tmp_path)
    index = read_tar_index(dataset)
    assert [t.index for t in index.tars] == [0, 1, 2]
    assert index.tars[0].keys == ("t0/img0", "t0/img1", "t0/img2")
    summary = read_summary(dataset)
    assert summary["kind"] == "unlabeled" and summary["storage"] == "webdataset"
    assert (summary["n_samples"], summary["height"], summary["width"]) == (9, 24, 32)
    manifest = read_manifest(dataset)
    assert set(manifest["orig_width"]) == {60, 70, 80} and manifest["bytes"].min() > 0
    assert not (dataset / "shards").exists()
    assert sum(f.stat().st_size for f in dataset.iterdir()) < 20_000


def test_streamed_images_are_the_decoded_and_fitted_tar_members(tmp_path):
    dataset, _ = index_photos(tmp_path)
    samples = list(ShardDataset(dataset, shuffle=False, require_depth=False))
    assert [s["id"] for s in samples][:3] == ["t0/img0", "t0/img1", "t0/img2"]
    assert all(s["image"].shape == (3, 24, 32) for s in samples)
    expected, _ = decode_image(encode(photo(40, 60, 0)), SPEC)
    got = (samples[0]["image"] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(got, expected)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_close_to_a_full_decode():
    big = encode(photo(800, 1200, 3), quality=95)
    reduced, original = decode_image(big, SPEC)
    assert original == (800, 1200) and reduced.shape == (24, 32, 3)
    from depth_core.data.image_io import fit_image

    full = fit_image(photo(800, 1200, 3), 24, 32).astype(np.float32)
    assert np.abs(reduced.astype(np.float32) - full).mean() < 3.0


def test_workers_split_by_whole_tar_and_read_every_key_once(tmp_path):
    dataset, _ = index_photos(tmp_path, n_tars=4, per_tar=2)
    data = ShardDataset(dataset, shuffle=True, seed=3, require_depth=False)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=2)
    ids = [s["id"] for s in loader]
    assert sorted(ids) == sorted(f"t{k}/img{i}" for k in range(4) for i in range(2))
    ranks = [ShardDataset(dataset, require_depth=False, rank=r, world_size=2) for r in (0, 1)]
    tars = [{s["id"].split("/")[0] for s in rank} for rank in ranks]
    assert not tars[0] & tars[1] and len(tars[0] | tars[1]) == 4


def test_ranks_split_a_tar_at_the_boundary_and_decode_only_their_part(tmp_path, monkeypatch):
    dataset, _ = index_photos(tmp_path, n_tars=3, per_tar=3)  # 9 images: 4 + 5 over 2 ranks
    decoded = []
    real_read = dataset_module.read_tar

    def counting_read(entry, *args, **kwargs):
        decoded.extend(entry.keys)
        return real_read(entry, *args, **kwargs)

    monkeypatch.setattr(dataset_module, "read_tar", counting_read)
    ranks = [
        [s["id"] for s in ShardDataset(dataset, seed=2, require_depth=False, rank=r, world_size=2)]
        for r in (0, 1)
    ]
    assert sorted(len(ids) for ids in ranks) == [4, 5]
    assert sorted(ranks[0] + ranks[1]) == sorted(f"t{k}/img{i}" for k in range(3) for i in range(3))
    assert sorted(decoded) == sorted(ranks[0] + ranks[1])  # no member decoded twice


def test_pipe_urls_stream_through_a_command(tmp_path):
    photo_tars(tmp_path / "tars", 1, 2)
    result = scan_tars(f"pipe:cat {tmp_path}/tars/photos-000000.tar", "unlabeled", SPEC)
    write_tar_dataset(tmp_path / "piped", result)
    assert [s["id"] for s in ShardDataset(tmp_path / "piped", require_depth=False)] != []


def _label_like_the_teacher(unlabeled, out_dir):
    """Pseudo shard k for input shard k, the label a function of the image's pixels."""
    for shard in input_shards(unlabeled):
        ids, images = shard.read()
        disparity = images.astype(np.float32).mean(axis=-1) + 1.0
        write_shard(shard_path(out_dir, shard.index), {"id": ids, "disparity": disparity})
    finalize_dataset(out_dir, parameters={"unlabeled_dir": str(unlabeled)})


def test_input_shards_and_students_see_the_same_pixels(tmp_path):
    dataset, _ = index_photos(tmp_path)
    shards = input_shards(dataset)
    assert [(s.index, s.source.endswith(f"photos-{s.index:06d}.tar")) for s in shards] == [
        (0, True),
        (1, True),
        (2, True),
    ]
    ids, images = shards[1].read()
    assert list(ids) == list(shards[1].read_ids()) and images.shape == (3, 24, 32, 3)
    assert images.dtype == np.uint8
    _label_like_the_teacher(dataset, tmp_path / "pseudo")
    samples = list(PseudoLabelDataset(dataset, tmp_path / "pseudo", shuffle=True, seed=1))
    assert len(samples) == 9
    for sample in samples:
        pixels = (sample["image"] * 255).round()
        assert torch.allclose(sample["disparity"], pixels.mean(0) + 1.0, atol=0.1)
    contact_sheet(tmp_path / "pseudo", tmp_path / "sheet.png", n=4)


def test_a_key_mismatch_is_an_error_naming_the_tar(tmp_path):
    dataset, _ = index_photos(tmp_path)
    _label_like_the_teacher(dataset, tmp_path / "pseudo")
    path = shard_path(tmp_path / "pseudo", 2)
    write_shard(path, {"id": np.array(["x", "y", "z"]), "disparity": np.ones((3, 24, 32))})
    with pytest.raises(PseudoLabelMismatchError, match="photos-000002.tar"):
        PseudoLabelDataset(dataset, tmp_path / "pseudo")


def test_a_corrupt_member_and_a_truncated_tar_are_skipped_named_and_counted(tmp_path):
    photo_tars(tmp_path / "tars", 3, 3)
    bad = tmp_path / "tars" / "photos-000001.tar"
    write_tar(bad, [("a.jpg", encode(photo(30, 30, 1))), ("notes.jpg", b"not an image")])
    truncate(tmp_path / "tars" / "photos-000002.tar")
    pattern = str(tmp_path / "tars" / "photos-{000000..000002}.tar")
    result = scan_tars(pattern, "unlabeled", SPEC, progress=False)
    summary = write_tar_dataset(tmp_path / "unlabeled", result)
    assert summary["n_skipped"] == 2 and summary["n_tars_skipped"] == 1
    files = {item["file"]: item["reason"] for item in summary["skipped"]}
    assert "not a readable image" in files[f"{bad}#notes"]
    assert "unreadable tar" in files[str(tmp_path / "tars" / "photos-000002.tar")]
    assert [t.index for t in read_tar_index(tmp_path / "unlabeled").tars] == [0, 1]
    ids = [s["id"] for s in ShardDataset(tmp_path / "unlabeled", require_depth=False)]
    assert sorted(ids) == ["a", "t0/img0", "t0/img1", "t0/img2"]


def test_a_tar_changed_since_indexing_is_an_error_naming_it(tmp_path):
    dataset, _ = index_photos(tmp_path)
    changed = tmp_path / "tars" / "photos-000001.tar"
    write_tar(changed, [("other.jpg", encode(photo(30, 30, 1)))])
    data = ShardDataset(dataset, shuffle=False, require_depth=False)
    with pytest.raises(ValueError, match="photos-000001.tar"):
        list(data)


def test_labeled_rgbd_tars_give_depth_scaled_and_split_by_key(tmp_path):
    rgbd_tars(tmp_path / "tars")
    spec = DecodeSpec(15, 20, apply_exif=False, depth_scale=1000.0)
    result = scan_tars(str(tmp_path / "tars" / "rgbd-{000000..000001}.tar"), "labeled", spec)
    val = validation_keys(result, 0.25, seed=0)
    write_tar_dataset(tmp_path / "train", result, lambda k: k not in val)
    write_tar_dataset(tmp_path / "val", result, val.__contains__, skipped=[])
    assert len(val) == 2
    train = list(ShardDataset(tmp_path / "train", shuffle=False))
    assert len(train) == 6 and not {s["id"] for s in train} & val
    by_id = {s["id"]: s for s in train} | {
        s["id"]: s for s in ShardDataset(tmp_path / "val", shuffle=False)
    }
    npy = by_id["r0_0"]  # 2000 raw / 1000 = 2 m everywhere
    assert torch.allclose(npy["disparity"], torch.full((15, 20), 0.5)) and npy["mask"].all()
    png = by_id["r0_1"]
    assert not png["mask"][0, 0] and png["disparity"][png["mask"]].max() <= 1.0
    arrays = load_arrays(tmp_path / "train", limit=5)
    assert arrays["depth"].shape == (5, 15, 20) and arrays["image"].dtype == np.uint8
    assert read_summary(tmp_path / "train")["mean_valid_fraction"] > 0.9
    contact_sheet(tmp_path / "train", tmp_path / "sheet.png", n=3)
