"""Reading one tar of a tar-backed dataset: its members grouped by `__key__` (WebDataset's own
tar iterator and `gopen`, so a url may be a local path, http(s) or a `pipe:` command), then
the indexed members decoded in tar order.

A tar is the unit pseudo-labelling and DataLoader workers split by; training ranks may split
one tar at an epoch's boundary, each decoding only its own keys. A reader holds one tar's
decoded samples at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from webdataset.gopen import gopen
from webdataset.tariterators import group_by_keys, tar_file_expander

from depth_core.data.tar_shards.decode import MemberError, decode_sample
from depth_core.data.tar_shards.index import DecodeSpec, TarEntry, TarIndexError, TarKind


def iter_tar_samples(url: str) -> Iterator[dict[str, Any]]:
    """Members of the tar at `url` grouped by key (`__key__`, then one entry per suffix).

    Errors propagate (a truncated tar raises `tarfile.ReadError` at the cut); a `pipe:`
    command's failure is raised when the stream closes.
    """
    stream = gopen(url, "rb")
    try:
        yield from group_by_keys(tar_file_expander([{"url": url, "stream": stream}]))
    finally:
        stream.close()


def read_tar(
    entry: TarEntry, kind: TarKind, spec: DecodeSpec, with_depth: bool = True
) -> dict[str, np.ndarray]:
    """The indexed samples of one tar, decoded: `id` (the keys, in index order), `image` uint8
    (N, H, W, 3) and, for a labeled set, `depth` and `mask`.

    A tar that no longer holds its indexed members, or one that fails to decode, is an error
    naming the tar and the key: the index is what every consumer pairs by.
    """
    wanted = set(entry.keys)
    decoded: dict[str, dict[str, Any]] = {}
    decode_kind: TarKind = kind if with_depth else "unlabeled"
    try:
        for sample in iter_tar_samples(entry.url):
            key = sample["__key__"]
            if key in wanted and key not in decoded:
                decoded[key] = decode_sample(sample, decode_kind, spec)
    except MemberError as exc:
        raise TarIndexError(f"tar {entry.url}: member {key!r}: {exc}") from exc
    except Exception as exc:
        raise TarIndexError(f"cannot read tar {entry.url}: {exc}") from exc
    missing = [k for k in entry.keys if k not in decoded]
    if missing:
        raise TarIndexError(
            f"tar {entry.url} no longer holds {len(missing)} indexed member(s) "
            f"{missing[:5]}; re-run the data stage to index it again"
        )
    samples = [decoded[k] for k in entry.keys]
    arrays = {
        "id": np.asarray(entry.keys, dtype=str),
        "image": _stack([s["image"] for s in samples], (spec.height, spec.width, 3), np.uint8),
    }
    if decode_kind == "labeled":
        size = (spec.height, spec.width)
        arrays["depth"] = _stack([s["depth"] for s in samples], size, np.float32)
        arrays["mask"] = _stack([s["mask"] for s in samples], size, bool)
    return arrays


def _stack(values: list[np.ndarray], shape: tuple[int, ...], dtype) -> np.ndarray:
    return np.stack(values) if values else np.zeros((0, *shape), dtype=dtype)
