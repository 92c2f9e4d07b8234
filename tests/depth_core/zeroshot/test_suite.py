from __future__ import annotations

import pytest

from depth_core.zeroshot.suite import check_roots, evaluate_benchmark, run_suite


def test_missing_roots_are_skipped_with_their_reason(tmp_path, scannet_root):
    runnable, skipped = check_roots(
        ["scannet", "nyu", "kitti", "da2k"],
        {"scannet": scannet_root, "nyu": tmp_path / "nowhere", "da2k": scannet_root},
    )
    assert [b.name for b in runnable] == ["scannet"]
    assert "nowhere" in skipped["nyu"] and "is not a folder" in skipped["nyu"]
    assert "--root kitti=DIR" in skipped["kitti"]
    assert "annotations.json" in skipped["da2k"]


def test_unknown_benchmark_is_an_error(scannet_root):
    with pytest.raises(ValueError, match="middlebury"):
        check_roots(["middlebury"], {})


def test_exact_prediction_scores_zero_and_bad_files_are_skipped_and_counted(
    scannet_root, exact_predict
):
    (benchmark,), _ = check_roots(["scannet"], {"scannet": scannet_root})
    result = evaluate_benchmark(exact_predict, benchmark, batch_size=2, progress=False)
    assert result["n_images"] == 3
    assert result["abs_rel"] == pytest.approx(0.0, abs=1e-5)
    assert result["delta1"] == 1.0
    assert result["n_skipped"] == 2
    assert result["skipped_by_code"] == {"corrupt": 1, "missing": 1}
    assert {s["file"] for s in result["skipped"]} == {
        "scene0000_00/color/000003.png",
        "scene0000_00/color/000004.png",
    }


def test_a_flipped_prediction_scores_worse(scannet_root, exact_predict):
    (benchmark,), _ = check_roots(["scannet"], {"scannet": scannet_root})
    flipped = evaluate_benchmark(
        lambda images: [p[::-1].copy() for p in exact_predict(images)], benchmark, progress=False
    )
    assert flipped["abs_rel"] > 0.05 and flipped["delta1"] < 1.0


def test_run_suite_loads_each_model_once_and_runs_every_benchmark(
    scannet_root, da2k_root, exact_predict
):
    benchmarks, _ = check_roots(["scannet", "da2k"], {"scannet": scannet_root, "da2k": da2k_root})
    loads = []

    def loader(name):
        def load():
            loads.append(name)
            return exact_predict

        return load

    results = run_suite({"a": loader("a"), "b": loader("b")}, benchmarks, progress=False)
    assert loads == ["a", "b"]
    assert set(results["a"]) == {"scannet", "da2k"}
    da2k = results["b"]["da2k"]
    assert da2k["pair_accuracy"] == 1.0 and da2k["n_pairs"] == 2
    assert da2k["n_images"] == 1 and da2k["n_skipped"] == 1
    assert results["a"]["scannet"]["abs_rel"] == pytest.approx(0.0, abs=1e-5)


def test_max_images_takes_the_first_entries(scannet_root, exact_predict):
    (benchmark,), _ = check_roots(["scannet"], {"scannet": scannet_root})
    result = evaluate_benchmark(exact_predict, benchmark, max_images=2, progress=False)
    assert result["n_images"] == 2 and result["n_skipped"] == 0
