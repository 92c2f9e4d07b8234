"""Depth models: timm backbones with a DPT head, and their safetensors checkpoints."""

from depth_core.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_config,
    read_checkpoint_metadata,
    save_checkpoint,
)
from depth_core.models.config import ModelConfig
from depth_core.models.depth_model import DepthModel, build_model, count_parameters

__all__ = [
    "CheckpointError",
    "DepthModel",
    "ModelConfig",
    "build_model",
    "count_parameters",
    "load_checkpoint",
    "read_checkpoint_config",
    "read_checkpoint_metadata",
    "save_checkpoint",
]
