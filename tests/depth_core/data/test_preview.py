from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depth_core.data.manifest import finalize_dataset
from depth_core.data.preview import contact_sheet
from depth_core.data.shards import build_sharded

H, W = 16, 24


def _build(root, kind, n=10, shard_size=4, parameters=None):
    def make(index, start, count):
        k = np.arange(start, start + count)
        arrays = {"id": np.array([f"{kind}{i}" for i in k])}
        if kind != "pseudo":
            image = np.zeros((count, H, W, 3), dtype=np.uint8)
            image[..., 1] = 255  # green pictures
            arrays["image"] = image
        if kind == "labeled":
            rows = np.arange(H, dtype=np.float32)[None, :, None]
            arrays["depth"] = np.broadcast_to(1.0 + rows, (count, H, W)).copy()
            arrays["mask"] = np.ones((count, H, W), dtype=bool)
        if kind == "pseudo":
            rows = np.arange(H, dtype=np.float32)[None, :, None]
            arrays["disparity"] = np.broadcast_to(1.0 + rows, (count, H, W)).astype(np.float16)
        return arrays

    build_sharded(root / kind, n, shard_size, make, progress=False)
    finalize_dataset(root / kind, parameters=parameters)
    return root / kind


@pytest.mark.parametrize("kind", ["labeled", "unlabeled", "pseudo"])
def test_contact_sheet_for_every_kind(tmp_path, kind):
    dataset = _build(tmp_path, kind)
    out = contact_sheet(dataset, tmp_path / "sheets" / f"{kind}.png", n=6, columns=3)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    zoom = 96 // H  # small images are enlarged to a readable size
    panels = 1 if kind != "labeled" else 2
    assert sheet.shape[0] == 2 * (H * zoom + 12) + 3 * 4  # two rows of three cells
    assert sheet.shape[1] == 3 * (panels * W * zoom + (panels - 1) * 4) + 4 * 4
    is_green = (sheet[..., 1] == 255) & (sheet[..., 0] == 0) & (sheet[..., 2] == 0)
    colourful = (sheet.max(axis=-1).astype(int) - sheet.min(axis=-1)) > 60
    if kind == "pseudo":
        assert not is_green.any() and colourful.mean() > 0.3
    else:
        assert is_green.mean() > (0.3 if kind == "labeled" else 0.6)
    if kind == "labeled":
        assert (colourful & ~is_green).mean() > 0.2  # the colourised depth panels
    assert not list(out.parent.glob(".*.tmp"))


def test_pseudo_sheet_pairs_images_and_picks_spread_samples(tmp_path):
    _build(tmp_path, "unlabeled")
    pseudo = _build(tmp_path, "pseudo")
    out = contact_sheet(
        pseudo, tmp_path / "p.png", n=4, columns=4, images_dir=tmp_path / "unlabeled"
    )
    sheet = np.asarray(Image.open(out).convert("RGB"))
    is_green = (sheet[..., 1] == 255) & (sheet[..., 0] == 0) & (sheet[..., 2] == 0)
    assert 0.25 < is_green.mean() < 0.5  # image beside disparity in every cell
    big = contact_sheet(pseudo, tmp_path / "all.png", n=100, columns=5)
    assert Image.open(big).size[1] == 2 * (H * (96 // H) + 12) + 3 * 4  # only the 10 samples exist
    with pytest.raises(ValueError):
        contact_sheet(pseudo, tmp_path / "x.png", n=0)
    with pytest.raises(FileNotFoundError):
        contact_sheet(tmp_path / "missing", tmp_path / "x.png")


def test_pseudo_sheet_finds_the_unlabeled_set_its_summary_records(tmp_path):
    unlabeled = _build(tmp_path, "unlabeled")
    pseudo = _build(tmp_path, "pseudo", parameters={"unlabeled_dir": str(unlabeled)})
    sheet = np.asarray(
        Image.open(contact_sheet(pseudo, tmp_path / "p.png", n=4, columns=4)).convert("RGB")
    )
    is_green = (sheet[..., 1] == 255) & (sheet[..., 0] == 0) & (sheet[..., 2] == 0)
    assert 0.25 < is_green.mean() < 0.5


def test_a_failed_save_keeps_the_old_sheet_and_no_temp_file(tmp_path, monkeypatch):
    dataset = _build(tmp_path, "labeled")
    sheets = tmp_path / "sheets"
    out = contact_sheet(dataset, sheets / "labeled.png", n=2)
    before = out.read_bytes()

    def crash(self, fp, format=None, **params):
        Path(fp).write_bytes(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        contact_sheet(dataset, out, n=4)
    assert out.read_bytes() == before
    assert [p.name for p in sheets.iterdir()] == ["labeled.png"]
