from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from depth_core.voting.da2k import (
    Da2kFormatError,
    annotations_to_pairs,
    evaluate_pairs,
    load_annotations,
    pairs_to_annotations,
    write_annotations,
)
from depth_core.voting.pairs import KIND_ANNOTATED, PointPairs

OFFICIAL_LIKE = {
    "indoor/0001.jpg": [
        {"point1": [10, 4], "point2": [2, 7], "closer_point": "point1"},
        {"point1": [3, 3], "point2": [9, 1], "closer_point": "point2"},
    ],
    "outdoor/0002.png": [{"point1": [0, 0], "point2": [11, 7], "closer_point": "point1"}],
    "loose.png": [],
}


def test_round_trip_is_exact(tmp_path):
    path = write_annotations(tmp_path / "annotations.json", OFFICIAL_LIKE)
    loaded = load_annotations(path)
    assert loaded == OFFICIAL_LIKE
    assert list(loaded) == list(OFFICIAL_LIKE)  # image order kept
    text = path.read_text()
    write_annotations(tmp_path / "again.json", loaded)
    assert (tmp_path / "again.json").read_text() == text
    assert json.loads(text) == OFFICIAL_LIKE  # plain JSON any DA-2K tool can read
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "top level must be an object"),
        ('{"a.jpg": {"point1": [1, 2]}}', r"image 'a.jpg': value must be a list"),
        (
            '{"a.jpg": [{"point1": [1, 2], "point2": [3, 4]}]}',
            r"entry 0.*missing \['closer_point'\]",
        ),
        (
            '{"a.jpg": [{"point1": [1, 2], "point2": [3, 4], "closer_point": "point1", "x": 1}]}',
            r"unexpected \['x'\]",
        ),
        ('{"a.jpg": [{"point1": [1], "point2": [3, 4], "closer_point": "point1"}]}', "point1 must"),
        ('{"a.jpg": [{"point1": [1, -2], "point2": [3, 4], "closer_point": "point1"}]}', "point1"),
        (
            '{"a.jpg": [{"point1": [1, 2], "point2": [3, true], "closer_point": "point1"}]}',
            "point2",
        ),
        (
            '{"a.jpg": [{"point1": [1, 2], "point2": [3, 4], "closer_point": "both"}]}',
            "closer_point",
        ),
        ("{not json", "not valid JSON"),
    ],
)
def test_schema_errors_name_the_file_and_entry(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(Da2kFormatError, match=message) as info:
        load_annotations(path)
    assert str(path) in str(info.value)


def test_second_entry_is_named(tmp_path):
    path = tmp_path / "bad.json"
    mapping = {"b.jpg": [OFFICIAL_LIKE["indoor/0001.jpg"][0], {"point1": [1, 1]}]}
    path.write_text(json.dumps(mapping))
    with pytest.raises(Da2kFormatError, match=r"image 'b.jpg', entry 1"):
        load_annotations(path)


def test_missing_file_and_invalid_write(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        load_annotations(tmp_path / "nowhere.json")
    with pytest.raises(Da2kFormatError):
        write_annotations(tmp_path / "x.json", {"a": [{"point1": [0, 0]}]})
    assert not (tmp_path / "x.json").exists()


def test_pairs_conversion_round_trip():
    keys = ["outdoor/0002.png", "indoor/0001.jpg"]
    pairs, closer = annotations_to_pairs(OFFICIAL_LIKE, keys)
    assert len(pairs) == 3 and (pairs.kind == KIND_ANNOTATED).all()
    np.testing.assert_array_equal(pairs.image_index, [0, 1, 1])
    np.testing.assert_array_equal(closer, [1, 1, 2])
    back = pairs_to_annotations(pairs, keys, closer)
    assert back == {k: OFFICIAL_LIKE[k] for k in keys}


def test_undecided_pairs_are_left_out():
    pairs = PointPairs.build([0, 0], [[1, 1], [2, 2]], [[3, 3], [4, 4]])
    mapping = pairs_to_annotations(pairs, ["im.png"], np.array([0, 2]))
    assert mapping == {"im.png": [{"point1": [2, 2], "point2": [4, 4], "closer_point": "point2"}]}


def _row_prior(height, width):
    """Lower in the image = nearer = larger disparity."""
    return np.repeat(np.arange(height, dtype=np.float32)[:, None], width, axis=1)


def test_evaluate_pairs_with_prediction_maps():
    maps = {"indoor/0001.jpg": _row_prior(12, 8), "outdoor/0002.png": _row_prior(12, 8)}
    result = evaluate_pairs(maps, OFFICIAL_LIKE)
    # indoor: pair 0 right (row 10 > 2), pair 1 right (row 9 > 3); outdoor: wrong (0 < 11)
    assert result["n_pairs"] == 3 and result["n_correct"] == 2
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["per_scene"]["indoor"] == {"n_pairs": 2, "n_correct": 2, "accuracy": 1.0}
    assert result["per_scene"]["outdoor"]["accuracy"] == 0.0
    assert result["n_missing_images"] == 0 and result["n_images"] == 2


def test_evaluate_pairs_reads_images_skips_missing_and_counts_ties(tmp_path):
    (tmp_path / "indoor").mkdir()
    Image.fromarray(np.zeros((12, 8, 3), np.uint8)).save(tmp_path / "indoor" / "0001.jpg")
    seen = []

    def predict(images):
        seen.extend(img.shape for img in images)
        return [np.ones(img.shape[:2], np.float32) for img in images]  # flat: every pair ties

    result = evaluate_pairs(predict, OFFICIAL_LIKE, tmp_path, batch_size=1)
    assert seen == [(12, 8, 3)]
    assert result["missing_images"] == ["outdoor/0002.png"]
    assert result["n_pairs"] == 2 and result["n_ties"] == 2 and result["accuracy"] == 0.0


def test_evaluate_pairs_reports_points_outside_the_prediction():
    maps = {"indoor/0001.jpg": _row_prior(5, 5)}
    with pytest.raises(ValueError, match="outside"):
        evaluate_pairs(maps, {"indoor/0001.jpg": OFFICIAL_LIKE["indoor/0001.jpg"]})


def test_evaluate_pairs_with_nothing_to_evaluate():
    result = evaluate_pairs({}, OFFICIAL_LIKE)
    assert result["accuracy"] is None and result["n_missing_images"] == 2
