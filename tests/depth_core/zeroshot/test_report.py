from __future__ import annotations

from depth_core.zeroshot.published import PUBLISHED
from depth_core.zeroshot.report import format_table, plot_benchmarks, summary

RESULTS = {
    "models/teacher.safetensors": {
        "nyu": {
            "abs_rel": 0.1234,
            "delta1": 0.8766,
            "n_images": 654,
            "n_skipped": 0,
            "skipped_by_code": {},
            "skipped": [],
        },
        "da2k": {
            "pair_accuracy": 0.75,
            "n_pairs": 8,
            "n_images": 4,
            "n_skipped": 1,
            "skipped_by_code": {"missing": 1},
            "skipped": [{"file": "x"}],
        },
    }
}


def test_table_has_a_row_per_model_and_the_published_rows():
    table = format_table(RESULTS, ["nyu", "da2k"])
    lines = table.splitlines()
    assert lines[0] == "| model | nyu AbsRel | nyu δ1 | nyu n | da2k acc |"
    assert "| models/teacher.safetensors | 0.123 | 0.877 | 654 | 0.750 |" in lines
    assert "| Depth Anything V2-S (published) | 0.053 | 0.973 | - | 0.953 |" in lines
    assert len([line for line in lines if "(published)" in line]) == len(PUBLISHED)
    assert "2406.09414" in table
    assert "(published)" not in format_table(RESULTS, ["nyu"], published=False)


def test_summary_drops_the_per_file_lists():
    out = summary(RESULTS)
    assert "skipped" not in out["models/teacher.safetensors"]["da2k"]
    assert out["models/teacher.safetensors"]["nyu"] == {
        "abs_rel": 0.1234,
        "delta1": 0.8766,
        "n_images": 654,
        "n_skipped": 0,
        "skipped_by_code": {},
    }


def test_the_chart_is_a_png(tmp_path):
    path = plot_benchmarks(RESULTS, ["nyu", "da2k"], tmp_path / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
