import pytest
from pydantic import ValidationError

from depth_core.models.config import ModelConfig, default_out_channels


def test_defaults_follow_depth_anything_small():
    config = ModelConfig(backbone="vit_small_patch16_224")
    assert config.features == 64
    assert config.out_channels == (48, 96, 192, 384)
    assert config.img_size == 128
    assert config.pretrained is None
    assert config.layer_indices is None


def test_out_channels_derive_from_features_unless_given():
    assert (
        ModelConfig(backbone="resnet18", features=16).out_channels
        == default_out_channels(16)
        == (12, 24, 48, 96)
    )
    assert ModelConfig(backbone="resnet18", out_channels=[8, 8, 8, 8]).out_channels == (8, 8, 8, 8)


def test_json_round_trip_is_exact():
    config = ModelConfig(
        backbone="vit_tiny_patch16_224", features=32, layer_indices=[1, 3, 5, 7], patch_size=8
    )
    assert ModelConfig.model_validate_json(config.model_dump_json()) == config


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"backbone": "resnet18", "colour": 1}, "colour"),
        ({"backbone": "resnet18", "features": "wide"}, "features"),
        ({"backbone": "resnet18", "out_channels": [8, 8, 8]}, "out_channels"),
        ({"backbone": "resnet18", "layer_indices": [5, 2, 8, 11]}, "layer_indices"),
        ({"backbone": "hf-hub:timm/vit_small_patch16_224"}, "backbone"),
        ({"backbone": "resnet18", "drop_path_rate": 1.5}, "drop_path_rate"),
    ],
)
def test_invalid_values_name_the_field(bad, field):
    with pytest.raises(ValidationError, match=field):
        ModelConfig(**bad)
