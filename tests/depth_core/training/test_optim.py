"""Encoder/decoder learning rates and the warm-up + decay schedule."""

from __future__ import annotations

import itertools

import pytest
from torch import nn

from depth_core.training.config import OptimConfig
from depth_core.training.optim import build_optimizer, build_scheduler, lr_factor, param_groups


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.head = nn.Linear(4, 1)


def _groups_by_name(model, config):
    return {g["name"]: g for g in param_groups(model, config)}


def test_decoder_gets_ten_times_the_encoder_lr():
    config = OptimConfig(lr=1e-3, weight_decay=0.05)
    groups = _groups_by_name(Toy(), config)
    assert groups["encoder"]["lr"] == pytest.approx(1e-3)
    assert groups["decoder"]["lr"] == pytest.approx(1e-2)
    assert groups["decoder_no_decay"]["lr"] == pytest.approx(1e-2)


def test_biases_and_norms_are_not_decayed():
    model = Toy()
    groups = _groups_by_name(model, OptimConfig(weight_decay=0.05))
    no_decay = {id(p) for p in groups["encoder_no_decay"]["params"]}
    assert id(model.backbone[1].weight) in no_decay and id(model.backbone[0].bias) in no_decay
    assert groups["encoder_no_decay"]["weight_decay"] == 0.0
    assert [p is model.backbone[0].weight for p in groups["encoder"]["params"]] == [True]
    assert groups["encoder"]["weight_decay"] == 0.05
    n_grouped = sum(len(g["params"]) for g in groups.values())
    assert n_grouped == len(list(model.parameters()))


def test_model_without_backbone_is_rejected():
    with pytest.raises(ValueError, match="no encoder parameters"):
        param_groups(nn.Linear(2, 2), OptimConfig())


def test_warmup_then_poly_decay():
    config = OptimConfig(warmup_steps=4, schedule="poly", poly_power=1.0)
    factors = [lr_factor(s, 14, config) for s in range(14)]
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert factors[4] == pytest.approx(1.0)
    assert factors[9] == pytest.approx(0.5)
    assert all(a >= b for a, b in itertools.pairwise(factors[4:]))


def test_cosine_ends_at_min_ratio():
    config = OptimConfig(warmup_steps=0, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, 100, config) == pytest.approx(1.0)
    assert lr_factor(50, 100, config) == pytest.approx(0.55)
    assert lr_factor(100, 100, config) == pytest.approx(0.1)


def test_scheduler_drives_every_group_and_round_trips_state():
    model = Toy()
    config = OptimConfig(lr=1e-3, warmup_steps=2, schedule="constant")
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, 10, config)
    lrs = [[g["lr"] for g in optimizer.param_groups]]
    for _ in range(3):
        optimizer.step()
        scheduler.step()
        lrs.append([g["lr"] for g in optimizer.param_groups])
    assert lrs[0][0] == pytest.approx(1e-3 / 3) and lrs[2][0] == pytest.approx(1e-3)
    decoder = next(i for i, g in enumerate(optimizer.param_groups) if g["name"] == "decoder")
    assert lrs[3][decoder] == pytest.approx(1e-2)

    fresh_opt = build_optimizer(model, config)
    fresh = build_scheduler(fresh_opt, 10, config)
    fresh.load_state_dict(scheduler.state_dict())
    assert fresh.last_epoch == 3
    with pytest.raises(ValueError, match="total_steps"):
        build_scheduler(optimizer, 0, config)
