from __future__ import annotations

import numpy as np
import pytest

from depth_core.voting.pairs import PointPairs
from depth_core.voting.votes import (
    POINT1,
    POINT2,
    TIE,
    agreement_metrics,
    ground_truth_order,
    is_consistent,
    judge,
    lone_dissents,
    majority_vote,
    pair_margins,
    pairwise_agreement,
)

# One 1x6 image; pairs compare pixel 0 with 1, 2 with 3, 4 with 5 (all on row 0).
PAIRS = PointPairs.build([0, 0, 0], [[0, 0], [0, 2], [0, 4]], [[0, 1], [0, 3], [0, 5]])


def _experts(*rows):
    return np.asarray(rows, np.float32).reshape(len(rows), 1, 1, -1)


def test_all_agree_one_dissents_and_ties():
    disp = _experts(
        [5, 1, 1, 5, 2, 2],  # A: p1 closer, p2 closer, tie
        [9, 2, 0, 3, 4, 4],  # B: p1, p2, tie
        [3, 4, 3, 2, 3, 1],  # C: p2 (dissents), p1 (dissents), p1
    )
    votes = judge(disp, PAIRS)
    assert votes.dtype == np.int8
    np.testing.assert_array_equal(votes, [[1, 2, 0], [1, 2, 0], [2, 1, 1]])
    np.testing.assert_array_equal(is_consistent(votes), [False, False, False])
    np.testing.assert_array_equal(is_consistent(votes[:2]), [True, True, True])  # all tie too
    np.testing.assert_array_equal(majority_vote(votes), [POINT1, POINT2, POINT1])


def test_one_tying_expert_makes_a_disagreement():
    votes = np.array([[1, 0], [1, 0], [0, 0]], np.int8)
    np.testing.assert_array_equal(is_consistent(votes), [False, True])


def test_nan_abstains():
    disp = _experts([np.nan, 1, 1, 2, 0, 0], [2, 1, 1, 2, 0, 0])
    np.testing.assert_array_equal(judge(disp, PAIRS)[0], [TIE, POINT2, TIE])


def test_ragged_lists_match_the_stacked_array_and_allow_different_sizes():
    rng = np.random.default_rng(0)
    stacked = rng.random((3, 2, 8, 9), dtype=np.float32)
    pairs = PointPairs.build(
        rng.integers(2, size=50), rng.integers(8, size=(50, 2)), rng.integers(8, size=(50, 2))
    )
    ragged = [list(expert) for expert in stacked]
    np.testing.assert_array_equal(judge(stacked, pairs), judge(ragged, pairs))

    small = [rng.random((4, 5)), rng.random((7, 3))]
    other = [m * 2 for m in small]
    pairs2 = PointPairs.build([0, 1], [[3, 4], [6, 2]], [[0, 0], [0, 0]])
    votes = judge([small, other], pairs2)
    expected = [
        1 if small[i][tuple(p)] > small[i][0, 0] else 2 for i, p in enumerate(pairs2.point1)
    ]
    np.testing.assert_array_equal(votes[0], expected)
    np.testing.assert_array_equal(votes[0], votes[1])


def test_point_outside_the_image_is_named():
    bad = PointPairs.build([0, 0], [[0, 0], [0, 1]], [[0, 2], [1, 0]])
    with pytest.raises(ValueError, match=r"pair 1 .*outside"):
        judge(np.zeros((2, 1, 1, 6), np.float32), bad)
    with pytest.raises(ValueError, match=r"pair 1 .*outside"):
        judge([[np.zeros((1, 6))], [np.zeros((1, 6))]], bad)


def test_mismatched_expert_maps_are_rejected():
    with pytest.raises(ValueError, match="expert 1 image 0"):
        judge([[np.zeros((2, 6))], [np.zeros((3, 6))]], PAIRS)


def test_even_split_is_broken_by_summed_margins():
    # A and B say point1 closer by a small margin, C and D say point2 by a large one.
    disp = _experts(
        [1.01, 1.0, 0, 0, 0, 0],
        [1.02, 1.0, 0, 0, 0, 0],
        [1.0, 3.0, 0, 0, 0, 0],
        [1.0, 2.0, 0, 0, 0, 0],
    )
    pairs = PAIRS.select(np.array([0]))
    votes = judge(disp, pairs)
    np.testing.assert_array_equal(votes[:, 0], [1, 1, 2, 2])
    assert majority_vote(votes)[0] == TIE  # no margins: undecided
    assert majority_vote(votes, pair_margins(disp, pairs))[0] == POINT2
    # the rule ignores expert order
    perm = [2, 0, 3, 1]
    assert majority_vote(votes[perm], pair_margins(disp[perm], pairs))[0] == POINT2


def test_ground_truth_order_skips_invalid_and_near_equal_depths():
    depth = np.array([[[1.0, 2.0, 5.0, 5.02, 3.0, 1.0]]], np.float32)
    mask = np.array([[[True, True, True, True, False, True]]])
    order = ground_truth_order(depth, mask, PAIRS, rel_tol=0.01)
    np.testing.assert_array_equal(order, [POINT1, TIE, TIE])
    order = ground_truth_order(list(depth), None, PAIRS, rel_tol=0.001)
    np.testing.assert_array_equal(order, [POINT1, POINT1, POINT2])


def test_lone_dissent_and_pairwise_agreement():
    votes = np.array([[1, 1, 2, 1], [1, 1, 2, 2], [1, 2, 1, 2]], np.int8)
    lone = lone_dissents(votes)
    np.testing.assert_array_equal(lone, [[0, 0, 0, 1], [0, 0, 0, 0], [0, 1, 1, 0]])
    agree = pairwise_agreement(votes)
    np.testing.assert_allclose(agree, [[1, 0.75, 0.25], [0.75, 1, 0.5], [0.25, 0.5, 1]])


def test_metrics_with_known_ground_truth():
    votes = np.array(
        [
            [1, 2, 1, 1, 2, 1],
            [1, 2, 2, 1, 2, 1],
            [1, 2, 2, 0, 1, 1],
        ],
        np.int8,
    )
    gt = np.array([1, 1, 2, 1, 2, 0], np.int8)  # last pair has no ground truth
    m = agreement_metrics(votes, ["a", "b", "c"], gt)
    assert m["n_experts"] == 3 and m["n_pairs"] == 6
    assert m["n_consistent"] == 3 and m["n_disagreement"] == 3
    assert m["agreement_rate"] == pytest.approx(0.5)
    assert m["n_pairs_gt"] == 5 and m["n_consistent_gt"] == 2 and m["n_disagreement_gt"] == 3
    assert m["accuracy/a"] == pytest.approx(3 / 5)
    assert m["accuracy/b"] == pytest.approx(4 / 5)
    assert m["accuracy/c"] == pytest.approx(2 / 5)
    # majority votes: 1, 2, 2, 1, 2, 1 -> right on pairs 0, 2, 3, 4
    assert m["accuracy_majority"] == pytest.approx(4 / 5)
    assert m["accuracy_consistent"] == pytest.approx(1 / 2)  # pairs 0 (right) and 1 (wrong)
    assert m["accuracy_disagreement"] == pytest.approx(1.0)  # pairs 2, 3, 4
    assert m["accuracy_disagreement/a"] == pytest.approx(2 / 3)
    assert m["lone_dissent_rate/c"] == pytest.approx(2 / 6)
    assert m["pairwise_agreement/a/b"] == pytest.approx(5 / 6)


def test_metrics_without_ground_truth_have_no_accuracy_and_no_nan():
    votes = np.array([[1, 2], [1, 1]], np.int8)
    m = agreement_metrics(votes, ["x", "y"])
    assert not any(k.startswith("accuracy") for k in m)
    assert all(np.isfinite(v) for v in m.values())
    # ground truth exists but no disagreement pair has it: that key is omitted, not NaN
    m = agreement_metrics(votes, ["x", "y"], np.array([1, 0], np.int8))
    assert m["accuracy_consistent"] == 1.0 and "accuracy_disagreement" not in m


def test_metrics_do_not_depend_on_expert_order():
    rng = np.random.default_rng(1)
    votes = rng.integers(0, 3, size=(4, 200)).astype(np.int8)
    margins = rng.normal(size=(4, 200))
    gt = rng.integers(0, 3, size=200).astype(np.int8)
    names = ["t", "s1", "s2", "s3"]
    perm = [3, 1, 0, 2]
    a = agreement_metrics(votes, names, gt, margins)
    b = agreement_metrics(votes[perm], [names[i] for i in perm], gt, margins[perm])
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key]), key


def test_fewer_than_two_experts_is_an_error():
    with pytest.raises(ValueError, match="at least 2 experts"):
        is_consistent(np.ones((1, 3), np.int8))
