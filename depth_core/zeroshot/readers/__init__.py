"""One reader per zero-shot benchmark, each reading the benchmark's files as published."""

from __future__ import annotations

from depth_core.zeroshot.readers import diode, eth3d, kitti, nyu, scannet, sintel
from depth_core.zeroshot.samples import BenchmarkReader

READERS: dict[str, BenchmarkReader] = {
    module.READER.name: module.READER for module in (nyu, kitti, diode, eth3d, sintel, scannet)
}

__all__ = ["READERS"]
