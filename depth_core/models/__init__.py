"""Depth models: timm backbones with a DPT head, their safetensors checkpoints, and one loader
that also reads local Hugging Face depth-estimation folders."""

from depth_core.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_config,
    read_checkpoint_metadata,
    save_checkpoint,
)
from depth_core.models.config import ModelConfig
from depth_core.models.depth_model import DepthModel, build_model, count_parameters
from depth_core.models.loading import check_model_path, load_depth_model, model_kind

__all__ = [
    "CheckpointError",
    "DepthModel",
    "ModelConfig",
    "build_model",
    "check_model_path",
    "count_parameters",
    "load_checkpoint",
    "load_depth_model",
    "model_kind",
    "read_checkpoint_config",
    "read_checkpoint_metadata",
    "save_checkpoint",
]
