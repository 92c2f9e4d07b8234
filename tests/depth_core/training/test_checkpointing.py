"""Resumable checkpoints: atomic pairs of files, weights-only loading, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from depth_core.models import CheckpointError, ModelConfig, build_model
from depth_core.models.checkpoint import CHECKPOINT_FILE
from depth_core.training import TrainConfig, train
from depth_core.training.checkpointing import (
    STATE_FILE,
    load_train_state,
    restore_rng,
    save_train_state,
)

HERE = Path(__file__).parent


def test_state_round_trip_and_rng(tmp_path, tiny_vit):
    model = build_model(ModelConfig(**tiny_vit))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.rand(1, 3, 32, 32)).mean().backward()
    optimizer.step()
    save_train_state(
        tmp_path, model, {"step": 7, "optimizer": optimizer.state_dict(), "loop": {"epoch": 1}}
    )
    expected = (torch.rand(3), np.random.rand(3))  # what follows the saved RNG state
    state, loaded = load_train_state(tmp_path)
    assert state["step"] == 7 and state["loop"] == {"epoch": 1}
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    fresh = torch.optim.AdamW(loaded.parameters())
    fresh.load_state_dict(state["optimizer"])
    assert fresh.state_dict()["state"][0]["step"] == 1
    torch.manual_seed(123)
    np.random.seed(5)
    restore_rng(state["rng"])
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(
        np.random.rand(3), expected[1]
    )


def test_newer_checkpoint_replaces_older_model_file(tmp_path, tiny_vit):
    model = build_model(ModelConfig(**tiny_vit))
    save_train_state(tmp_path, model, {"step": 1})
    save_train_state(tmp_path, model, {"step": 2})
    assert sorted(p.name for p in tmp_path.glob("model-step*")) == [
        "model-step00000002.safetensors"
    ]
    assert not list(tmp_path.glob(".*tmp"))
    assert load_train_state(tmp_path)[0]["step"] == 2


def test_a_crash_while_writing_the_state_keeps_the_previous_checkpoint(
    tmp_path, tiny_vit, monkeypatch
):
    model = build_model(ModelConfig(**tiny_vit))
    save_train_state(tmp_path, model, {"step": 1})

    def crash(payload, handle):
        handle.write(b"half a state file")
        raise OSError("killed")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="killed"):
        save_train_state(tmp_path, model, {"step": 2})
    monkeypatch.undo()
    state, _ = load_train_state(tmp_path)
    assert state["step"] == 1 and (tmp_path / state["model_file"]).is_file()
    assert not list(tmp_path.glob(".*tmp"))


def test_missing_and_corrupt_state(tmp_path, tiny_vit):
    assert load_train_state(tmp_path) is None
    (tmp_path / STATE_FILE).write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match=STATE_FILE):
        load_train_state(tmp_path)


def test_state_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"format": 1, "payload": Evil()}, tmp_path / STATE_FILE)
    with pytest.raises(CheckpointError):
        load_train_state(tmp_path)


def _spec(tmp_path, tiny_data, tiny_vit, out_dir, sleep=0.0):
    config = {
        "model": tiny_vit,
        "epochs": 3,
        "batch_size": 4,
        "precision": "fp32",
        "checkpoint_every": 2,
        "n_samples": 0,
        "optim": {"warmup_steps": 2},
    }
    spec = {
        "config": config,
        "out_dir": str(out_dir),
        "labeled": str(tiny_data["labeled"]),
        "val": str(tiny_data["val"]),
        "sleep": sleep,
        "pseudo": [str(tiny_data["unlabeled"]), str(tiny_data["pseudo"])],
    }
    path = tmp_path / f"{out_dir.name}.json"
    path.write_text(json.dumps(spec))
    return path, TrainConfig.model_validate(config)


def test_kill_9_then_rerun_resumes_exactly(tmp_path, tiny_data, tiny_vit):
    """A student run SIGKILLed mid-epoch and re-run ends with the uninterrupted run's weights."""
    out = tmp_path / "killed"
    spec, config = _spec(tmp_path, tiny_data, tiny_vit, out, sleep=0.15)
    process = subprocess.Popen(
        [sys.executable, str(HERE / "run_training.py"), str(spec)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    state_file = out / "checkpoints" / STATE_FILE
    deadline = time.time() + 60
    killed_at = None
    while time.time() < deadline and process.poll() is None:
        if state_file.exists():
            state = torch.load(state_file, weights_only=True)
            if state["step"] >= 4 and state["loop"]["batch_in_epoch"] > 0:
                process.send_signal(signal.SIGKILL)
                killed_at = state["step"]
                break
        time.sleep(0.05)
    process.wait(timeout=30)
    assert killed_at is not None, process.stderr.read().decode()[-2000:]
    assert process.returncode == -signal.SIGKILL
    assert not (out / CHECKPOINT_FILE).exists()

    steps = []
    resumed = train(
        config,
        out,
        [tiny_data["labeled"]],
        {"val": tiny_data["val"]},
        pseudo=[(tiny_data["unlabeled"], tiny_data["pseudo"])],
        log=lambda m, s: steps.append(s) if "train/lr" in m else None,
    )
    assert steps[0] > killed_at - 1 and steps[-1] == 27  # 3 epochs x 9 batches, only the rest rerun
    reference = train(
        config,
        tmp_path / "reference",
        [tiny_data["labeled"]],
        {"val": tiny_data["val"]},
        pseudo=[(tiny_data["unlabeled"], tiny_data["pseudo"])],
    )
    a, b = load_file(resumed.checkpoint), load_file(reference.checkpoint)
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5, (worst, killed_at, steps)
    assert len(resumed.history) == 3
