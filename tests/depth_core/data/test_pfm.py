import numpy as np
import pytest

from depth_core.data.pfm import PFMError, read_pfm


def _write_pfm(path, stored_rows, little_endian=True, header=None, scale=1.0):
    """A PFM file whose float rows are stored in the given order (the format's bottom first)."""
    stored_rows = np.asarray(stored_rows, dtype=np.float32)
    height, width = stored_rows.shape[:2]
    magic = "PF" if stored_rows.ndim == 3 else "Pf"
    signed = -abs(scale) if little_endian else abs(scale)
    text = header if header is not None else f"{magic}\n{width} {height}\n{signed}\n"
    body = stored_rows.astype("<f4" if little_endian else ">f4").tobytes()
    path.write_bytes(text.encode() + body)
    return path


TOP_FIRST = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)


@pytest.mark.parametrize("little_endian", [True, False])
def test_grey_pfm_rows_are_stored_bottom_to_top(tmp_path, little_endian):
    path = _write_pfm(tmp_path / "d.pfm", TOP_FIRST[::-1], little_endian=little_endian)
    depth = read_pfm(path)
    assert depth.dtype == np.float32 and depth.shape == (2, 3)
    np.testing.assert_array_equal(depth, TOP_FIRST)
    assert depth.flags.writeable


@pytest.mark.parametrize("little_endian", [True, False])
def test_top_first_storage_comes_back_upside_down(tmp_path, little_endian):
    """A file whose rows were written top first reads flipped: the reader never guesses."""
    path = _write_pfm(tmp_path / "d.pfm", TOP_FIRST, little_endian=little_endian)
    np.testing.assert_array_equal(read_pfm(path), TOP_FIRST[::-1])


@pytest.mark.parametrize("little_endian", [True, False])
def test_colour_pfm(tmp_path, little_endian):
    top_first = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    path = _write_pfm(tmp_path / "c.pfm", top_first[::-1], little_endian=little_endian)
    colour = read_pfm(path)
    assert colour.shape == (2, 3, 3)
    np.testing.assert_array_equal(colour, top_first)


def test_the_byte_order_follows_the_scale_sign(tmp_path):
    """Big-endian bytes read as little endian would be other numbers: the sign decides."""
    path = _write_pfm(tmp_path / "d.pfm", TOP_FIRST[::-1], little_endian=False, scale=2.5)
    np.testing.assert_array_equal(read_pfm(path), TOP_FIRST)
    swapped = path.read_bytes().replace(b"\n2.5\n", b"\n-2.5\n")
    (tmp_path / "wrong.pfm").write_bytes(swapped)
    assert not np.array_equal(read_pfm(tmp_path / "wrong.pfm"), TOP_FIRST)


def test_header_on_one_line_with_spaces(tmp_path):
    path = _write_pfm(tmp_path / "d.pfm", TOP_FIRST[::-1], header="Pf 3 2 -1.0\n")
    np.testing.assert_array_equal(read_pfm(path), TOP_FIRST)


@pytest.mark.parametrize(
    ("header", "body_rows", "message"),
    [
        ("P6\n3 2\n255\n", 2, "not a PFM file"),
        ("Pf\n3 x\n-1\n", 2, "height b'x' is not an integer"),
        ("Pf\n0 2\n-1\n", 2, "width must be positive"),
        ("Pf\n3 2\nabc\n", 2, "scale b'abc' is not a number"),
        ("Pf\n3 2\n0\n", 2, "scale must be a non-zero number"),
        ("Pf\n3 2\n-1\n", 1, "holds 24 bytes of floats, the file has 12"),
        ("Pf\n3 3\n-1\n", 2, "holds 36 bytes of floats, the file has 24"),
    ],
)
def test_malformed_files_are_refused_naming_the_file(tmp_path, header, body_rows, message):
    path = _write_pfm(tmp_path / "bad.pfm", TOP_FIRST[:body_rows], header=header)
    with pytest.raises(PFMError, match=message) as info:
        read_pfm(path)
    assert str(path) in str(info.value)


def test_incomplete_header_and_missing_file(tmp_path):
    (tmp_path / "short.pfm").write_bytes(b"Pf\n3 2")
    with pytest.raises(PFMError, match="header is incomplete"):
        read_pfm(tmp_path / "short.pfm")
    with pytest.raises(PFMError, match="cannot read PFM file"):
        read_pfm(tmp_path / "missing.pfm")
    (tmp_path / "empty.pfm").write_bytes(b"")
    with pytest.raises(PFMError, match="not a PFM file"):
        read_pfm(tmp_path / "empty.pfm")
