import pytest

from depth_core.zeroshot.readers import READERS
from depth_core.zeroshot.samples import BenchmarkRootError


def test_every_benchmark_has_its_reader_under_its_own_name():
    assert sorted(READERS) == ["diode", "eth3d", "kitti", "nyu", "scannet", "sintel"]
    assert all(reader.name == name for name, reader in READERS.items())


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_missing_root_names_the_path_and_what_belongs_there(tmp_path, name):
    reader = READERS[name]
    with pytest.raises(BenchmarkRootError) as error:
        reader.entries(tmp_path / "absent", None)
    assert str(tmp_path / "absent") in str(error.value)
    assert reader.describe in str(error.value)
