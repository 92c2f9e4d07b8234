"""Hugging Face teacher folders as users hold them: cut-off weights, a config of another model,
a missing or contradictory preprocessor file, pickled weights (a malicious pickle too) and a
folder replaced in place. A bad file is named in one line before any output is touched."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from depth_core.model_loading import check_model_path, load_depth_model
from depth_core.models.checkpoint import CheckpointError
from orchestration.commands import predict
from orchestration.lineage import paths as L
from orchestration.lineage.fingerprints import upstream_entry
from orchestration.lineage.paths import default_paths
from orchestration.stages.base import StageContext
from orchestration.stages.registry import run_stage
from tests.helpers import (
    TINY_TRANSFORMER,
    run_command,
    save_tiny_depth_anything,
    save_tiny_dpt,
    smoke_params,
)

pytest.importorskip("transformers")

DATA_STAGES = ("labeled_data", "unlabeled_images", "target_eval")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return save_tiny_depth_anything(tmp_path_factory.mktemp("hf") / "da-good")


@pytest.fixture
def folder(good, tmp_path) -> Path:
    """A fresh copy of a loadable folder, for a test to spoil."""
    return Path(shutil.copytree(good, tmp_path / "da"))


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _context(root: Path, teacher_path: Path) -> StageContext:
    """The smoke lineage on the CPU with `teacher_path` as a transformers teacher (params are
    validated once, when the folder was still good)."""
    params = smoke_params()
    teacher = params.teacher.model_copy(
        update={"source": "transformers", "path": str(teacher_path)}
    )
    labels = params.pseudo_labels.model_copy(
        update={"amp": "fp32", "flip_tta": False, "scales": [1.0]}
    )
    params = params.model_copy(
        update={"device": "cpu", "teacher": teacher, "pseudo_labels": labels}
    )
    return StageContext(params, default_paths(root), pipeline_key="k")


def _outputs_left_alone(ctx: StageContext) -> list[Path]:
    """Marker files in the teacher's and the pseudo-labels' outputs, which a refusal must keep."""
    markers = [ctx.paths.out(L.TEACHER) / "keep.txt", ctx.paths.out(L.PSEUDO_LABELS) / "keep.txt"]
    for marker in markers:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("made by an earlier run")
    return markers


@pytest.mark.parametrize("cut", ["half", "10 bytes"])
def test_truncated_weights_are_named_before_anything_is_written(folder, tmp_path, cut, capsys):
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    ctx = _context(tmp_path / "project", folder)
    markers = _outputs_left_alone(ctx)
    weights.write_bytes(data[: len(data) // 2 if cut == "half" else 10])
    named = r"model\.safetensors: truncated or unreadable safetensors file"
    with pytest.raises(CheckpointError, match=named):
        check_model_path(folder, "transformers")
    with pytest.raises(ValueError, match=rf"teacher\.path .*{named}"):
        run_stage("teacher", ctx)
    assert all(m.exists() for m in markers)

    out = tmp_path / "predicted"
    argv = ["predict", "--checkpoint", str(folder), "--input", str(tmp_path), "--output", str(out)]
    assert run_command(predict, [*argv, "--device", "cpu", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(weights) in err and "truncated" in err
    assert not out.exists()


def test_a_teacher_damaged_after_install_clears_no_pseudo_labels(folder, tmp_path):
    """The pseudo-label stage reads the installed copy in models/teacher/: damaged there (a
    disk error, an edit), it is named before the labels are cleared, not after."""
    ctx = _context(tmp_path / "project", folder)
    markers = _outputs_left_alone(ctx)
    installed = ctx.paths.out(L.TEACHER) / L.TRANSFORMERS_DIR
    shutil.copytree(folder, installed)
    weights = installed / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:10])
    with pytest.raises(CheckpointError, match=r"transformers/model\.safetensors: truncated"):
        run_stage("pseudo_labels", ctx)
    assert all(m.exists() for m in markers)


def _segmenter(folder: Path) -> Path:
    from transformers import DPTConfig, DPTForSemanticSegmentation

    config = DPTConfig(
        **TINY_TRANSFORMER, image_size=32, patch_size=16, backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 16, 32, 64], fusion_hidden_size=16, num_labels=3,
    )  # fmt: skip
    DPTForSemanticSegmentation(config).save_pretrained(folder)
    return folder


def _classifier(folder: Path) -> Path:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(**TINY_TRANSFORMER, image_size=32, patch_size=16)
    ViTForImageClassification(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    "make, found",
    [
        (_segmenter, "model_type 'dpt', architectures ['DPTForSemanticSegmentation']"),
        (_classifier, "model_type 'vit', architectures ['ViTForImageClassification']"),
    ],
    ids=["dpt-segmentation", "vit-classifier"],
)
def test_a_config_of_another_model_is_refused_naming_what_was_found(tmp_path, make, found):
    folder = make(tmp_path / "other")
    accepted = (
        "accepted: depth_anything (DepthAnythingForDepthEstimation), dpt (DPTForDepthEstimation)"
    )
    with pytest.raises(CheckpointError) as raised:
        check_model_path(folder, "transformers")
    message = str(raised.value)
    assert f"config.json: {found}" in message and accepted in message


def test_a_config_whose_architecture_contradicts_its_model_type_is_refused(tmp_path):
    folder = save_tiny_dpt(tmp_path / "dpt")
    _edit_json(folder / "config.json", architectures=["DepthAnythingForDepthEstimation"])
    with pytest.raises(CheckpointError, match=r"config\.json: model_type 'dpt', architectures"):
        check_model_path(folder, "transformers")


def test_a_missing_processor_file_runs_on_stated_defaults(folder):
    (folder / "preprocessor_config.json").unlink()
    check_model_path(folder, "transformers")  # nothing wrong with what is there
    with pytest.warns(UserWarning, match=r"preprocessor_config\.json not found: running at 56x56"):
        _, metadata = load_depth_model(folder)
    assert metadata["image_mean"] == (0.5, 0.5, 0.5) and metadata["img_size"] == 56


def test_a_square_only_dpt_without_processor_file_runs_any_image_shape(tmp_path):
    """transformers' ViT-backed DPT reshapes its tokens to a square: the stated default is a
    square, not the kept aspect that would crash on a 48 x 64 image."""
    dpt = save_tiny_dpt(tmp_path / "dpt")
    with pytest.warns(UserWarning, match=r"not found: running at 32x32 \(square"):
        model, _ = load_depth_model(dpt)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 48, 64)).shape == (1, 48, 64)
    (dpt / "preprocessor_config.json").write_text(json.dumps({"keep_aspect_ratio": True}))
    with pytest.raises(CheckpointError, match=r"keep_aspect_ratio True cannot work: .*square"):
        load_depth_model(dpt)


@pytest.mark.parametrize(
    "key, value",
    [
        ("ensure_multiple_of", 0),
        ("size", {"height": 0, "width": 0}),
        ("size", {"longest": 56}),
        ("image_mean", [0.5, 0.5]),
        ("image_std", [0.2, 0.0, 0.2]),
        ("keep_aspect_ratio", "no"),
        ("resample", 1),
        ("rescale_factor", 0),
        ("image_processor_type", "SegformerImageProcessor"),
    ],
)
def test_a_processor_value_that_cannot_work_is_refused_by_file_and_key(folder, key, value):
    _edit_json(folder / "preprocessor_config.json", **{key: value})
    with pytest.raises(CheckpointError, match=rf"preprocessor_config\.json: {key} "):
        check_model_path(folder, "transformers")


def test_a_processor_multiple_that_contradicts_the_patch_fails_before_the_output_is_touched(
    folder, tmp_path
):
    _edit_json(folder / "preprocessor_config.json", ensure_multiple_of=10)
    with pytest.raises(CheckpointError, match=r"ensure_multiple_of 10 .*patch size 14"):
        load_depth_model(folder)
    ctx = _context(tmp_path / "project", folder)
    markers = _outputs_left_alone(ctx)
    with pytest.raises(CheckpointError, match=r"preprocessor_config\.json: ensure_multiple_of"):
        run_stage("teacher", ctx)
    assert all(m.exists() for m in markers)


class _TouchesAFile:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _as_pickle(folder: Path, extra: dict | None = None) -> Path:
    """The folder with its weights as pytorch_model.bin (a torch.save pickle), no safetensors."""
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save({**state, **(extra or {})}, folder / "pytorch_model.bin")
    return folder / "pytorch_model.bin"


def test_pickled_weights_load_as_tensors_only(folder, good):
    _as_pickle(folder)
    check_model_path(folder, "transformers")
    model, _ = load_depth_model(folder)
    reference, _ = load_depth_model(good)
    x = torch.rand(1, 3, 42, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_a_malicious_pickle_runs_no_code_and_is_named(folder, tmp_path):
    marker = tmp_path / "code-ran"
    weights = _as_pickle(folder, {"payload": _TouchesAFile(marker)})
    assert not marker.exists()
    for load in (
        lambda: check_model_path(folder, "transformers"),
        lambda: load_depth_model(folder),
    ):
        with pytest.raises(CheckpointError) as raised:
            load()
        assert str(weights) in str(raised.value) and "refused without running it" in str(
            raised.value
        )
        assert "\n" not in str(raised.value)
    official = tmp_path / "depth_anything_v2_vits.pth"
    torch.save({"payload": _TouchesAFile(marker)}, official)
    with pytest.raises(CheckpointError, match=r"depth_anything_v2_vits\.pth: holds pickled code"):
        check_model_path(official, "checkpoint")
    assert not marker.exists(), "unpickling ran the payload"


@pytest.fixture
def lineage(tmp_path, monkeypatch) -> Path:
    """A smoke lineage's data, with its own MLflow store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "project"
    ctx = _context(root, tmp_path)
    for stage in DATA_STAGES:
        run_stage(stage, ctx)
    return root


def test_a_folder_replaced_in_place_relabels_and_retrains(lineage, tmp_path):
    teacher = save_tiny_depth_anything(tmp_path / "teachers" / "da")
    ctx = _context(lineage, teacher)
    first = run_stage("teacher", ctx).metrics["checkpoint_md5"]
    assert run_stage("pseudo_labels", ctx).metrics["n_shards_written"] > 0
    labels = ctx.paths.out(L.PSEUDO_LABELS)
    seen_by_students = upstream_entry(labels)
    assert run_stage("teacher", ctx).metrics["checkpoint_md5"] == first
    assert run_stage("pseudo_labels", ctx).metrics["n_shards_written"] == 0, "nothing changed"

    shutil.rmtree(teacher)
    save_tiny_depth_anything(teacher, seed=1)  # same path, other weights
    assert run_stage("teacher", ctx).metrics["checkpoint_md5"] != first
    relabeled = run_stage("pseudo_labels", ctx).metrics
    assert relabeled["n_shards_skipped"] == 0 and relabeled["n_shards_written"] > 0
    assert upstream_entry(labels) != seen_by_students, "students must see new pseudo-labels"

    shutil.rmtree(teacher)
    save_tiny_dpt(teacher)  # same path, another model altogether
    installed = ctx.paths.out(L.TEACHER) / L.TRANSFORMERS_DIR
    run_stage("teacher", ctx)
    assert json.loads((installed / "config.json").read_text())["model_type"] == "dpt"
    assert run_stage("pseudo_labels", ctx).metrics["n_shards_skipped"] == 0


def test_an_authors_file_is_installed_under_the_name_that_says_its_version(tmp_path):
    """Version and metric range come from the released file name: a copy renamed model.pth
    loaded a V2 metric file as a V1 relative one, and a renamed file is another model."""
    from orchestration.stages import teacher_source
    from orchestration.stages.base import prepare_output

    metric_v2 = tmp_path / "depth_anything_v2_metric_hypersim_vits.pth"
    torch.save({}, metric_v2)
    renamed = tmp_path / "depth_anything_vits14.pth"
    shutil.copyfile(metric_v2, renamed)  # same bytes, the name of a V1 relative file
    out_dir = tmp_path / "models" / "teacher"
    for given in (metric_v2, renamed):
        prepare_output(out_dir, teacher_source.fingerprint(given, "checkpoint"))
        installed = teacher_source.install(given, "checkpoint", out_dir)
        assert installed.name == given.name
        assert teacher_source.teacher_model_path(out_dir) == installed
