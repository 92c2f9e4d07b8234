import pytest
import torch

from depth_core.models.weights import WeightsError
from depth_core.models.weights.convert import map_in_order


def _source():
    return {
        "_stem.weight": torch.ones(4, 3),
        "_bn.weight": torch.full((4,), 2.0),
        "_bn.num_batches_tracked": torch.tensor(7),
        "_fc.weight": torch.full((2, 4), 3.0),
    }


def test_tensors_are_renamed_in_order_and_step_counters_dropped():
    target = {
        "stem.weight": (4, 3),
        "bn.weight": (4,),
        "bn.num_batches_tracked": (),
        "fc.weight": (2, 4),
    }
    out = map_in_order(_source(), target, "package:x")
    assert list(out) == ["stem.weight", "bn.weight", "fc.weight"]
    assert torch.equal(out["fc.weight"], torch.full((2, 4), 3.0))


def test_a_missing_tensor_is_refused():
    target = {"stem.weight": (4, 3), "bn.weight": (4,)}
    with pytest.raises(WeightsError, match="3 tensors, but the backbone has 2"):
        map_in_order(_source(), target, "package:x")


def test_a_wrong_shape_names_both_tensors():
    target = {"stem.weight": (4, 3), "bn.weight": (5,), "fc.weight": (2, 4)}
    with pytest.raises(
        WeightsError, match=r"'_bn.weight' has shape \(4,\).*'bn.weight', needs \(5,\)"
    ):
        map_in_order(_source(), target, "package:x")


def test_integer_tensors_are_refused():
    source = {"a": torch.ones(2, dtype=torch.int64)}
    with pytest.raises(WeightsError, match="'a' is torch.int64"):
        map_in_order(source, {"b": (2,)}, "package:x")
