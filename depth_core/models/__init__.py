"""Depth models: timm backbones with a DPT head, their safetensors checkpoints, and local
Hugging Face depth-estimation folders wrapped to the same interface (the one loader of every
kind from a path is `depth_core.model_loading`)."""

from depth_core.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_config,
    read_checkpoint_metadata,
    save_checkpoint,
)
from depth_core.models.config import ModelConfig
from depth_core.models.depth_model import DepthModel, build_model

__all__ = [
    "CheckpointError",
    "DepthModel",
    "ModelConfig",
    "build_model",
    "load_checkpoint",
    "read_checkpoint_config",
    "read_checkpoint_metadata",
    "save_checkpoint",
]
