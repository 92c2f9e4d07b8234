"""Benchmark folders in their published layouts (tests/zeroshot_fixtures.py)."""

from __future__ import annotations

import pytest

from tests import zeroshot_fixtures


@pytest.fixture
def scannet_root(tmp_path):
    return zeroshot_fixtures.write_scannet(tmp_path / "scannet")


@pytest.fixture
def da2k_root(tmp_path):
    return zeroshot_fixtures.write_da2k(tmp_path / "da2k")


@pytest.fixture
def exact_predict():
    return zeroshot_fixtures.exact_predict
