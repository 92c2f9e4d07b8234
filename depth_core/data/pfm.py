"""Reading PFM (Portable Float Map) rasters, the float format of BlendedMVS and MVS depth maps.

A PFM file is an ASCII header, `Pf` (one channel) or `PF` (three), then `W H`, then a scale
whose sign gives the byte order (negative: little endian), each followed by whitespace, then
W * H * channels 32-bit floats with the rows stored bottom to top.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_CHANNELS = {b"Pf": 1, b"PF": 3}
_MAX_HEADER_BYTES = 256
_WHITESPACE = frozenset(b" \t\r\n\x0b\x0c")


class PFMError(ValueError):
    """A file that is not a well-formed PFM raster; the message names the file."""


def read_pfm(path: str | Path) -> np.ndarray:
    """The raster of a PFM file, top row first: float32 `(H, W)` (Pf) or `(H, W, 3)` (PF)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PFMError(f"cannot read PFM file {path}: {exc}") from exc
    (magic, width, height, scale), offset = _header(path, data)
    channels = _CHANNELS[magic]
    width, height = _dimension(path, "width", width), _dimension(path, "height", height)
    try:
        scale_value = float(scale)
    except ValueError:
        raise PFMError(f"{path}: PFM scale {scale[:20]!r} is not a number") from None
    if scale_value == 0.0 or not np.isfinite(scale_value):
        raise PFMError(f"{path}: PFM scale must be a non-zero number, got {scale_value}")
    expected = width * height * channels * 4
    payload = len(data) - offset
    if payload != expected:
        raise PFMError(
            f"{path}: a {width}x{height} PFM with {channels} channel(s) holds {expected} bytes "
            f"of floats, the file has {payload}"
        )
    dtype = np.dtype("<f4" if scale_value < 0 else ">f4")
    values = np.frombuffer(data, dtype=dtype, count=width * height * channels, offset=offset)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.flipud(values.reshape(shape)).astype(np.float32)


def _header(path: Path, data: bytes) -> tuple[list[bytes], int]:
    """The four header fields (magic, width, height, scale) and the offset of the floats.

    Each field ends with whitespace; exactly one whitespace byte follows the scale.
    """
    tokens: list[bytes] = []
    position, limit = 0, min(len(data), _MAX_HEADER_BYTES)
    while len(tokens) < 4:
        while position < limit and data[position] in _WHITESPACE:
            position += 1
        start = position
        while position < limit and data[position] not in _WHITESPACE:
            position += 1
        if position >= limit:
            break
        tokens.append(data[start:position])
    if not tokens or tokens[0] not in _CHANNELS:
        first = tokens[0] if tokens else data[:8]
        raise PFMError(f"{path} is not a PFM file: starts with {first[:8]!r}, expected Pf or PF")
    if len(tokens) < 4:
        raise PFMError(
            f"{path}: PFM header is incomplete (expected 'Pf' or 'PF', 'W H' and a scale, "
            f"found {len(tokens)} of 4 fields)"
        )
    return tokens, position + 1


def _dimension(path: Path, name: str, token: bytes) -> int:
    try:
        value = int(token)
    except ValueError:
        raise PFMError(f"{path}: PFM {name} {token[:20]!r} is not an integer") from None
    if value <= 0:
        raise PFMError(f"{path}: PFM {name} must be positive, got {value}")
    return value
