"""Validated training configuration: one pydantic model per concern, composed into TrainConfig.

The same TrainConfig trains the teacher (no pseudo-labels) and every student; only the data
handed to `train` differs, so teacher and student runs are directly comparable.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from depth_core.data.augment import AugmentConfig, PhotometricConfig
from depth_core.device import check_device_name
from depth_core.losses import LossTerms
from depth_core.models import ModelConfig


class TrainLossConfig(LossTerms):
    """depth_loss settings for training (SSI + alpha * gradient matching, MiDaS / Depth
    Anything), with a trim per sample group and the training-only regularisers."""

    # Depth Anything ignores the top-10% largest-loss pixels on pseudo-labelled samples only:
    # ground truth is trusted, the teacher's labels are not.
    pseudo_trim: float = Field(0.1, ge=0.0, lt=1.0)
    labeled_trim: float = Field(0.0, ge=0.0, lt=1.0)
    scale_anchor: float = Field(
        1e-3,
        ge=0.0,
        description="weight of the (log median prediction)^2 gauge term that keeps the output "
        "scale, which the invariant losses cannot see, from drifting",
    )
    # Least-squares SSI grows with the square of the target's scale: ground truth (1 / depth in
    # scene units) and teacher labels (any scale) would weigh unequally, per image and per
    # source. Median/MAD-normalising every target image first (sign kept) puts all on one scale.
    normalize_target: bool = True


AdamBeta = Annotated[float, Field(ge=0.0, lt=1.0)]  # what torch.optim.AdamW accepts


class OptimConfig(BaseModel):
    """AdamW with a 10x decoder learning rate, warm-up then decay (Depth Anything)."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(2e-4, gt=0.0, description="encoder (backbone) learning rate")
    decoder_lr_mult: float = Field(10.0, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    betas: tuple[AdamBeta, AdamBeta] = (0.9, 0.999)
    warmup_steps: int = Field(100, ge=0)
    schedule: Literal["poly", "cosine", "constant"] = "poly"
    poly_power: float = Field(0.9, gt=0.0)
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)
    grad_clip: float | None = Field(1.0, gt=0.0)


class StudentMixConfig(BaseModel):
    """The ratio of labeled to pseudo-labelled samples in student batches.

    V1 (labeled 1 : pseudo 2) is the default; V2 (pseudo-labels only) is `labeled=0`. An
    epoch is one pass over the pseudo-labels, the labeled set is cycled as needed. Ignored
    when training without pseudo-labels (the teacher).
    """

    model_config = ConfigDict(extra="forbid")

    labeled: int = Field(1, ge=0)
    pseudo: int = Field(2, ge=0)

    @model_validator(mode="after")
    def _not_empty(self) -> StudentMixConfig:
        if self.labeled + self.pseudo == 0:
            raise ValueError("mix: labeled and pseudo cannot both be 0")
        return self


class PerturbConfig(PhotometricConfig):
    """Strong perturbations applied to pseudo-labelled inputs only (UniMatch / Depth Anything):
    the colour jitter and blur of `depth_core.data.augment` (same knobs as `augment`), stronger,
    plus CutMix.

    `blur_sigma` is in pixels: Depth Anything's (0.1, 2.0) is for 518-pixel crops. At the main
    job's 96 x 128, the default profile scales it to (0.1, 0.5); at (0.1, 2.0) the students'
    target AbsRel was 0.2767 against 0.2762 and their pair accuracy 0.7275 against 0.7284.
    """

    enabled: bool = True
    jitter_prob: float = Field(0.8, ge=0.0, le=1.0)
    brightness: float = Field(0.5, ge=0.0, lt=1.0)
    contrast: float = Field(0.5, ge=0.0, lt=1.0)
    saturation: float = Field(0.5, ge=0.0, lt=1.0)
    blur_prob: float = Field(0.5, ge=0.0, le=1.0)
    cutmix_prob: float = Field(0.5, ge=0.0, le=1.0)
    cutmix_area: tuple[float, float] = (0.02, 0.4)
    cutmix_aspect: tuple[float, float] = (0.3, 1.0 / 0.3)
    cutmix_until: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="share of the training steps that use CutMix; the rest see whole images",
    )

    def for_step(self, step: int, total_steps: int) -> PerturbConfig:
        """The perturbations of one step: CutMix stops once `cutmix_until` of the run is done.

        Like YOLOX's and YOLOv8's last epochs without mosaic, a final stretch on whole images
        lets a short run settle on whole-scene depth order, which pasted boxes (each region
        aligned on its own) never reward.
        """
        if self.cutmix_prob == 0.0 or step < math.ceil(self.cutmix_until * total_steps):
            return self
        return self.model_copy(update={"cutmix_prob": 0.0})

    @model_validator(mode="after")
    def _ranges(self) -> PerturbConfig:
        for name in ("cutmix_area", "cutmix_aspect"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi:
                raise ValueError(f"perturb.{name}: need 0 < low <= high, got ({lo}, {hi})")
        if self.cutmix_area[1] >= 1.0:
            raise ValueError("perturb.cutmix_area: the upper bound must be < 1")
        return self


class TrainConfig(BaseModel):
    """Everything one training run needs besides its data paths."""

    model_config = ConfigDict(extra="forbid")

    model: ModelConfig
    epochs: int = Field(8, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop early after this many steps")
    batch_size: int = Field(
        16, ge=1, description="per rank under DDP: the global batch is batch_size x world size"
    )
    loss: TrainLossConfig = TrainLossConfig()
    optim: OptimConfig = OptimConfig()
    mix: StudentMixConfig = StudentMixConfig()
    perturb: PerturbConfig = PerturbConfig()
    augment: AugmentConfig = AugmentConfig()
    # "auto" picks bf16 autocast where it was measured faster than fp32 (see training.precision).
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = False
    device: str = "auto"
    num_workers: int = Field(0, ge=0)
    seed: int = 0
    checkpoint_every: int = Field(200, ge=1, description="steps between resumable checkpoints")
    log_every: int = Field(
        10,
        ge=1,
        description="steps between train/* log calls, each given the means since the last; "
        "only then are those numbers read from the device",
    )
    val_max_images: int | None = Field(None, ge=1)
    n_samples: int = Field(6, ge=0, description="rows of samples.png")

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        return check_device_name(device)
