from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from depth_core.voting.agreement import AgreementConfig, run_agreement
from depth_core.voting.da2k import annotations_to_pairs, load_annotations
from depth_core.voting.pairs import PairConfig

REQUIRED = [
    "n_experts",
    "n_pairs",
    "agreement_rate",
    "accuracy_consistent",
    "accuracy_disagreement",
    "accuracy_majority",
]
CONFIG = AgreementConfig(pairs=PairConfig(pairs_per_image=60, seed=0), report_images=2)


def _no_nan(text: str):
    def reject(token):
        raise AssertionError(f"{token} in JSON")

    return json.loads(text, parse_constant=reject)


@pytest.mark.parametrize("n_experts", [2, 3, 4])
def test_outputs_for_n_experts(tmp_path, scene, n_experts):
    depths, images, experts = scene(noise=(0.002, 0.02, 0.06, 0.1)[:n_experts])
    ids = [f"scene{i % 2}/img{i}.png" for i in range(len(images))]
    metrics = run_agreement(experts, images, ids, tmp_path, CONFIG, gt_depth=depths)
    names = list(experts)

    assert all(k in metrics for k in REQUIRED)
    assert all(f"accuracy/{n}" in metrics for n in names)
    assert metrics["n_experts"] == n_experts and metrics["n_pairs"] == 3 * 60
    assert _no_nan((tmp_path / "metrics.json").read_text()) == metrics

    table = pd.read_parquet(tmp_path / "pairs.parquet")
    assert len(table) == metrics["n_pairs"]
    assert [c for c in table.columns if c.startswith("vote/")] == [f"vote/{n}" for n in names]
    assert set(table["verdict"]) <= {"consistent", "disagreement"}
    assert (table["verdict"] == "consistent").mean() == pytest.approx(metrics["agreement_rate"])
    assert table["gt_closer"].notna().sum() == metrics["n_pairs_gt"]

    review = load_annotations(tmp_path / "review_queue.json")
    auto = load_annotations(tmp_path / "auto_labels.json")
    assert sum(map(len, review.values())) == metrics["n_disagreement"]
    assert sum(map(len, auto.values())) == metrics["n_consistent"]
    assert set(review) | set(auto) <= set(ids)
    meta = json.loads((tmp_path / "review_queue.meta.json").read_text())
    assert meta["status"] == "needs_review" and meta["experts"] == names
    assert {k: len(v) for k, v in meta["votes"].items()} == {k: len(v) for k, v in review.items()}

    # auto-labels carry the common vote, which the table agrees with
    pairs, closer = annotations_to_pairs(auto, ids)
    consistent = table[table["verdict"] == "consistent"]
    keys = zip(*(consistent[c] for c in ("image_id", "h1", "w1", "h2", "w2")))
    lookup = dict(zip(keys, consistent[f"vote/{names[0]}"]))
    for i in range(len(pairs)):
        key = (ids[pairs.image_index[i]], *pairs.point1[i], *pairs.point2[i])
        assert lookup[key] == closer[i]

    page = (tmp_path / "report.html").read_text()
    for section in ("summary", "experts", "confusion", "images"):
        assert f'id="{section}"' in page
    assert len(re.findall(r"src='data:image/png;base64,", page)) == 2 * (3 + n_experts)
    assert all(n in page for n in names)
    summary = (tmp_path / "summary.md").read_text()
    assert "agreement rate" in summary and "data:image/png;base64," in summary
    assert len(list((tmp_path / "disagreement_maps").glob("*.png"))) == len(images)
    assert (tmp_path / "most_contested_pairs.png").is_file()
    assert not list(tmp_path.rglob(".*.tmp"))


def test_vote_finds_the_unreliable_pairs(tmp_path, scene):
    depths, images, experts = scene(n_images=4, noise=(0.01, 0.04, 0.08, 0.12), seed=1)
    m = run_agreement(
        experts, images, [str(i) for i in range(4)], tmp_path, CONFIG, gt_depth=depths
    )
    assert m["n_consistent_gt"] > 20 and m["n_disagreement_gt"] > 20
    assert m["accuracy_consistent"] > m["accuracy_disagreement"]
    assert m["accuracy/expert0"] > m["accuracy/expert3"]  # less noise, more accurate
    assert m["accuracy_majority"] >= m["accuracy/expert3"]


def test_without_ground_truth(tmp_path, scene):
    _, images, experts = scene(noise=(0.01, 0.05))
    m = run_agreement(experts, images, ["a", "b", "c"], tmp_path, CONFIG)
    assert "agreement_rate" in m and not any(k.startswith("accuracy") for k in m)
    assert pd.read_parquet(tmp_path / "pairs.parquet")["gt_closer"].isna().all()


def test_metrics_do_not_depend_on_expert_or_image_order(tmp_path, scene):
    depths, images, experts = scene(noise=(0.01, 0.03, 0.06, 0.1))
    ids = ["a", "b", "c"]
    cfg = CONFIG.model_copy(update={"report_images": 0})
    m1 = run_agreement(experts, images, ids, tmp_path / "one", cfg, gt_depth=depths)
    perm_experts = {k: experts[k] for k in reversed(list(experts))}
    order = [2, 0, 1]
    m2 = run_agreement(
        {k: [v[i] for i in order] for k, v in perm_experts.items()},
        [images[i] for i in order],
        [ids[i] for i in order],
        tmp_path / "two",
        cfg,
        gt_depth=[depths[i] for i in order],
    )
    assert m1.keys() == m2.keys()
    for key in m1:
        assert m1[key] == pytest.approx(m2[key]), key


def test_pairs_and_labels_from_a_da2k_file(tmp_path, scene):
    _, images, experts = scene(noise=(0.0, 0.0))
    truth = {
        "0": [
            {"point1": [30, 5], "point2": [2, 5], "closer_point": "point1"},
            {"point1": [1, 1], "point2": [31, 39], "closer_point": "point2"},
        ]
    }
    ids = ["0", "1", "2"]
    pairs, closer = annotations_to_pairs(truth, ids)
    m = run_agreement(experts, images, ids, tmp_path, CONFIG, pairs=pairs, pair_labels=closer)
    assert m["n_pairs"] == 2 and m["n_pairs_gt"] == 2
    assert m["accuracy_majority"] == 1.0 and m["agreement_rate"] == 1.0
    assert load_annotations(tmp_path / "auto_labels.json") == truth


def test_bare_pair_config_and_report_images_override(tmp_path, scene):
    depths, images, experts = scene(noise=(0.01, 0.2))
    m = run_agreement(
        experts,
        images,
        ["a", "b", "c"],
        tmp_path,
        PairConfig(pairs_per_image=10),
        gt_depth=depths,
        report_images=1,
    )
    assert m["n_pairs"] == 30
    page = (tmp_path / "report.html").read_text()
    assert len(re.findall(r"src='data:image/png;base64,", page)) == 3 + 2


def test_invalid_inputs_are_named(tmp_path, scene):
    depths, images, experts = scene(noise=(0.01, 0.02))
    ids = ["a", "b", "c"]
    with pytest.raises(ValueError, match="at least 2 experts"):
        run_agreement({"solo": experts["expert0"]}, images, ids, tmp_path)
    broken = dict(experts, expert1=[m[:-1] for m in experts["expert1"]])
    with pytest.raises(ValueError, match="expert 'expert1', image 'a'"):
        run_agreement(broken, images, ids, tmp_path)
    with pytest.raises(ValueError, match="image_ids"):
        run_agreement(experts, images, ids[:2], tmp_path)
    with pytest.raises(ValueError, match="gt_depth"):
        run_agreement(experts, images, ids, tmp_path, gt_depth=depths[:2])
