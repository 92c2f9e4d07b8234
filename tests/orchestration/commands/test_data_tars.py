"""`data import-images --format webdataset` and `import-rgbd --output-format webdataset`:
the files' bytes into tars, indexable as a `source: webdataset` dataset."""

from __future__ import annotations

import tarfile

import numpy as np
from PIL import Image

from depth_core.data.dataset import ShardDataset
from depth_core.data.shards import list_shards
from depth_core.data.tar_indexer import scan_tars, write_tar_dataset
from depth_core.data.tar_shards.index import DecodeSpec
from orchestration.commands import data as command
from tests.depth_core.data.tar_fixtures import encode, photo
from tests.helpers import run_command


def _photos(folder, n=5):
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"shot.{i}.jpg").write_bytes(encode(photo(120 + 10 * i, 160, i), quality=90))
    (folder / "sub").mkdir()
    (folder / "sub" / "logo.png").write_bytes(encode(photo(50, 50, 9), "PNG"))
    (folder / "readme.txt").write_text("not a picture")
    return folder


def test_import_images_writes_the_files_as_they_are(tmp_path, capsys):
    src = _photos(tmp_path / "src")
    dst = tmp_path / "tars"
    argv = ["data", "import-images", str(src), str(dst), "--format", "webdataset"]
    assert run_command(command, [*argv, "--shard-size", "4", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "wrote 6 samples into 2 tars" in out
    urls = out.split("urls: ")[1].split()[0]
    assert urls == f"{dst}/images-{{000000..000001}}.tar"
    with tarfile.open(dst / "images-000000.tar") as tar:
        names = tar.getnames()
        assert names[0] == "shot_0.jpg"
        assert tar.extractfile(names[0]).read() == (src / "shot.0.jpg").read_bytes()
    result = scan_tars(urls, "unlabeled", DecodeSpec(32, 32), progress=False)
    write_tar_dataset(tmp_path / "dataset", result)
    ids = sorted(s["id"] for s in ShardDataset(tmp_path / "dataset", require_depth=False))
    assert ids == sorted([f"shot_{i}" for i in range(5)] + ["sub/logo"])


def test_tars_cost_the_encoded_bytes_not_the_decoded_pixels(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"p{i}.jpg").write_bytes(encode(photo(480, 640, i), quality=90))
    tars, npz = tmp_path / "tars", tmp_path / "npz"
    tar_argv = ["data", "import-images", str(src), str(tars), "--format", "webdataset"]
    npz_argv = ["data", "import-images", str(src), str(npz), "--height", "518", "--width", "518"]
    assert run_command(command, [*tar_argv, "--quiet"]) == 0
    assert run_command(command, [*npz_argv, "--quiet"]) == 0
    tar_bytes = sum(p.stat().st_size for p in tars.glob("*.tar"))
    npz_bytes = sum(p.stat().st_size for p in list_shards(npz))
    assert npz_bytes / 4 > 518 * 518 * 3 and tar_bytes < npz_bytes / 5


def test_import_rgbd_output_format_webdataset_pairs_depth(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(photo(12, 16, 1)).save(src / f"{name}.png")
        Image.fromarray(np.full((12, 16), 2500, np.uint16)).save(src / f"{name}_depth.png")
    argv = ["data", "import-rgbd", str(src), str(tmp_path / "tars")]
    assert run_command(command, [*argv, "--output-format", "webdataset", "--quiet"]) == 0
    urls = capsys.readouterr().out.split("urls: ")[1].split()[0]
    with tarfile.open(urls) as tar:
        assert tar.getnames()[:2] == ["a.png", "a.depth.png"]
    spec = DecodeSpec(6, 8, apply_exif=False, depth_scale=1000.0)
    write_tar_dataset(tmp_path / "labeled", scan_tars(urls, "labeled", spec, progress=False))
    sample = next(iter(ShardDataset(tmp_path / "labeled", shuffle=False)))
    assert np.allclose(sample["disparity"].numpy(), 1 / 2.5)
