"""What an ONNX export is asked for: opset, input format and the parity check it must pass."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

InputFormat = Literal["float", "uint8"]


class ExportConfig(BaseModel):
    """``input_format`` ``float``: (B, 3, H, W) float32 in [0, 1], the PyTorch model's own
    contract (what `predict` feeds after resizing); ``uint8``: (B, H, W, 3) uint8 RGB straight
    from an image decoder, converted inside the graph. ``parity_sizes`` are (height, width) of
    the rendered images the export is checked on; they should include sizes that are not
    multiples of the backbone's stride, so the in-graph padding is exercised."""

    model_config = ConfigDict(extra="forbid")

    opset: int = Field(18, ge=17, le=23, description="ONNX default-domain opset")
    input_format: InputFormat = "float"
    parity_tolerance: float = Field(
        1e-3, gt=0, description="largest accepted |onnx - torch| / max|torch| on any image"
    )
    parity_sizes: list[tuple[PositiveInt, PositiveInt]] = Field(
        default_factory=lambda: [(96, 128), (128, 80), (75, 131)],
        min_length=1,
        description="(height, width) of the parity images: several sizes and aspect ratios",
    )
    parity_images_per_size: int = Field(2, ge=1, description="images per size (one batch)")
    parity_seed: int = Field(0, ge=0)
