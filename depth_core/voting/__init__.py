"""Expert agreement: experts vote on which of two points is closer (DA-2K style).

Consumes each expert's disparity maps (arrays, never models) so it is testable without any
checkpoint. `run_agreement` writes the whole report; the submodules are usable on their own.
"""

from depth_core.voting.agreement import AgreementConfig, run_agreement
from depth_core.voting.da2k import (
    Da2kFormatError,
    annotations_to_pairs,
    evaluate_pairs,
    load_annotations,
    pairs_to_annotations,
    write_annotations,
)
from depth_core.voting.disagreement import disagreement_map, disagreement_to_rgb
from depth_core.voting.pairs import PairConfig, PointPairs, log_disparity_guide, sample_pairs
from depth_core.voting.votes import (
    POINT1,
    POINT2,
    TIE,
    agreement_metrics,
    ground_truth_order,
    is_consistent,
    judge,
    majority_vote,
)

__all__ = [
    "POINT1",
    "POINT2",
    "TIE",
    "AgreementConfig",
    "Da2kFormatError",
    "PairConfig",
    "PointPairs",
    "agreement_metrics",
    "annotations_to_pairs",
    "disagreement_map",
    "disagreement_to_rgb",
    "evaluate_pairs",
    "ground_truth_order",
    "is_consistent",
    "judge",
    "load_annotations",
    "log_disparity_guide",
    "majority_vote",
    "pairs_to_annotations",
    "run_agreement",
    "sample_pairs",
    "write_annotations",
]
