"""AdamW with separate encoder/decoder learning rates and a warm-up + decay schedule.

Depth Anything trains the pretrained encoder with a small learning rate and the randomly
initialised decoder with 10x that; the same split is kept when both start from scratch so the
recipe (and its params) transfers unchanged to pretrained backbones.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from depth_core.training.config import OptimConfig

ENCODER_PREFIXES = ("encoder.", "backbone.", "pretrained.")
# Parameters that should never be decayed: biases, norm weights, embeddings and tokens.
NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token", "dist_token", "mask_token")


def is_encoder_param(name: str) -> bool:
    """True for backbone parameters (the model keeps its timm backbone under one of the prefixes)."""
    name = name.removeprefix("module.")
    return name.startswith(ENCODER_PREFIXES)


def _decays(name: str, param: torch.Tensor) -> bool:
    return param.ndim >= 2 and not any(token in name for token in NO_DECAY_NAMES)


def param_groups(model: nn.Module, config: OptimConfig) -> list[dict]:
    """Four groups: encoder/decoder x decay/no-decay, each with its own base learning rate."""
    groups: dict[tuple[bool, bool], list[torch.Tensor]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = (is_encoder_param(name), _decays(name, param))
        groups.setdefault(key, []).append(param)
    if not any(key[0] for key in groups):
        raise ValueError(
            "optimizer: found no encoder parameters; the model must keep its backbone under "
            f"one of {ENCODER_PREFIXES}"
        )
    result = []
    for (encoder, decay), params in sorted(
        groups.items(), key=lambda kv: (not kv[0][0], not kv[0][1])
    ):
        lr = config.lr if encoder else config.lr * config.decoder_lr_mult
        result.append(
            {
                "params": params,
                "lr": lr,
                "weight_decay": config.weight_decay if decay else 0.0,
                "name": f"{'encoder' if encoder else 'decoder'}{'' if decay else '_no_decay'}",
            }
        )
    return result


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, config), lr=config.lr, betas=config.betas)


def lr_factor(step: int, total_steps: int, config: OptimConfig) -> float:
    """Multiplier of every group's base lr at `step` (0-based): linear warm-up, then decay."""
    warmup = min(config.warmup_steps, max(total_steps - 1, 0))
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if config.schedule == "constant":
        return 1.0
    span = max(total_steps - warmup, 1)
    progress = min(max((step - warmup) / span, 0.0), 1.0)
    if config.schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:  # poly, as Depth Anything: (1 - progress) ** 0.9
        decay = (1.0 - progress) ** config.poly_power
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * decay


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, config: OptimConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A step-wise LambdaLR; its state_dict holds only numbers, so it resumes with weights_only."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, config)
    )
