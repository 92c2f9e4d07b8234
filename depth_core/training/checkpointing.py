"""Resumable training state: the model's safetensors file plus train_state.pt.

A checkpoint is two files that must agree, and a kill -9 can land between any two writes. So
the model goes to a new step-numbered file first; train_state.pt, replaced atomically last,
names the model file it belongs to and is the single commit point. Older model files are
removed only after that. Whatever the moment of the kill, train_state.pt points to a complete
model file of the same step.

train_state.pt holds only tensors, numbers, strings and containers, so it loads with
`torch.load(weights_only=True)`: a checkpoint cannot execute code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depth_core.atomic_io import atomic_path
from depth_core.models import CheckpointError, load_checkpoint, save_checkpoint

STATE_FILE = "train_state.pt"
FORMAT_VERSION = 1


def capture_rng() -> dict[str, Any]:
    """Every RNG the loop may touch, as weights_only-loadable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_train_state(
    directory: Path,
    model: torch.nn.Module,
    state: dict[str, Any],
) -> Path:
    """Write model + state for `state["step"]` atomically; returns the train_state.pt path.

    `state` carries the optimizer/scheduler state_dicts and the loop position (epoch, step,
    batch_in_epoch, history...). RNG states are added here.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    step = int(state["step"])
    model_name = f"model-step{step:08d}.safetensors"
    save_checkpoint(directory / model_name, model, metadata={"step": str(step)})

    payload = dict(state, format=FORMAT_VERSION, model_file=model_name, rng=capture_rng())
    # Through a Python file: torch's own writer reports a full disk without its errno.
    with atomic_path(directory / STATE_FILE) as temp, open(temp, "wb") as handle:
        torch.save(payload, handle)

    for old in directory.glob("model-step*.safetensors"):
        if old.name != model_name:
            old.unlink(missing_ok=True)
    return directory / STATE_FILE


def load_train_state(directory: Path) -> tuple[dict[str, Any], torch.nn.Module] | None:
    """(state, model with the saved weights) of the last checkpoint, or None if there is none.

    A present but unreadable checkpoint raises CheckpointError naming the file: silently
    restarting from scratch would hide a real problem.
    """
    directory = Path(directory)
    state_path = directory / STATE_FILE
    if not state_path.exists():
        return None
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(state_path, f"cannot read training state ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(state_path, f"not a training state of format {FORMAT_VERSION}")
    model, _ = load_checkpoint(directory / state["model_file"], map_location="cpu")
    return state, model
