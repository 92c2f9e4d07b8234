"""Training: the teacher and the students of the Depth Anything recipe, resumable and DDP-ready.

`train` and `TrainResult` are imported on first use, so reading a configuration (params.yaml
validation, the CLI) does not pay for the training stack's imports.
"""

from depth_core.training.config import (
    OptimConfig,
    PerturbConfig,
    StudentMixConfig,
    TrainConfig,
    TrainLossConfig,
)

__all__ = [
    "OptimConfig",
    "PerturbConfig",
    "StudentMixConfig",
    "TrainConfig",
    "TrainLossConfig",
    "TrainResult",
    "train",
]


def __getattr__(name: str):
    if name in ("train", "TrainResult"):
        from depth_core.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'depth_core.training' has no attribute {name!r}")
