"""The training loop: teacher and student runs, batch losses, perturbation placement, files."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
import torch
from torch import nn

from depth_core.losses import depth_loss
from depth_core.models import load_checkpoint
from depth_core.models.checkpoint import CHECKPOINT_FILE
from depth_core.training import TrainConfig, train
from depth_core.training.config import TrainLossConfig
from depth_core.training.meters import STEP_KEYS
from depth_core.training.perturb import perturb_pseudo_batch
from depth_core.training.trainer import batch_loss, train_step

METRIC_NAMES = ("abs_rel", "delta1", "pair_accuracy", "inverted_fraction", "n_images")


def _config(tiny_vit, **overrides):
    values = {
        "model": tiny_vit,
        "epochs": 2,
        "batch_size": 4,
        "precision": "fp32",
        "checkpoint_every": 5,
        "optim": {"warmup_steps": 2, "lr": 5e-4},
        "n_samples": 2,
        "log_every": 1,
    }
    values.update(overrides)
    return TrainConfig.model_validate(values)


def test_teacher_run_writes_everything_and_logs(tiny_data, tiny_vit, tmp_path):
    logged = []
    result = train(
        _config(tiny_vit),
        tmp_path / "teacher",
        [tiny_data["labeled"]],
        {"val": tiny_data["val"]},
        log=lambda m, s: logged.append((s, dict(m))),
    )
    out = tmp_path / "teacher"
    for name in (
        CHECKPOINT_FILE,
        "history.json",
        "loss_curve.png",
        "val_metrics.png",
        "samples.png",
    ):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "train_state.pt").is_file()
    # 24 samples / batch 4 = 6 steps per epoch
    assert result.metrics["train/steps"] == 12 and len(result.history) == 2
    for name in METRIC_NAMES:
        assert f"val/val/{name}" in result.metrics
    assert result.metrics["val/val/n_images"] == 6
    step_logs = [m for s, m in logged if "train/lr" in m]
    assert [s for s, m in logged if "train/lr" in m] == list(range(1, 13))
    assert {"train/loss", "train/ssi", "train/gradient", "train/lr"} <= set(step_logs[0])
    assert step_logs[0]["train/lr"] < step_logs[2]["train/lr"]  # warm-up
    assert sum("val/val/abs_rel" in m for _, m in logged) == 2  # once per epoch
    history = json.loads((out / "history.json").read_text())
    assert len(history["epochs"]) == 2 and len(history["steps"]) == 12
    model, metadata = load_checkpoint(result.checkpoint)
    assert metadata["metrics"]["train/steps"] == 12
    trained = result.model.state_dict()
    assert all(torch.equal(value, trained[name]) for name, value in model.state_dict().items())


def test_student_mixes_batches_and_has_the_teachers_keys(tiny_data, tiny_vit, tmp_path):
    teacher = train(
        _config(tiny_vit, epochs=1, n_samples=0),
        tmp_path / "t",
        [tiny_data["labeled"]],
        {"val": tiny_data["val"]},
    )
    student = train(
        _config(tiny_vit, epochs=1, n_samples=0),
        tmp_path / "s",
        [tiny_data["labeled"]],
        {"val": tiny_data["val"]},
        pseudo=[(tiny_data["unlabeled"], tiny_data["pseudo"])],
    )
    assert set(student.metrics) == set(teacher.metrics)
    # V1 1:2 -> an epoch is one pass over 24 pseudo + 12 labeled samples = 9 batches of 4
    assert student.metrics["train/steps"] == 9
    v2 = train(
        _config(tiny_vit, epochs=1, n_samples=0, mix={"labeled": 0, "pseudo": 1}),
        tmp_path / "v2",
        [tiny_data["labeled"]],
        {"val": tiny_data["val"]},
        pseudo=[(tiny_data["unlabeled"], tiny_data["pseudo"])],
    )
    assert v2.metrics["train/steps"] == 6  # pseudo-labels only


def test_training_reduces_the_loss(tiny_data, tiny_vit, tmp_path):
    result = train(
        _config(tiny_vit, epochs=3, n_samples=0),
        tmp_path / "t",
        [tiny_data["labeled"]],
        {"val": tiny_data["val"]},
    )
    losses = [row["train/loss"] for row in result.history]
    assert losses[-1] < 0.7 * losses[0]
    assert result.metrics["val/val/inverted_fraction"] == 0.0


def test_changed_config_starts_afresh(tiny_data, tiny_vit, tmp_path):
    config = _config(tiny_vit, epochs=1, n_samples=0)
    train(config, tmp_path / "t", [tiny_data["labeled"]], {"val": tiny_data["val"]})
    logged = []
    train(
        _config(tiny_vit, epochs=1, n_samples=0, seed=3),
        tmp_path / "t",
        [tiny_data["labeled"]],
        {"val": tiny_data["val"]},
        log=lambda m, s: logged.append(s),
    )
    assert logged[0] == 1  # retrained from step 1, not resumed at the end


def test_bad_inputs_name_the_problem(tiny_data, tiny_vit, tmp_path):
    with pytest.raises(FileNotFoundError, match="val_sets"):
        train(
            _config(tiny_vit), tmp_path / "x", [tiny_data["labeled"]], {"val": tmp_path / "missing"}
        )
    with pytest.raises(ValueError, match="batch_size"):
        train(
            _config(tiny_vit, batch_size=64),
            tmp_path / "y",
            [tiny_data["labeled"]],
            {"val": tiny_data["val"]},
        )


def test_batch_loss_trims_only_pseudo_samples():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(4, 16, 16, generator=g) + 0.1
    target = torch.rand(4, 16, 16, generator=g)
    mask = torch.ones(4, 16, 16, dtype=torch.bool)
    pasted = torch.zeros_like(mask)
    pseudo = torch.tensor([False, False, True, True])
    config = TrainLossConfig(pseudo_trim=0.2, labeled_trim=0.0, scale_anchor=0.0)
    total, _ = batch_loss(pred, target, mask, pseudo, pasted, config)
    labeled = depth_loss(pred[:2], target[:2], mask[:2], trim=0.0)
    trimmed = depth_loss(pred[2:], target[2:], mask[2:], trim=0.2)
    assert torch.allclose(total, 0.5 * labeled + 0.5 * trimmed)
    untrimmed = depth_loss(pred[2:], target[2:], mask[2:], trim=0.0)
    assert trimmed < untrimmed
    teacher, _ = batch_loss(pred, target, mask, torch.zeros(4, dtype=torch.bool), pasted, config)
    assert torch.allclose(teacher, depth_loss(pred, target, mask))


class _Recorder(nn.Module):
    """Predicts a learnable constant-plus-image map and remembers its input."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 1, 1)
        self.head = nn.Identity()
        self.seen = None

    def forward(self, image):
        self.seen = image.detach().clone()
        return self.head(self.backbone(image))[:, 0]


def test_perturbations_touch_only_pseudo_inputs(tiny_vit):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(4, 3, 16, 16, generator=g)
    batch = {
        "image": image.clone(),
        "disparity": torch.rand(4, 16, 16, generator=g) + 0.1,
        "mask": torch.ones(4, 16, 16, dtype=torch.bool),
        "pseudo": torch.tensor([False, True, False, True]),
    }
    config = _config(tiny_vit, perturb={"jitter_prob": 1.0, "blur_prob": 1.0, "cutmix_prob": 1.0})
    model = _Recorder()
    optimizer = torch.optim.AdamW(model.parameters())
    out = train_step(
        model,
        optimizer,
        batch,
        config,
        torch.device("cpu"),
        "fp32",
        torch.Generator().manual_seed(1),
    )
    assert torch.equal(model.seen[[0, 2]], image[[0, 2]])
    assert (model.seen[[1, 3]] - image[[1, 3]]).abs().amax() > 0.05
    assert out.applied and float(out.values[STEP_KEYS.index("train/loss")]) > 0


def test_student_stops_cutmix_on_schedule(tiny_data, tiny_vit, tmp_path, monkeypatch):
    """The trainer hands each step its perturbations: CutMix for the first half only."""
    from depth_core.training import trainer

    seen = []

    def spy(image, target, mask, config, generator):
        seen.append(config.cutmix_prob)
        return perturb_pseudo_batch(image, target, mask, config, generator)

    monkeypatch.setattr(trainer, "perturb_pseudo_batch", spy)
    train(
        _config(tiny_vit, epochs=1, n_samples=0, perturb={"cutmix_until": 0.5}),
        tmp_path / "s",
        [tiny_data["labeled"]],
        {"val": tiny_data["val"]},
        pseudo=[(tiny_data["unlabeled"], tiny_data["pseudo"])],
    )
    assert len(seen) == 9 and seen == [0.5] * 5 + [0.0] * 4  # 9 steps, CutMix on steps 0-4


def test_target_scale_does_not_change_the_loss(tiny_vit):
    """Teacher labels come in any scale; normalised targets make the loss ignore it."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(4, 3, 16, 16, generator=g)
    target = torch.rand(4, 16, 16, generator=g) + 0.1
    losses = []
    for scale in (1.0, 1000.0):
        batch = {
            "image": image.clone(),
            "disparity": target * torch.tensor([1.0, 1.0, scale, scale])[:, None, None],
            "mask": torch.ones(4, 16, 16, dtype=torch.bool),
            "pseudo": torch.tensor([False, False, True, True]),
        }
        torch.manual_seed(0)
        model = _Recorder()
        out = train_step(
            model,
            torch.optim.SGD(model.parameters(), lr=0.0),
            batch,
            _config(tiny_vit),
            torch.device("cpu"),
            "fp32",
            torch.Generator().manual_seed(1),
        )
        losses.append(float(out.values[STEP_KEYS.index("train/loss")]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_batch_loss_adds_the_scale_anchor():
    from depth_core.training.trainer import scale_anchor_penalty

    g = torch.Generator().manual_seed(1)
    pred = torch.rand(2, 8, 8, generator=g) * 50 + 1
    target = torch.rand(2, 8, 8, generator=g)
    mask = torch.ones(2, 8, 8, dtype=torch.bool)
    pseudo = torch.tensor([False, False])
    plain, _ = batch_loss(
        pred, target, mask, pseudo, torch.zeros_like(mask), TrainLossConfig(scale_anchor=0.0)
    )
    anchored, _ = batch_loss(
        pred, target, mask, pseudo, torch.zeros_like(mask), TrainLossConfig(scale_anchor=0.5)
    )
    assert torch.allclose(anchored, plain + 0.5 * scale_anchor_penalty(pred, mask))


def test_scale_anchor_pins_the_free_output_scale():
    import torch

    from depth_core.training.trainer import scale_anchor_penalty

    mask = torch.ones(2, 8, 8, dtype=torch.bool)
    unit = torch.rand(2, 8, 8) + 0.5
    unit = unit / unit.flatten(1).median(dim=1).values[:, None, None]
    assert scale_anchor_penalty(unit, mask) < 1e-3
    huge = (unit * 1e6).requires_grad_()
    penalty = scale_anchor_penalty(huge, mask)
    assert penalty > 100
    penalty.backward()
    assert (huge.grad.flatten(1).sum(dim=1) > 0).all(), "the gradient must shrink the scale"


def test_logs_every_log_every_steps_the_means_since_the_last_call(tiny_data, tiny_vit, tmp_path):
    """Sparser logging changes neither the weights nor the epoch rows; each call gets the means
    of the steps since the previous one, and a checkpoint (steps 5 and 10, each epoch's end at 6
    and 12) closes the window."""

    def run(name, **overrides):
        logged = {}
        result = train(
            _config(tiny_vit, n_samples=0, **overrides),
            tmp_path / name,
            [tiny_data["labeled"]],
            {"val": tiny_data["val"]},
            log=lambda m, s: logged.update({s: dict(m)}) if "train/lr" in m else None,
        )
        return result, logged

    every, per_step = run("every", log_every=1)
    sparse, windows = run("sparse", log_every=4)
    assert sorted(windows) == [4, 5, 6, 8, 10, 12]
    assert sparse.history == every.history
    trained = every.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in sparse.model.state_dict().items())
    starts = [1, 5, 6, 7, 9, 11]
    for start, (step, values) in zip(starts, sorted(windows.items())):
        steps = range(start, step + 1)
        for key in STEP_KEYS:
            mean = sum(per_step[s][key] for s in steps) / len(steps)
            assert values[key] == pytest.approx(mean, rel=1e-12), (step, key)
        assert values["train/lr"] == per_step[step]["train/lr"]
    history = json.loads((tmp_path / "sparse" / "history.json").read_text())
    assert [row["step"] for row in history["steps"]] == [4, 5, 6, 8, 10, 12]


def test_an_interrupted_run_resumes_its_logs_and_weights(tiny_data, tiny_vit, tmp_path):
    """Stopped after its checkpoint at step 5, a resumed run logs the steps an uninterrupted
    one logs from there on and ends with its weights and history.json."""
    config = _config(tiny_vit, n_samples=0, log_every=3)
    data = ([tiny_data["labeled"]], {"val": tiny_data["val"]})

    def stop_at_step_6(metrics, step):
        if step == 6 and "train/lr" in metrics:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", *data, log=stop_at_step_6)
    logged = []
    resumed = train(config, tmp_path / "run", *data, log=lambda m, s: logged.append((s, dict(m))))
    reference_log = []
    reference = train(
        config, tmp_path / "ref", *data, log=lambda m, s: reference_log.append((s, dict(m)))
    )
    assert logged == [(s, m) for s, m in reference_log if s > 5]
    trained = reference.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in resumed.model.state_dict().items())
    history, expected = (
        json.loads((tmp_path / name / "history.json").read_text()) for name in ("run", "ref")
    )
    assert history["steps"] == expected["steps"] and history["epochs"] == expected["epochs"]


def test_the_step_log_stays_bounded_and_spans_the_run(monkeypatch):
    from depth_core.training import trainer

    monkeypatch.setattr(trainer, "MAX_STEP_ROWS", 8)
    state = trainer.LoopState()
    for step in range(1, 101):
        state.record_step_row({"step": step})
    steps = [row["step"] for row in state.steps_log]
    assert len(steps) <= 8 and steps[0] == 1 and steps[-1] > 80
    assert len({b - a for a, b in pairwise(steps)}) == 1  # evenly spaced
    resumed = trainer.LoopState(**state.to_dict())  # what a checkpoint carries on
    state.record_step_row({"step": 101})
    resumed.record_step_row({"step": 101})
    assert resumed.steps_log == state.steps_log


def test_saving_the_same_weights_again_gives_the_same_bytes(tiny_data, tiny_vit, tmp_path):
    config = _config(tiny_vit, epochs=1, n_samples=0)
    out = tmp_path / "teacher"
    train(config, out, [tiny_data["labeled"]], {"val": tiny_data["val"]})
    first = (out / CHECKPOINT_FILE).read_bytes()
    (out / CHECKPOINT_FILE).unlink()
    result = train(config, out, [tiny_data["labeled"]], {"val": tiny_data["val"]}, resume=True)
    assert (out / CHECKPOINT_FILE).read_bytes() == first, "timings leaked into the file"
    assert "train/wall_seconds" in result.metrics
    _, metadata = load_checkpoint(out / CHECKPOINT_FILE)
    assert "train/wall_seconds" not in metadata["metrics"]
