"""One error type for every way a weights source can fail, each message saying what to do."""

from __future__ import annotations


class WeightsError(ValueError):
    """Pretrained weights are missing, do not fit the backbone, or are unreadable."""
