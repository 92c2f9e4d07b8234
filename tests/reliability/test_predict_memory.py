"""`depth-distill predict` under load: a 6000x4000 JPEG stays within a few full-size maps of memory,
and a folder of mixed sizes gives every output, each equal to predicting that file alone."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from depth_core.models import ModelConfig, build_model, save_checkpoint
from tests.helpers import REPO, TINY_VIT

_MEASURE = """
import json, resource, sys
from orchestration.cli import main
from depth_core.model_loading import load_depth_model
load_depth_model(sys.argv[1])  # imports and the model, so only predicting is measured
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sys.argv = ["depth-distill", "predict", "--checkpoint", sys.argv[1], "--input", sys.argv[2],
            "--output", sys.argv[3], "--device", "cpu", "--amp", "fp32", "--quiet"]
try:
    main()
except SystemExit:
    pass
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grown_mb": (after - before) / 1024}))
"""


def test_a_6000x4000_jpeg_predicts_within_600_mb(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "m.safetensors", build_model(ModelConfig(**TINY_VIT)))
    rows = np.linspace(0, 255, 4000, dtype=np.float32)[:, None, None]
    cols = np.linspace(0, 255, 6000, dtype=np.float32)[None, :, None]
    picture = np.broadcast_to((rows + cols) / 2, (4000, 6000, 3)).astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "big.jpg", quality=80)
    del picture
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEASURE,
            str(checkpoint),
            str(tmp_path / "big.jpg"),
            str(tmp_path / "out"),
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    grown = json.loads(proc.stdout.strip().splitlines()[-1])["grown_mb"]
    # The uint8 picture is 72 MB and its float32 disparity 96 MB; the old path peaked at 3.4 GB.
    assert grown < 600, f"predict grew by {grown:.0f} MB"
    assert np.load(tmp_path / "out" / "big.npy").shape == (4000, 6000)
    assert "not writable" not in proc.stderr


def test_a_folder_of_mixed_sizes_matches_single_calls_and_leaves_every_output(tmp_path):
    """What `depth-distill bench predict` measures at 5,000 images, at 24: every .npy and .png is
    there, none half-written, each equal to predicting that file alone."""
    from orchestration.commands import predict
    from tests.helpers import run_command

    checkpoint = save_checkpoint(tmp_path / "m.safetensors", build_model(ModelConfig(**TINY_VIT)))
    rng = np.random.default_rng(0)
    sizes = [(16, 16), (37, 53), (70, 20), (48, 64)]
    photos = tmp_path / "photos"
    for i in range(24):
        h, w = sizes[i % len(sizes)]
        (photos / f"part{i // 12}").mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        image.save(photos / f"part{i // 12}" / f"img{i:02d}.{'jpg' if i % 2 else 'png'}")
    common = ["--checkpoint", str(checkpoint), "--device", "cpu", "--amp", "fp32", "--quiet"]
    out = tmp_path / "out"
    argv = ["predict", *common, "--input", str(photos), "--output", str(out), "--batch-size", "5"]
    assert run_command(predict, argv) == 0
    inputs = sorted(photos.rglob("img*"))
    for path in inputs:
        stem = out / path.relative_to(photos).with_suffix("")
        assert stem.with_suffix(".npy").is_file() and stem.with_suffix(".png").is_file()
    assert not [p for p in out.rglob(".*")], "no temporaries left"
    for path in inputs[:6]:
        alone = tmp_path / "alone" / path.stem
        argv = ["predict", *common, "--input", str(path), "--output", str(alone)]
        assert run_command(predict, argv) == 0
        together = np.load(out / path.relative_to(photos).with_suffix(".npy"))
        np.testing.assert_allclose(
            together, np.load(alone / f"{path.stem}.npy"), rtol=1e-5, atol=1e-6
        )
