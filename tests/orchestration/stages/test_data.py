"""The data stages with `source: webdataset`: an index of the tars, never their pixels, and
corrupt members or tars skipped, named and counted."""

from __future__ import annotations

import json

import pytest

from depth_core.data.dataset import ShardDataset
from depth_core.data.manifest import read_summary
from depth_core.data.tar_shards.index import is_tar_dataset, read_tar_index
from orchestration.lineage import paths as L
from orchestration.lineage.fingerprints import content_digest
from orchestration.lineage.paths import default_paths
from orchestration.params.schema import ParamsError, parse_params
from orchestration.stages.base import StageContext
from orchestration.stages.data import (
    stage_labeled_data,
    stage_target_eval,
    stage_unlabeled_images,
)
from tests.depth_core.data.tar_fixtures import (
    encode,
    photo,
    photo_tars,
    rgbd_tars,
    truncate,
    write_tar,
)
from tests.helpers import smoke_raw


def _context(root, **sections) -> StageContext:
    raw = smoke_raw()
    for name, section in sections.items():
        raw["data"][name].update(section)
    return StageContext(params=parse_params(raw, root=root), paths=default_paths(root))


def _metrics(root, stage):
    return json.loads((root / "metrics" / f"{stage}.json").read_text())


def test_unlabeled_tars_are_indexed_and_bad_ones_skipped_and_counted(tmp_path):
    tars = tmp_path / "bucket"
    photo_tars(tars, 4, 3)
    write_tar(tars / "photos-000001.tar", [("ok.jpg", encode(photo(30, 40, 1))), ("x.jpg", b"?")])
    truncate(tars / "photos-000003.tar")
    urls = str(tars / "photos-{000000..000003}.tar")
    ctx = _context(tmp_path, unlabeled={"source": "webdataset", "urls": urls})
    stage_unlabeled_images(ctx)
    out = ctx.paths.out(L.UNLABELED)
    assert is_tar_dataset(out) and not (out / "shards").exists()
    assert [t.index for t in read_tar_index(out).tars] == [0, 1, 2]
    metrics = _metrics(tmp_path, "unlabeled_images")
    assert metrics["n_images"] == 3 + 1 + 3
    assert (metrics["n_skipped"], metrics["n_tars"], metrics["n_tars_skipped"]) == (2, 4, 1)
    skipped = read_summary(out)["skipped"]
    assert {item["file"] for item in skipped} == {
        f"{tars}/photos-000001.tar#x",
        f"{tars}/photos-000003.tar",
    }
    assert content_digest(out) is not None
    sample = next(iter(ShardDataset(out, require_depth=False)))
    assert sample["image"].shape == (3, 96, 128)  # the profile's working_size


def test_labeled_and_target_tars_are_split_and_read_with_their_depth_scale(tmp_path):
    rgbd_tars(tmp_path / "bucket", 2, 6)
    urls = [str(tmp_path / "bucket" / f"rgbd-{k:06d}.tar") for k in range(2)]
    section = {"source": "webdataset", "urls": urls, "working_size": [15, 20]}
    ctx = _context(tmp_path, labeled={**section, "val_fraction": 0.25}, target_eval=section)
    stage_labeled_data(ctx)
    stage_target_eval(ctx)
    metrics = _metrics(tmp_path, "labeled_data")
    assert (metrics["n_train"], metrics["n_val"], metrics["n_skipped"]) == (9, 3, 0)
    assert _metrics(tmp_path, "target_eval")["n_images"] == 12
    val = list(ShardDataset(ctx.paths.out(L.LABELED_VAL), shuffle=False))
    assert val[0]["disparity"][val[0]["mask"]].max() <= 1.0  # 1-5 m (raw mm / 1000)


@pytest.mark.parametrize("section", ["labeled", "unlabeled", "target_eval"])
def test_webdataset_without_urls_names_the_key(section):
    raw = smoke_raw()
    raw["data"][section]["source"] = "webdataset"
    with pytest.raises(ParamsError, match=rf"data\.{section}\.urls must be set"):
        parse_params(raw)


def test_urls_with_another_source_are_refused():
    raw = smoke_raw()
    raw["data"]["unlabeled"]["urls"] = "/data/x.tar"
    with pytest.raises(ParamsError, match=r"data\.unlabeled\.urls is read only with"):
        parse_params(raw)
