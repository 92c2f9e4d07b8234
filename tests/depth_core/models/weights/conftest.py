import pytest


@pytest.fixture(autouse=True)
def weights_cache(tmp_path, monkeypatch):
    """Every test converts into its own cache, so none depends on another's leftovers."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEPTH_DISTILL_CACHE", str(cache))
    return cache / "weights"
