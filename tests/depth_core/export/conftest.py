"""The default students' architectures at a small size, with random weights."""

import pytest
import torch

from depth_core.models import ModelConfig, build_model, save_checkpoint

# tf_efficientnet_lite1 head 64, lite0 head 32 and head 16 in the default profile; their
# smoke-profile widths here, at 64 px so every export takes seconds.
STUDENT_ARCHITECTURES = {
    "lite1": {"backbone": "tf_efficientnet_lite1", "features": 16, "img_size": 64},
    "lite0": {"backbone": "tf_efficientnet_lite0", "features": 16, "img_size": 64},
    "lite0_small": {"backbone": "tf_efficientnet_lite0", "features": 8, "img_size": 64},
}


def student_checkpoint(folder, name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(**STUDENT_ARCHITECTURES[name])).eval()
    return save_checkpoint(folder / f"{name}.safetensors", model), model


@pytest.fixture(scope="session")
def small_student(tmp_path_factory):
    """(checkpoint path, model) of the narrow Lite0 student."""
    return student_checkpoint(tmp_path_factory.mktemp("student"), "lite0_small")
