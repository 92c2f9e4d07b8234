"""An exported model run through onnxruntime behind the PyTorch model's interface, so
`depth_core.inference` (resizing, batching, resizing back) serves both alike."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from depth_core.export.metadata import (
    INPUT_NAME,
    OUTPUT_NAME,
    OnnxModelError,
    error_line,
    read_export_metadata,
)
from depth_core.models.config import ModelConfig


def make_session(source: str | bytes, threads: int | None = None):
    """A CPU onnxruntime session with every graph optimisation; ``threads`` None or 0 lets
    onnxruntime use all cores."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or 0)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OnnxDepthModel(nn.Module):
    """``forward(image (B, 3, H, W) float in [0, 1]) -> (B, H, W)`` disparity, by onnxruntime.

    Carries ``config`` and ``input_multiple`` like a DepthModel. A uint8 export receives the
    batch rounded to uint8 (exact for images that came from uint8); a fixed-size export
    receives it resized to its size and its output is resized back.
    """

    def __init__(
        self,
        session,
        config: ModelConfig,
        input_format: str,
        input_multiple: tuple[int, int],
        fixed_size: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.session = session
        self.config = config
        self.input_format = input_format
        self.input_multiple = tuple(input_multiple)
        self.fixed_size = tuple(fixed_size) if fixed_size else None

    def _feed(self, image: torch.Tensor) -> np.ndarray:
        x = image.detach().float().cpu()
        if self.input_format == "uint8":
            x = (x * 255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return np.ascontiguousarray(x.numpy())

    def run(self, feed: np.ndarray) -> np.ndarray:
        """The graph on an input already in its own format."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: feed})[0]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        size = tuple(image.shape[-2:])
        resized = self.fixed_size is not None and size != self.fixed_size
        if resized:
            image = F.interpolate(
                image.float(), size=self.fixed_size, mode="bilinear", antialias=True
            )
        out = torch.from_numpy(self.run(self._feed(image)))
        if resized:
            out = F.interpolate(out[:, None], size=size, mode="bilinear")[:, 0]
        return out.to(image.device)


def load_onnx_model(
    path: str | os.PathLike, threads: int | None = None
) -> tuple[OnnxDepthModel, dict[str, Any]]:
    """A depth-distill export ready to predict, with its metadata; OnnxModelError otherwise."""
    path = Path(path)
    meta = read_export_metadata(path)
    try:
        session = make_session(str(path), threads)
    except Exception as error:  # onnxruntime raises its own exception types
        raise OnnxModelError(path, f"onnxruntime cannot load it ({error_line(error)})") from error
    model = OnnxDepthModel(
        session, meta["config"], meta["input_format"], meta["input_multiple"], meta["fixed_size"]
    )
    return model.eval(), meta


def example_feed(input_format: str, batch: int, height: int, width: int) -> np.ndarray:
    """A random input in the graph's own format, for timing."""
    rng = np.random.default_rng(0)
    if input_format == "uint8":
        return rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    return rng.random((batch, 3, height, width), dtype=np.float32)


def onnx_latency_ms(
    model: OnnxDepthModel,
    batch: int = 1,
    size: tuple[int, int] | None = None,
    iterations: int = 5,
    warmup: int = 1,
) -> float:
    """Median wall time of one ``session.run`` in milliseconds (default: the training size)."""
    height, width = model.fixed_size or size or (model.config.img_size, model.config.img_size)
    feed = example_feed(model.input_format, batch, height, width)
    for _ in range(warmup):
        model.run(feed)
    times = []
    for _ in range(max(1, iterations)):
        start = time.perf_counter()
        model.run(feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)
