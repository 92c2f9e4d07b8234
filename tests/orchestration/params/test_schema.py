from pathlib import Path

import pytest
import yaml

from orchestration.params.profiles import profile_params
from orchestration.params.schema import ParamsError, apply_override, load_params
from tests.helpers import smoke_params, smoke_raw

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("profile", ["default", "smoke", "gpu"])
def test_shipped_profiles_validate(profile):
    params = profile_params(REPO, profile)
    assert len(params.agreement.experts) >= 2
    assert params.students


def _write(tmp_path, data) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _base() -> dict:
    return smoke_raw()


def test_unknown_key_is_named(tmp_path):
    data = _base()
    data["teacher"]["epoch"] = 3
    with pytest.raises(ParamsError, match=r"teacher\.epoch"):
        load_params(_write(tmp_path, data))


def test_wrong_type_is_named(tmp_path):
    data = _base()
    data["teacher"]["epochs"] = "ten"
    with pytest.raises(ParamsError, match=r"teacher\.epochs"):
        load_params(_write(tmp_path, data))


def test_nested_unknown_key_in_a_student(tmp_path):
    data = _base()
    name = next(iter(data["students"]))
    data["students"][name]["model"]["backbon"] = "resnet18"
    with pytest.raises(ParamsError, match=rf"students\.{name}\.model\.backbon"):
        load_params(_write(tmp_path, data))


@pytest.mark.parametrize("scales", [[], [0.0], [-1.0, 1.0], [5.0]])
def test_bad_pseudo_label_scales_are_named(tmp_path, scales):
    data = _base()
    data["pseudo_labels"]["scales"] = scales
    with pytest.raises(ParamsError, match=r"pseudo_labels\.scales"):
        load_params(_write(tmp_path, data))


def test_expert_must_name_a_student(tmp_path):
    data = _base()
    data["agreement"]["experts"] = ["teacher", "student:nope"]
    with pytest.raises(ParamsError, match="student:nope"):
        load_params(_write(tmp_path, data))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("teacher: [unclosed")
    with pytest.raises(ParamsError, match="bad.yaml"):
        load_params(bad)


def test_overrides_are_typed(tmp_path):
    params = load_params(
        _write(tmp_path, _base()), ["teacher.epochs=5", "teacher.loss.method=median"]
    )
    assert params.teacher.epochs == 5
    assert params.teacher.loss.method == "median"
    raw = {}
    apply_override(raw, "a.b.c=[1, 2]")
    assert raw == {"a": {"b": {"c": [1, 2]}}}
    with pytest.raises(ParamsError, match="KEY=VALUE"):
        apply_override(raw, "nonsense")


def test_folder_source_needs_folder_settings(tmp_path):
    data = _base()
    data["data"]["labeled"]["source"] = "folder"
    with pytest.raises(ParamsError, match=r"data\.labeled\.folder must be set"):
        load_params(_write(tmp_path, data))


def test_labeled_format_is_validated_and_reaches_the_importer(tmp_path):
    data = _base()
    data["data"]["labeled"].update(source="folder", format="nyu", folder={"path": "rgbd"})
    with pytest.raises(ParamsError, match=r"data\.labeled\.format: .*unknown format 'nyu'"):
        load_params(_write(tmp_path, data))

    data["data"]["labeled"]["format"] = "vkitti2"
    labeled = load_params(_write(tmp_path, data)).data.labeled
    config = labeled.import_config()
    assert config.format == "vkitti2" and config.path == "rgbd"

    data["data"]["labeled"]["folder"]["depth_scale"] = 100.0
    with pytest.raises(ParamsError, match=r"data\.labeled\.folder\.depth_scale: only for format"):
        load_params(_write(tmp_path, data))

    data["data"]["labeled"]["folder"] = {"path": "rgbd", "format": "hypersim"}
    with pytest.raises(ParamsError, match=r"data\.labeled\.folder\.format .*contradicts"):
        load_params(_write(tmp_path, data))


def _fake_hf_folder(folder: Path) -> Path:
    """Enough of a Hugging Face folder for params validation (which reads config.json only)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        '{"model_type": "depth_anything", "architectures": ["DepthAnythingForDepthEstimation"]}'
    )
    return folder


def test_teacher_source_defaults_to_train_and_ignores_path(tmp_path):
    params = smoke_params()
    assert params.teacher.source == "train" and params.teacher.path is None
    data = _base()
    data["teacher"]["path"] = "nowhere"
    assert load_params(_write(tmp_path, data)).teacher.path == "nowhere"
    assert "source" not in params.teacher.train_config().model_dump()


@pytest.mark.parametrize("source", ["checkpoint", "transformers"])
def test_existing_teacher_needs_a_path(tmp_path, source):
    data = _base()
    data["teacher"]["source"] = source
    with pytest.raises(ParamsError, match=r"teacher\.path.*required"):
        load_params(_write(tmp_path, data))
    data["teacher"]["path"] = "models/nowhere"
    with pytest.raises(ParamsError, match=r"teacher\.path 'models/nowhere'.*does not exist"):
        load_params(_write(tmp_path, data))


def test_teacher_path_is_relative_to_params_and_of_the_right_kind(tmp_path, monkeypatch):
    import torch

    from depth_core.models import ModelConfig, build_model, save_checkpoint
    from tests.helpers import TINY_VIT

    _fake_hf_folder(tmp_path / "teachers" / "da")
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "teachers" / "t.safetensors", build_model(ModelConfig(**TINY_VIT)))
    monkeypatch.chdir(REPO)  # relative to params.yaml's folder, not the working directory
    data = _base()
    data["teacher"].update(source="transformers", path="teachers/da")
    assert load_params(_write(tmp_path, data)).teacher.path == "teachers/da"
    data["teacher"].update(source="checkpoint", path="teachers/t.safetensors")
    assert load_params(_write(tmp_path, data)).teacher.source == "checkpoint"
    data["teacher"].update(source="checkpoint", path="teachers/da")
    with pytest.raises(ParamsError, match=r"teacher\.path 'teachers/da'.*folder"):
        load_params(_write(tmp_path, data))
    data["teacher"].update(source="transformers", path="teachers/t.safetensors")
    with pytest.raises(ParamsError, match=r"teacher\.path 'teachers/t\.safetensors'.*not a folder"):
        load_params(_write(tmp_path, data))
    (tmp_path / "teachers" / "empty").mkdir()
    data["teacher"].update(source="transformers", path="teachers/empty")
    with pytest.raises(ParamsError, match=r"teacher\.path.*config\.json"):
        load_params(_write(tmp_path, data))


@pytest.mark.parametrize("profile", ["default", "gpu"])
def test_the_lineage_rests_on_pretrained_encoders_with_the_largest_as_teacher(profile):
    """Depth Anything's recipe: every model starts from a pretrained encoder, the teacher's is
    the largest, and students are smaller models with freshly initialised heads."""
    from depth_core.models.backbones import probe_backbone

    params = profile_params(REPO, profile)
    models = {"teacher": params.teacher.model}
    models.update({n: cfg.model for n, cfg in params.students.items()})
    assert all(m.pretrained for m in models.values()), {n: m.pretrained for n, m in models.items()}

    def encoder_size(model) -> int:
        return sum(p.numel() for p in probe_backbone(model.backbone).parameters())

    teacher = encoder_size(models.pop("teacher"))
    assert all(encoder_size(m) < teacher for m in models.values())


@pytest.mark.parametrize(
    ("experts", "named"),
    [
        (["teacher", "studnet:vit"], r"agreement\.experts\[1\] 'studnet:vit': not 'teacher'"),
        (["teacher", "vit"], r"agreement\.experts\[1\] 'vit': not 'teacher'"),
        (["teacher", "teacher"], r"agreement\.experts\[1\] 'teacher': the same expert"),
    ],
)
def test_expert_typos_and_duplicates_fail_at_validation(tmp_path, experts, named):
    data = _base()
    data["agreement"]["experts"] = experts
    with pytest.raises(ParamsError, match=named):
        load_params(_write(tmp_path, data))


def test_an_expert_checkpoint_path_is_relative_to_params(tmp_path):
    (tmp_path / "other.safetensors").write_bytes(b"x")
    data = _base()
    data["agreement"]["experts"] = ["teacher", "other.safetensors"]
    assert load_params(_write(tmp_path, data)).agreement.experts[1] == "other.safetensors"


def test_zeroshot_benchmarks_are_unset_by_default_and_null_means_unset(tmp_path):
    assert smoke_params().zeroshot.roots == {}
    data = _base()
    data["zeroshot"] = None
    assert load_params(_write(tmp_path, data)).zeroshot.roots == {}


@pytest.mark.parametrize(
    ("block", "named"),
    [
        ({"roots": {"nyuv2": "/data/nyu"}}, r"zeroshot\.roots.*'nyuv2' is no benchmark.*nyu"),
        ({"roots": {"nyu": "x"}, "splits": {"diode": "y"}}, r"splits\.diode: only nyu, kitti"),
        ({"roots": {"nyu": "x"}, "splits": {"kitti": "y"}}, r"splits\.kitti: no roots\.kitti"),
        ({"roots": {"nyu": "x"}, "max_images": 0}, r"zeroshot\.max_images"),
        ({"root": {"nyu": "x"}}, r"zeroshot\.root"),
    ],
)
def test_zeroshot_mistakes_are_named(tmp_path, block, named):
    data = _base()
    data["zeroshot"] = block
    with pytest.raises(ParamsError, match=named):
        load_params(_write(tmp_path, data))
