"""Where backbone weights come from: a local file, or a weights file shipped inside a package.

``ModelConfig.pretrained`` is either a path or ``package:NAME``. A packaged source is converted
once into timm's layout (every tensor checked), cached as safetensors keyed by the source
file's sha256, and then loaded through timm's own pretrained path like any local file.
Nothing here ever touches the network.
"""

from depth_core.models.weights.errors import WeightsError
from depth_core.models.weights.normalization import IMAGENET_MEAN, IMAGENET_STD, input_normalization
from depth_core.models.weights.resolve import resolve_weights_file
from depth_core.models.weights.sources import (
    PACKAGE_PREFIX,
    PACKAGED_SOURCES,
    PackagedSource,
    packaged_source,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PACKAGED_SOURCES",
    "PACKAGE_PREFIX",
    "PackagedSource",
    "WeightsError",
    "input_normalization",
    "packaged_source",
    "resolve_weights_file",
]
