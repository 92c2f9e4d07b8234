"""TrainConfig validation: unknown keys and bad values are named; the V1/V2 mixes are expressible."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from depth_core.training.config import PerturbConfig, StudentMixConfig, TrainConfig


def test_defaults_follow_the_recipe(tiny_vit):
    config = TrainConfig(model=tiny_vit)
    assert (
        config.loss.alpha == 2.0
        and config.loss.pseudo_trim == 0.1
        and config.loss.labeled_trim == 0.0
    )
    assert config.optim.decoder_lr_mult == 10.0
    assert (config.mix.labeled, config.mix.pseudo) == (1, 2)
    assert config.perturb.cutmix_prob == 0.5 and config.perturb.cutmix_until == 1.0
    assert config.precision == "auto"


def test_cutmix_stops_after_its_share_of_the_run():
    scheduled = PerturbConfig(cutmix_until=0.5)
    assert [scheduled.for_step(step, 10).cutmix_prob for step in range(10)] == [0.5] * 5 + [0.0] * 5
    assert scheduled.for_step(9, 10).jitter_prob == scheduled.jitter_prob  # only CutMix stops
    assert all(PerturbConfig().for_step(step, 10).cutmix_prob == 0.5 for step in range(10))


def test_unknown_key_is_named(tiny_vit):
    with pytest.raises(ValidationError, match="optim.warmup"):
        TrainConfig.model_validate({"model": tiny_vit, "optim": {"warmup": 3}})
    with pytest.raises(ValidationError, match="loss.trim_pseudo"):
        TrainConfig.model_validate({"model": tiny_vit, "loss": {"trim_pseudo": 0.1}})


def test_bad_values_are_refused(tiny_vit):
    with pytest.raises(ValidationError, match="pseudo_trim"):
        TrainConfig.model_validate({"model": tiny_vit, "loss": {"pseudo_trim": 1.0}})
    with pytest.raises(ValidationError, match="precision"):
        TrainConfig.model_validate({"model": tiny_vit, "precision": "fp8"})
    with pytest.raises(ValidationError, match="both be 0"):
        StudentMixConfig(labeled=0, pseudo=0)
    with pytest.raises(ValidationError, match="blur_sigma"):
        PerturbConfig(blur_sigma=(2.0, 1.0))
    with pytest.raises(ValidationError, match="cutmix_area"):
        PerturbConfig(cutmix_area=(0.1, 1.0))
    with pytest.raises(ValidationError, match="cutmix_until"):
        PerturbConfig(cutmix_until=0.0)
