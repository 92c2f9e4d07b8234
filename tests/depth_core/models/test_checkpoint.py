import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from depth_core.models import checkpoint as checkpoint_module
from depth_core.models.checkpoint import (
    CHECKPOINT_FILE,
    CONFIG_KEY,
    CheckpointError,
    load_checkpoint,
    read_checkpoint_config,
    read_checkpoint_metadata,
    save_checkpoint,
)
from depth_core.models.depth_model import build_model


@pytest.fixture
def model(tiny_vit):
    torch.manual_seed(0)
    model = build_model(tiny_vit)
    with torch.no_grad():  # move away from the initialisation so a rebuilt fresh model would differ
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


def test_round_trip_rebuilds_an_identical_model(tmp_path, model):
    path = save_checkpoint(
        tmp_path / "sub" / CHECKPOINT_FILE, model, {"step": 7, "role": "teacher"}
    )
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [CHECKPOINT_FILE]  # no temp file left
    loaded, metadata = load_checkpoint(path)
    assert metadata == {"step": 7, "role": "teacher"}
    assert loaded.config == model.config
    assert not loaded.training
    images = torch.rand(2, 3, 40, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)


def test_conv_round_trip(tmp_path, tiny_convnext):
    model = build_model(tiny_convnext).eval()
    path = save_checkpoint(tmp_path / "conv.safetensors", model)
    loaded, metadata = load_checkpoint(path)
    assert metadata == {}
    images = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))


def test_metadata_and_config_are_readable_without_weights(tmp_path, model):
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"metrics": {"abs_rel": 0.25}})
    assert read_checkpoint_metadata(path) == {"metrics": {"abs_rel": 0.25}}
    assert read_checkpoint_config(path) == model.config


def test_checkpoint_does_not_need_the_pretrained_file(tmp_path, tiny_vit):
    weights = tmp_path / "backbone.safetensors"
    source = build_model(tiny_vit).backbone.model
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(weights))
    model = build_model(dict(tiny_vit, pretrained=str(weights)))
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    weights.unlink()
    loaded, _ = load_checkpoint(path)
    assert loaded.config.pretrained == str(weights)  # kept for provenance


def test_overwrite_is_atomic_replacement(tmp_path, model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, {"version": 1})
    save_checkpoint(path, model, {"version": 2})
    assert read_checkpoint_metadata(path) == {"version": 2}
    assert len(list(tmp_path.iterdir())) == 1


def test_unserialisable_metadata_is_rejected_before_writing(tmp_path, model):
    path = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="metadata"):
        save_checkpoint(path, model, {"handle": object()})
    assert not path.exists()


def test_non_finite_metadata_is_stored_as_null(tmp_path, model):
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"abs_rel": float("nan")})
    assert read_checkpoint_metadata(path) == {"abs_rel": None}


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, model, monkeypatch):
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"version": 1})

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a safetensors file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, {"version": 2})
    assert read_checkpoint_metadata(path) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match="nope.safetensors: checkpoint file not found"):
        load_checkpoint(missing)


def test_truncated_file(tmp_path, model):
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="m.safetensors") as error:
        load_checkpoint(path)
    assert isinstance(error.value, ValueError) and error.value.path == str(path)


def test_non_safetensors_file(tmp_path, model):
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="weights.pt"):
        load_checkpoint(path)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 5)
    with pytest.raises(CheckpointError, match="garbage.safetensors"):
        read_checkpoint_metadata(garbage)


def test_foreign_safetensors_without_our_config(tmp_path, model):
    path = tmp_path / "foreign.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match="foreign.safetensors: .*foreign checkpoint"):
        load_checkpoint(path)


def test_weights_that_do_not_match_the_config(tmp_path, model, tiny_vit):
    path = tmp_path / "mismatch.safetensors"
    other = dict(tiny_vit, features=8)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(path),
        metadata={CONFIG_KEY: json.dumps(other)},
    )
    with pytest.raises(CheckpointError, match="mismatch.safetensors: .*do not match"):
        load_checkpoint(path)


def test_invalid_config_in_header(tmp_path, model):
    path = tmp_path / "badconfig.safetensors"
    save_file(
        {"w": torch.zeros(1)},
        str(path),
        metadata={CONFIG_KEY: json.dumps({"backbone": "x", "nope": 1})},
    )
    with pytest.raises(CheckpointError, match="badconfig.safetensors: invalid model config"):
        load_checkpoint(path)


def test_checkpoint_saved_before_the_activation_choice_loads_with_the_relu_head(tmp_path, model):
    """Older checkpoints stored no output_activation: they were trained with the ReLU head."""
    path = save_checkpoint(tmp_path / "new.safetensors", model)
    assert read_checkpoint_config(path).output_activation == "softplus"
    stored = model.config.model_dump(mode="json")
    del stored["output_activation"]
    legacy = tmp_path / "legacy.safetensors"
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(legacy),
        metadata={CONFIG_KEY: json.dumps(stored)},
    )
    loaded, _ = load_checkpoint(legacy)
    assert loaded.config.output_activation == "relu"
    assert isinstance(loaded.head.output_conv2[-1], torch.nn.ReLU)


def test_the_same_weights_and_metadata_give_the_same_bytes(tmp_path, model):
    metadata = {"metrics": {"b": 2.0, "a": 1.0}, "step": 3}
    files = [save_checkpoint(tmp_path / f"{i}.safetensors", model, metadata) for i in range(4)]
    assert len({f.read_bytes() for f in files}) == 1
    loaded, read_back = load_checkpoint(files[0])
    assert read_back == metadata and loaded.config == model.config
