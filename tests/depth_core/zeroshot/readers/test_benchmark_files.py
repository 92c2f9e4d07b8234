import pytest

from depth_core.zeroshot.readers.benchmark_files import split_file, split_lines
from depth_core.zeroshot.samples import BenchmarkRootError


def test_a_relative_split_is_read_from_the_working_directory_before_the_root(tmp_path, monkeypatch):
    root, work = tmp_path / "root", tmp_path / "work"
    root.mkdir()
    work.mkdir()
    (root / "list.txt").write_text("root\n")
    monkeypatch.chdir(work)
    assert split_file(root, "list.txt", "default.txt", "a list") == root / "list.txt"
    (work / "list.txt").write_text("work\n")
    assert split_file(root, "list.txt", "default.txt", "a list").resolve() == work / "list.txt"
    with pytest.raises(BenchmarkRootError, match=r"other\.txt .*nor .*root/other\.txt"):
        split_file(root, "other.txt", "default.txt", "a list")


def test_split_lines_skip_blanks_and_comments_and_keep_line_numbers(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# header\n\na b\n  # indented comment\n c  d  e \n")
    assert list(split_lines(path)) == [(3, ["a", "b"]), (5, ["c", "d", "e"])]


def test_an_undecodable_split_file_is_a_root_error(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(BenchmarkRootError, match="list.txt"):
        list(split_lines(path))
