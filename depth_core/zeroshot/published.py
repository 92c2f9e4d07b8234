"""Published zero-shot figures of Depth Anything V2, printed beside a run's own numbers.

Source: L. Yang et al., "Depth Anything V2", NeurIPS 2024 (arXiv:2406.09414): Table 2,
"zero-shot relative depth estimation" (AbsRel and delta1 on KITTI, NYU-D, Sintel, ETH3D,
DIODE), and the DA-2K accuracy table (pair accuracy on the authors' own benchmark). ScanNet is
not in those tables, so it has no published row.
"""

from __future__ import annotations

PUBLISHED_SOURCE = "Depth Anything V2 (arXiv:2406.09414), Table 2 and the DA-2K table"

# {model: {benchmark: {metric: value}}}; depth benchmarks give abs_rel and delta1, DA-2K
# pair_accuracy (a fraction, as this project reports it; the paper prints percent).
PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    "Depth Anything V2-S (published)": {
        "kitti": {"abs_rel": 0.078, "delta1": 0.936},
        "nyu": {"abs_rel": 0.053, "delta1": 0.973},
        "sintel": {"abs_rel": 0.500, "delta1": 0.718},
        "eth3d": {"abs_rel": 0.142, "delta1": 0.851},
        "diode": {"abs_rel": 0.073, "delta1": 0.942},
        "da2k": {"pair_accuracy": 0.953},
    },
    "Depth Anything V2-B (published)": {
        "kitti": {"abs_rel": 0.078, "delta1": 0.939},
        "nyu": {"abs_rel": 0.049, "delta1": 0.976},
        "sintel": {"abs_rel": 0.495, "delta1": 0.734},
        "eth3d": {"abs_rel": 0.137, "delta1": 0.858},
        "diode": {"abs_rel": 0.068, "delta1": 0.950},
        "da2k": {"pair_accuracy": 0.970},
    },
    "Depth Anything V2-L (published)": {
        "kitti": {"abs_rel": 0.074, "delta1": 0.946},
        "nyu": {"abs_rel": 0.045, "delta1": 0.979},
        "sintel": {"abs_rel": 0.487, "delta1": 0.752},
        "eth3d": {"abs_rel": 0.131, "delta1": 0.865},
        "diode": {"abs_rel": 0.066, "delta1": 0.952},
        "da2k": {"pair_accuracy": 0.971},
    },
}
