"""Bad benchmark files under `depth-distill zeroshot` and the `zeroshot_report` stage.

A benchmark file that cannot be read at all (a truncated NYU labeled file) refuses its
benchmark with one line naming the file, and the report says so; a bad entry (a frame of a
damaged NYU file, a KITTI split line naming missing files, a DIODE mask of the wrong shape) is
skipped, counted and named, and the counts are in the JSON and in the table's `n` column. A
run killed mid-way (KeyboardInterrupt, SIGKILL) leaves the previous report files whole.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

import depth_core.zeroshot.report as report_module
import depth_core.zeroshot.suite as suite_module
from depth_core.models import ModelConfig, build_model, save_checkpoint
from orchestration.commands import zeroshot as zeroshot_command
from orchestration.lineage.paths import default_paths
from orchestration.params.schema import parse_params
from orchestration.stages.base import StageContext
from orchestration.stages.registry import run_stage
from tests.helpers import REPO, TINY_VIT, run_command, smoke_raw
from tests.orchestration.stages.test_zeroshot import lineage_models  # noqa: F401

H, W = 24, 32
DRIVE = "2011_09_26_drive_0002_sync"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return save_checkpoint(path, build_model(ModelConfig(**TINY_VIT)).eval())


def stage_context(root, zeroshot: dict) -> StageContext:
    """The smoke profile at `root` with `zeroshot` as its zeroshot section."""
    raw = smoke_raw()
    raw["zeroshot"] = zeroshot
    return StageContext(
        params=parse_params(raw, root=root), paths=default_paths(root), pipeline_key="k"
    )


def _zeroshot(capsys, checkpoint, roots: dict, json_path=None) -> tuple[int, str, str]:
    argv = ["zeroshot", "--checkpoint", str(checkpoint), "--suite", *roots, "--quiet"]
    argv += [arg for name, root in roots.items() for arg in ("--root", f"{name}={root}")]
    argv += ["--device", "cpu"] + (["--json", str(json_path)] if json_path else [])
    code = run_command(zeroshot_command, argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _picture(k: int) -> np.ndarray:
    rows, cols = np.mgrid[0:H, 0:W]
    return np.stack([(k + 7 * rows + cols) % 256, 3 * cols, 5 * rows], -1).astype(np.uint8)


def _depth(k: int) -> np.ndarray:
    rows, cols = np.mgrid[0:H, 0:W]
    return (1.0 + 0.5 * k + 0.1 * rows + 0.02 * cols).astype(np.float32)


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


# ------------------------------------------------------------------ (4) NYU's labeled file


def _nyu(root, frames: int = 4):
    """NYU as published: a MATLAB v7.3 labeled file (gzip-compressed, one chunk per frame, as
    MATLAB writes it) and splits.mat. Returns the labeled file."""
    root.mkdir(parents=True)
    labeled = root / "nyu_depth_v2_labeled.mat"
    images = np.stack([_picture(k) for k in range(frames)]).transpose(0, 3, 2, 1)
    depths = np.stack([_depth(k) for k in range(frames)]).transpose(0, 2, 1)
    with h5py.File(labeled, "w", userblock_size=512) as handle:
        handle.create_dataset("images", data=images, chunks=(1, 3, W, H), compression="gzip")
        handle.create_dataset("depths", data=depths, chunks=(1, W, H), compression="gzip")
    with open(labeled, "r+b") as raw:
        raw.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116))
    tests = np.arange(1, frames + 1, dtype=np.float64).reshape(-1, 1)
    scipy.io.savemat(root / "splits.mat", {"testNdxs": tests})
    return labeled


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_a_truncated_nyu_file_refuses_nyu_in_one_line(checkpoint, tmp_path, capsys, keep):
    labeled = _nyu(tmp_path / "nyu")
    data = labeled.read_bytes()
    labeled.write_bytes(data[: int(len(data) * keep)])
    code, _, err = _zeroshot(capsys, checkpoint, {"nyu": labeled.parent})
    assert code == 1 and "Traceback" not in err
    named = [line for line in err.splitlines() if str(labeled) in line]
    assert (
        len(named) == 1
        and named[0].startswith("skipping nyu: cannot read")
        and "truncated" in named[0]
    )


def test_a_damaged_nyu_frame_is_skipped_counted_and_in_the_table(checkpoint, tmp_path, capsys):
    labeled = _nyu(tmp_path / "nyu")
    with h5py.File(labeled, "r") as handle:
        chunk = handle["depths"].id.get_chunk_info(2)
    data = bytearray(labeled.read_bytes())
    data[chunk.byte_offset : chunk.byte_offset + chunk.size] = bytes(chunk.size)
    labeled.write_bytes(bytes(data))
    code, out, _ = _zeroshot(capsys, checkpoint, {"nyu": labeled.parent}, tmp_path / "r.json")
    assert code == 0
    assert f"cannot read frame 3 of {labeled}" in out and "skipped 1 (corrupt 1)" in out
    assert "| 3 (1 skipped) |" in out
    nyu = json.loads((tmp_path / "r.json").read_text())[str(checkpoint)]["nyu"]
    assert nyu["n_images"] == 3 and nyu["skipped_by_code"] == {"corrupt": 1}


def test_the_stage_report_says_a_truncated_nyu_was_refused(lineage_models):  # noqa: F811
    root, roots, _ = lineage_models
    labeled = _nyu(root / "bench" / "nyu")
    labeled.write_bytes(labeled.read_bytes()[:5000])
    run_stage(
        "zeroshot_report", stage_context(root, {"roots": {**roots, "nyu": str(labeled.parent)}})
    )
    report = root / "reports/zeroshot_report"
    skipped = json.loads((report / "results.json").read_text())["skipped_benchmarks"]
    assert str(labeled) in skipped["nyu"]
    assert f"- skipped nyu: cannot read {labeled}" in (report / "summary.md").read_text()
    assert "| 3 (2 skipped) |" in (report / "summary.md").read_text()  # ScanNet's two bad frames
    metrics = json.loads((root / "metrics/zeroshot_report.json").read_text())
    assert metrics["n_skipped_benchmarks"] == 1


# ------------------------------------------------------------------ (5) KITTI's Eigen list


def _kitti(root, frames=(0, 1, 2), no_image=(3,), no_ground_truth=(4,)):
    lines = []
    for frame in (*frames, *no_image, *no_ground_truth):
        image = f"2011_09_26/{DRIVE}/image_02/data/{frame:010d}.png"
        depth = f"{DRIVE}/proj_depth/groundtruth/image_02/{frame:010d}.png"
        if frame not in no_image:
            _save(root / image, _picture(frame))
        if frame not in no_ground_truth:
            raw = np.round(_depth(frame) * 256).astype(np.uint16)
            _save(root / "data_depth_annotated" / "val" / depth, raw)
        lines.append(f"{image} {depth} 721.5377")
    (root / "eigen_test_files_with_gt.txt").write_text("\n".join(lines) + "\n")
    return root


def test_kitti_lines_naming_missing_files_are_skipped_counted_and_named(
    checkpoint, tmp_path, capsys
):
    root = _kitti(tmp_path / "kitti")
    code, out, _ = _zeroshot(capsys, checkpoint, {"kitti": root}, tmp_path / "r.json")
    assert code == 0 and "skipped 2 (missing 2)" in out
    assert f"image {root}/2011_09_26/{DRIVE}/image_02/data/0000000003.png does not exist" in out
    assert f"ground truth {DRIVE}/proj_depth/groundtruth/image_02/0000000004.png" in out
    assert "| 3 (2 skipped) |" in out
    kitti = json.loads((tmp_path / "r.json").read_text())[str(checkpoint)]["kitti"]
    assert kitti["n_images"] == 3 and kitti["n_skipped"] == 2
    assert kitti["skipped_by_code"] == {"missing": 2}


# ------------------------------------------------------------------ (6) DIODE's masks


def test_a_diode_mask_of_the_wrong_shape_is_skipped_and_counted(checkpoint, tmp_path, capsys):
    scan = tmp_path / "diode" / "val" / "indoors" / "scene_00019" / "scan_00183"
    for k in range(3):
        stem = scan / f"00019_00183_indoors_000_{k:03d}"
        _save(stem.with_suffix(".png"), _picture(k))
        np.save(f"{stem}_depth.npy", _depth(k)[:, :, None])
        np.save(f"{stem}_depth_mask.npy", np.ones((W, H) if k == 1 else (H, W), np.float32))
    code, out, _ = _zeroshot(capsys, checkpoint, {"diode": tmp_path / "diode"}, tmp_path / "r.json")
    assert code == 0 and "skipped 1 (corrupt 1)" in out
    assert f"00019_00183_indoors_000_001_depth_mask.npy is float32 ({W}, {H})" in out
    assert "| 2 (1 skipped) |" in out
    diode = json.loads((tmp_path / "r.json").read_text())[str(checkpoint)]["diode"]
    assert diode["n_images"] == 2 and diode["skipped_by_code"] == {"corrupt": 1}


# ------------------------------------------------------------------ (7) a run killed mid-way


def _files(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")}


def interrupting_reader(after: int, interrupt):
    """The ScanNet reader, calling `interrupt()` once `after` frames were read."""
    real = suite_module.READERS["scannet"]
    read = []

    def load(root, entry):
        if len(read) == after:
            interrupt()
        read.append(entry)
        return real.load(root, entry)

    return dataclasses.replace(real, load=load)


def _keyboard_interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["reading", "writing"])
def test_an_interrupted_stage_keeps_the_previous_report(lineage_models, monkeypatch, where):  # noqa: F811
    root, roots, _ = lineage_models
    ctx = stage_context(root, {"roots": roots})
    run_stage("zeroshot_report", ctx)
    report, metrics = root / "reports/zeroshot_report", root / "metrics/zeroshot_report.json"
    before, metrics_before = _files(report), metrics.read_bytes()
    if where == "reading":
        monkeypatch.setitem(
            suite_module.READERS, "scannet", interrupting_reader(2, _keyboard_interrupt)
        )
    else:  # summary.md and the JSON files are written, the chart is not
        monkeypatch.setattr(report_module, "plot_benchmarks", _keyboard_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_stage("zeroshot_report", ctx)
    assert _files(report) == before and metrics.read_bytes() == metrics_before
    assert [p.name for p in report.parent.iterdir()] == [report.name]


KILLED_STAGE = """
import os, signal, sys
import depth_core.zeroshot.report as report
from orchestration.stages.registry import run_stage
from tests.reliability.test_benchmark_files import stage_context
from pathlib import Path

report.plot_benchmarks = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
run_stage("zeroshot_report", stage_context(Path(sys.argv[1]), {"roots": eval(sys.argv[2])}))
"""


def test_a_stage_killed_while_writing_keeps_the_previous_report(lineage_models):  # noqa: F811
    root, roots, _ = lineage_models
    ctx = stage_context(root, {"roots": roots})
    run_stage("zeroshot_report", ctx)
    report = root / "reports/zeroshot_report"
    before = _files(report)
    args = [sys.executable, "-c", KILLED_STAGE, str(root), repr(roots)]
    killed = subprocess.run(
        args, check=False, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _files(report) == before
    run_stage("zeroshot_report", ctx)  # the next run removes what the killed one left
    assert [p.name for p in report.parent.iterdir()] == [report.name]


KILLED_COMMAND = """
import os, signal, sys
import depth_core.zeroshot.suite as suite
from orchestration.cli import run
from tests.reliability.test_benchmark_files import interrupting_reader

suite.READERS["scannet"] = interrupting_reader(2, lambda: os.kill(os.getpid(), signal.SIGKILL))
sys.argv = ["depth-distill", "zeroshot", *sys.argv[1:]]
run()
"""


def test_a_command_killed_mid_way_keeps_the_previous_json(checkpoint, tmp_path, capsys):
    from tests.zeroshot_fixtures import write_scannet

    root = write_scannet(tmp_path / "scannet")
    out = tmp_path / "r.json"
    assert _zeroshot(capsys, checkpoint, {"scannet": root}, out)[0] == 0
    before = out.read_bytes()
    args = ["--checkpoint", str(checkpoint), "--suite", "scannet", "--root", str(root)]
    args += ["--json", str(out), "--quiet", "--device", "cpu"]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_COMMAND, *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert out.read_bytes() == before and json.loads(before)
